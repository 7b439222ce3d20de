"""Every check an auditor makes of a round, from chain data alone.

Each check yields :class:`Finding` rows: a pass, a failure (with the transaction and block where
it shows) or a note (something that happened and is not a fault of the market: a dropout, a
cancellation, an outsider's rejected call). The generic checks hold for every mechanism; the
mechanism-specific part (its price rule, stop rule and settlement rule) is looked up in the
registry by the ``mechanism`` name the coordinator published in ``RoundCreated`` (an unknown or
malformed name is reported, never a crash), and the rule contract's code is compared with the
registered mechanism's. A participant's or coordinator's rejected transaction is flagged at that
transaction with what made it invalid (a repeated ciphertext, a residue mod n, a late
submission, a non-canonical opening...).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import keccak

from ..chain.backends import Chain
from ..chain.market import CLOSE_REASONS, MARKET_CONTRACT, MODULES, PHASES, commitment
from ..errors import MechanismError
from ..privacy import secagg
from ..privacy.packing import SlotLayout
from ..privacy.paillier import PublicKey
from ..units import ENERGY_SCALE
from .history import Call, Event, MarketHistory


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    round: int | None = None
    iteration: int | None = None
    tx: str | None = None
    block: int | None = None
    note: bool = False  # informational: not a check that can fail

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at(event: Event | Call | None) -> dict[str, Any]:
    return {"tx": event.tx.hash_hex, "block": event.tx.block} if event is not None else {}


# the events each phase may see (PhaseChanged moves the phase; Published the iteration)
ALLOWED = {
    "Registering": {"Registered", "Deposited", "Withdrawn", "PhaseChanged", "StepChanged", "RoundStarted"},
    "Sharing": {"Shared", "Deposited", "Dropped", "PhaseChanged", "StepChanged"},
    "Iterating": {"Submitted", "MaskPoint", "PairMessages", "Dropped", "Recovered", "AggregationProgress", "Aggregated",
                  "Published", "Deposited", "PhaseChanged", "StepChanged", "Challenged", "OpeningConfirmed",
                  "OpeningDisproved"},
    "Concluded": {"Concluded", "Deposited", "PhaseChanged", "Challenged", "OpeningConfirmed", "OpeningDisproved",
                  "BlameStarted", "BlameOpened", "Blamed"},
    "Settled": {"Bill", "Payment", "Settled", "Withdrawn"},
    "Closed": {"Closed", "Withdrawn"},
}
OTHER_ITERATION = {"MaskPoint", "Challenged", "OpeningConfirmed", "OpeningDisproved"}  # name another iteration
FINAL, DROPPED_REVEALED, DROPPED_SILENT = 0, 1, 2
BLAME_KEY = 1 << 31  # a blame opening's challenges name iteration BLAME_KEY + position


class RoundAudit:
    """The checks of one round; ``findings`` in the order they were made."""

    def __init__(self, chain: Chain, history: MarketHistory, round_id: int) -> None:
        self.chain, self.h, self.rid = chain, history, round_id
        self.events = history.of_round(round_id)
        self.calls = history.calls_of_round(round_id)
        self.findings: list[Finding] = []
        self.series: dict[str, Any] = {"prices": [], "sums": [], "payments": {}, "gas": history.gas_by_iteration(round_id)}
        self.contract = chain.contract(MARKET_CONTRACT, history.address)
        self.diagnosis: dict[bytes, str] = {}  # tx hash -> why the call was invalid (found by the checks)

    # ------------------------------------------------------------------ helpers
    def _add(self, check: str, ok: bool, detail: str, iteration: int | None = None, where=None) -> bool:
        self.findings.append(Finding(check, ok, detail, self.rid, iteration, **({} if ok else _at(where))))
        return ok

    def _note(self, check: str, detail: str, iteration: int | None = None, where=None) -> None:
        self.findings.append(Finding(check, True, detail, self.rid, iteration, **_at(where), note=True))

    def _one(self, name: str) -> Event | None:
        found = [e for e in self.events if e.name == name]
        return found[0] if found else None

    def _named(self, name: str, iteration: int | None = None) -> list[Event]:
        return [e for e in self.events if e.name == name and (iteration is None or e.args.get("iteration") == iteration)]

    # ------------------------------------------------------------------ the checks
    def run(self) -> list[Finding]:
        created = self._one("RoundCreated")
        if created is None:
            self._note("round", "created before the first block read (--from-block): not audited")
            return self.findings
        params = created.args["params"]
        self.params = params
        self.n = int.from_bytes(params["n"], "big")
        self.key = PublicKey(self.n) if self.n else None
        self.threshold = int(params.get("threshold", 0))
        self.check_key(created)
        participants = self.check_registration()
        self.participants = participants
        self.member_index = self._member_index(params, participants)
        self.check_order()
        rules = self._rules(params, participants)
        self.plan = self._plan(participants) if self.threshold else None
        self.points: dict[int, dict[int, bytes]] = {}
        self.active = set(range(len(participants)))
        self.check_sharing()
        concluded = self.check_iterations(params, participants, rules)
        self.check_challenges()
        self.check_settlement(params, participants, concluded, rules)
        self.check_closing()
        self.check_failed_transactions()
        return self.findings

    def check_key(self, created: Event) -> None:
        params = created.args["params"]
        if self.key is None:
            ok = created.args["keyData"] == "0x" + "0" * 40
            self._add("coordinator key", ok, "no Paillier key: commitments only" if ok else
                      "a round without a modulus has key data", where=created)
            return
        nbytes = len(params["n"])
        code = bytes(self.chain.w3.eth.get_code(created.args["keyData"]))
        expected = b"\x00" + (self.n * self.n).to_bytes(2 * nbytes, "big") + params["n"]
        self._add("coordinator key", self.n % 2 == 1 and code == expected,
                  f"{self.n.bit_length()}-bit Paillier modulus; n and n^2 stored on chain as registered"
                  if code == expected else "the key data on chain is not (n^2, n) of the registered modulus",
                  where=created)

    def check_registration(self) -> list[str]:
        regs = self._named("Registered")
        addresses = [e.args["participant"] for e in regs]
        positions_ok = [e.args["position"] for e in regs] == list(range(1, len(regs) + 1))
        accounts, keys = self.contract.functions.participants(self.rid).call()
        ok = positions_ok and list(accounts) == addresses and [bytes(k) for k in keys] == [e.args["maskKey"] for e in regs]
        self._add("participants", ok, f"{len(regs)} registered in order, storage agrees" if ok else
                  "registration events disagree with the participants kept in storage", where=regs[-1] if regs else None)
        keys_seen = [e.args["maskKey"] for e in regs]
        self._add("mask keys", len(set(keys_seen)) == len(keys_seen) and all(any(k) for k in keys_seen),
                  "every mask key non-zero and used once", where=regs[-1] if regs else None)
        return addresses

    def _member_index(self, params: dict, participants: list[str]) -> list[int]:
        members = [m.lower() for m in params["members"]]
        if not members:
            return list(range(len(participants)))
        return [members.index(p.lower()) if p.lower() in members else -1 for p in participants]

    def _plan(self, participants: list[str]) -> secagg.Plan:
        return secagg.Plan(participants, self.threshold, secagg.round_context(self.h.address, self.rid, self.chain.chain_id))

    def check_order(self) -> None:
        """Events follow the round's state machine: nothing early, late or out of turn."""
        phase, iteration, bad = "Registering", 0, None
        for e in self.events[1:]:
            k = e.args.get("iteration", iteration)
            if e.name not in ALLOWED[phase] or (e.name not in OTHER_ITERATION and k != iteration):
                bad = e
                break
            if e.name == "PhaseChanged":
                if e.args["to"] <= e.args["from"] or PHASES[e.args["from"]] != phase:
                    bad = e
                    break
                phase = PHASES[e.args["to"]]
            elif e.name == "Published":
                iteration += 1
        self._add("order of events", bad is None, "every event in turn, phases only forward" if bad is None else
                  f"{bad.name} out of turn (phase {phase}, iteration {iteration})", where=bad)

    def _rules(self, params: dict, participants: list[str]):
        """The round's mechanism rules from the registry (one "update rule" finding: what is
        replayed, or why not), after checking the rule contract's code."""
        created = self._one("RoundCreated")
        try:
            published = json.loads(params["mechanism"] or "{}")
            name = published["mechanism"] if isinstance(published, dict) else None
            if not isinstance(name, str):
                raise ValueError("no mechanism name")
        except (ValueError, KeyError, TypeError) as exc:
            self._add("update rule", False, f"the published mechanism is not gridshare's JSON ({exc}): rule not checked",
                      where=created)
            return None
        from ..registry import get

        try:
            mechanism = get(name)
        except MechanismError:
            self._add("update rule", False, f"unknown mechanism {name!r}: rule not checked", where=created)
            return None
        self.series["mechanism"] = name
        self._check_rule_code(params["rule"], mechanism, created)
        try:
            rules = mechanism.audit_rules(published, params, participants)
        except Exception as exc:  # noqa: BLE001 - a malformed round is reported, never a crash
            self._add("update rule", False, f"mechanism {name!r}: its rules cannot be built ({exc})", where=created)
            return None
        for ok, detail in rules.problems or [(True, rules.describe())]:
            self._add("update rule", ok, detail, where=created)
        return rules

    def _check_rule_code(self, rule: str, mechanism, created: Event) -> None:
        artifact = self.chain.artifacts.get(mechanism.rule_contract)
        ok = artifact is not None and artifact.runs(bytes(self.chain.w3.eth.get_code(rule)))
        self._add("rule contract", ok, f"{rule} runs {mechanism.rule_contract}, the registered rule of "
                  f"{mechanism.name!r}" if ok else f"the rule contract {rule} is not {mechanism.rule_contract}'s code",
                  where=created)

    def _dropped(self, k: int, where: str) -> list[int]:
        """Positions dropped in iteration k (``where``: "sharing" or "submission")."""
        index = {a.lower(): i for i, a in enumerate(self.participants)}
        out = []
        for e in self._named("Dropped", k):
            if e.args["inMasks"] == (where == "submission"):
                out.append(index[e.args["participant"].lower()])
                self._note("dropout", f"{e.args['participant']} missed the {where} deadline and left the round "
                           + (f"in iteration {k}" if where == "submission" else "before iteration 0"), k, where=e)
        return out

    def check_sharing(self) -> None:
        """Rounds with dropout recovery: each sharer posted its first mask point, the commitments
        to its two sharing polynomials and one sealed share pair per neighbour; the non-sharers
        were dropped."""
        if self.plan is None:
            return
        index = {a.lower(): i for i, a in enumerate(self.participants)}
        bad = None
        self.points[0] = {}
        for e in self._named("Shared"):
            i = index[e.args["participant"].lower()]
            point = self.plan.read_material(i, e.args["material"])
            if point is None:
                bad = bad or e
            self.points[0][i] = bytes(e.args["material"][:secagg.POINT_BYTES])
        self._add("shares", bad is None, f"{len(self.points[0])} participants posted a mask point, the commitments "
                  f"to their sharing and {self.plan.degree} sealed shares each (threshold {self.threshold})", 0, where=bad)
        for i in self._dropped(0, "sharing"):
            self.active.discard(i)

    def check_iterations(self, params: dict, participants: list[str], rules) -> Event | None:
        """The generic iteration checks and, per decrypted iteration, the mechanism's rules; the
        ``Concluded`` event (``None``: not concluded)."""
        layout = SlotLayout(params["slots"], params["slotBits"], params["slotWidth"], max(len(participants), 1)) \
            if self.key is not None else None
        started = self._one("RoundStarted")
        if started is not None and rules is not None:
            rules.started(list(started.args["prices"]))
        submits = {c.tx.hash: c for c in self.calls if c.name == "submit" and c.tx.status == 1}
        info = self.contract.functions.roundInfo(self.rid).call()
        phase, deadline = PHASES[info[0]], int(info[3])
        # a round whose current step is not yet late is in progress, not stalled
        self.live = phase in ("Registering", "Sharing", "Iterating") and self.chain.block_number <= deadline
        self.deadline = deadline
        self.seen_ciphertexts: dict[bytes, tuple[str, int]] = {}
        self.finals: dict[str, Event] = {}  # each participant's last accepted submission
        prices = list(started.args["prices"]) if started else []
        k = 0
        while True:
            subs = self._named("Submitted", k)
            agg = self._named("Aggregated", k)
            dec = self._named("Published", k) + self._named("Concluded", k)
            if not subs and not agg and not dec:
                break
            active = set(self.active)
            gone = self._dropped(k, "submission")
            if rules is not None and gone:
                rules.dropped(k, gone)
            if not dec and self.live:
                self._note("in progress", f"iteration {k}: {len(subs)} of {len(active) - len(gone)} submitted so far; "
                           f"the step's deadline is block {self.deadline}", k)
                return None
            self._check_submissions(k, subs, submits, participants, active, gone)
            for e in subs:
                self.finals[e.args["participant"]] = e
            self.active -= set(gone)
            corrections = None
            if self.plan is not None:
                corrections = self._check_recovery(k, active, subs, dec[0] if dec else None)
            if self.key is not None:
                if not agg:
                    self._add("aggregate", False, f"iteration {k} never aggregated", k, where=subs[-1] if subs else None)
                    break
                self._check_aggregate(k, subs, submits, agg[0])
            if not dec:
                self._add("decryption", False, f"iteration {k}: never published", k,
                          where=agg[0] if agg else (subs[-1] if subs else None))
                break
            d = dec[0]
            if self.key is not None:
                plaintext, opening = int.from_bytes(d.args["plaintext"], "big"), int.from_bytes(d.args["opening"], "big")
                aggregate = int.from_bytes(agg[0].args["aggregate"], "big")
                self._add("opening proof", self.key.verify_opening(aggregate, plaintext, opening),
                          f"iteration {k}: (1+n)^m rho^n = aggregate, 0 < rho < n", k, where=d)
                sums = layout.unpack_sums(plaintext, list(d.args["corrections"]) or None)
                self._add("decoded sums", sums == list(d.args["sums"]), f"iteration {k}: slot sums of the plaintext"
                          + (", less the recovered masks" if corrections is not None else ""), k, where=d)
            self.series["prices"].append([p / 1e6 for p in prices])
            self.series["sums"].append([s / ENERGY_SCALE for s in d.args["sums"]])
            if rules is not None:
                for check, ok, detail in rules.observe(d):
                    self._add(check, ok, detail, k, where=d)
            if d.name == "Concluded":
                return d
            prices = list(d.args["nextPrices"])
            k += 1
        if self._one("Closed") is None and self._named("RoundStarted") and not self.live:
            self._add("conclusion", False, f"round not concluded: stalled at iteration {k} past its deadline (block "
                      f"{self.deadline}): anyone may advance or cancel it", k, where=self.events[-1])
        return None

    def _check_submissions(self, k: int, subs: list[Event], submits: dict, participants: list[str],
                           active: set[int], gone: list[int]) -> None:
        who = [e.args["participant"] for e in subs]
        expected = [participants[i] for i in sorted(active - set(gone))]
        missing = [p for p in expected if p not in who]
        outside = [p for p in who if p not in expected]
        ok = not missing and not outside and len(who) == len(set(who))
        detail = f"iteration {k}: one submission from each of the {len(expected)} active participants"
        if missing:
            detail = f"iteration {k}: no submission from {', '.join(missing)} and it was not dropped"
        elif outside:
            detail = f"iteration {k}: a submission from {', '.join(outside)}, not an active participant"
        self._add("submissions", ok, detail, k, where=subs[-1] if subs else None)
        for e in subs:
            call = submits.get(e.tx.hash)
            ct = call.args["ciphertext"] if call else b""
            problem = self._ciphertext_problem(ct, k) if call is not None else "no submit call"
            if call is not None and (keccak(ct) != e.args["ciphertextHash"] or call.args["commitment"] != e.args["commitment"]):
                problem = "its input does not match its event"
            if problem:
                self._add("ciphertext", False, f"iteration {k}: {e.args['participant']}'s submission: {problem}", k, where=e)
            elif self.key is not None:
                self.seen_ciphertexts[keccak(ct)] = (e.args["participant"], k)

    def _ciphertext_problem(self, ct: bytes, k: int) -> str | None:
        """Why a submitted ciphertext is invalid (None: it is not)."""
        if self.key is None:
            return None if ct == b"" else "a ciphertext in a round without a key"
        c = int.from_bytes(ct, "big")
        if not 0 < c < self.key.n_sq:
            return "out of range (0, n^2)"
        if c == 1:
            return "the ciphertext 1 (an unmasked encryption of 0)"
        if c % self.n == 0:
            return "a multiple of n (no unit mod n^2)"
        earlier = self.seen_ciphertexts.get(keccak(ct))
        if earlier is not None:
            return f"repeats {earlier[0]}'s ciphertext of iteration {earlier[1]}"
        return None

    def _check_recovery(self, k: int, active: set[int], subs: list[Event], decryption: Event | None) -> list[int] | None:
        """Recomputes the coordinator's mask corrections from the survivors' public partials."""
        index = {a.lower(): i for i, a in enumerate(self.participants)}
        senders = sorted(index[e.args["participant"].lower()] for e in subs)
        recovered = {index[e.args["participant"].lower()]: e for e in self._named("Recovered", k)}
        posts = {holder: e.args["partials"] for holder, e in recovered.items()}
        self.points[k + 1] = {index[e.args["participant"].lower()]: e.args["point"] for e in self._named("MaskPoint", k + 1)}
        if decryption is None:
            return None
        try:
            checked = self.plan.check(k, active, set(senders), posts, self.points.get(k, {}))
            for holder, item in checked.false.items():
                what = "an ill-formed post" if item is None else f"the {item[0]} mask partial of participant {item[1] + 1}"
                self._add("recovery partials", False, f"iteration {k}: {self.participants[holder]} posted a partial its "
                          f"dealer's commitment does not prove ({what}); left out of the recovery", k,
                          where=recovered[holder])
            expected = self.plan.corrections(k, active, set(senders), checked, self.params["slots"], self.params["slotBits"])
        except (ValueError, KeyError) as exc:
            self._add("mask recovery", False, f"iteration {k}: the partials posted do not recover the masks ({exc})",
                      k, where=decryption)
            return None
        ok = expected == list(decryption.args["corrections"])
        dropped = len(active) - len(senders)
        self._add("mask recovery", ok, f"iteration {k}: the corrections follow from {len(posts)} survivors' partials"
                  + (f" (self masks and the pair masks of {dropped} dropped)" if dropped else " (self masks)")
                  if ok else f"iteration {k}: the published corrections are not the recovered masks", k, where=decryption)
        return expected

    def _check_aggregate(self, k: int, subs: list[Event], submits: dict, agg: Event) -> None:
        product = self.key.add(*(int.from_bytes(submits[e.tx.hash].args["ciphertext"], "big")
                                 for e in subs if e.tx.hash in submits))
        chunks = 1 + len(self._named("AggregationProgress", k))
        self._add("aggregate", product == int.from_bytes(agg.args["aggregate"], "big"),
                  f"iteration {k}: product of the {len(subs)} ciphertexts mod n^2"
                  + (f" ({chunks} chunks)" if chunks > 1 else ""), k, where=agg)

    def check_challenges(self) -> None:
        for e in self._named("OpeningConfirmed"):
            self._note("challenge", f"iteration {e.args['iteration']}: an opening challenged and confirmed on chain",
                       e.args["iteration"], where=e)
        for e in self._named("OpeningDisproved"):
            k = e.args["iteration"]
            if k >= BLAME_KEY:
                self._note("challenge", f"{e.args['challenger']} disproved the blame opening of "
                           f"{self.participants[k - BLAME_KEY - 1]} on chain: it stays a culprit", where=e)
            else:
                self._note("challenge", f"iteration {k}: {e.args['challenger']} disproved the coordinator's opening "
                           "on chain: the round was closed", k, where=e)

    def check_settlement(self, params: dict, participants: list[str], concluded: Event | None, rules) -> None:
        settled = self._one("Settled")
        self._check_ledger(settled or self._one("Closed") or self._one("RoundCreated"))
        if concluded is None or settled is None:
            if concluded is not None and self._one("Closed") is None:
                late = int(self.contract.functions.coordinatorDeadline(self.rid).call())
                if self.chain.block_number <= late:
                    self._note("in progress", f"concluded; to be settled by block {late}", where=concluded)
                else:
                    self._add("settlement", False, f"concluded round not settled by block {late}: anyone may cancel it",
                              where=concluded)
            return
        k = concluded.args["iteration"]
        call = next(c for c in self.calls if c.name == "settle" and c.tx.hash == settled.tx.hash)
        values = _reveals(call, len(participants))
        standing, wrong = self._standings(participants, call)
        for address in wrong:
            self._add("billed as committed", False, f"{address}'s settled reveal does not open its commitment",
                      k, where=settled)
        ok = len(values) == len(participants)
        if self._blamed:
            self._check_blame(participants, settled)
        elif self.key is not None:  # the first `slots` revealed values of those that stayed are the encrypted ones
            finals = [v[:params["slots"]] for v, s in zip(values, standing) if s == FINAL]
            totals = [sum(col) for col in zip(*finals)] if finals else []
            ok = ok and totals == list(concluded.args["sums"])
        dropped = sum(s != FINAL for s in standing)
        self._add("billed as committed", ok, "every reveal opens its participant's last commitment"
                  + ("; the reveals add up to the decrypted total" if self.key is not None else "")
                  + (f"; {dropped} dropped out, settled by the mechanism's fallback" if dropped else ""), k, where=settled)
        payments = [(e.args["account"], e.args["amount"]) for e in self._named("Payment")]
        if rules is not None:
            self._check_payments(k, settled, payments, rules, participants, values, list(concluded.args["prices"]), standing)
        paid: dict[str, int] = {}
        for account, amount in payments:
            paid[account] = paid.get(account, 0) + amount
        self._add("zero sum", sum(paid.values()) == 0, f"payments sum to {sum(paid.values())}", k, where=settled)
        self.series["payments"] = {a: v / 1e18 for a, v in paid.items()}

    @property
    def _blamed(self) -> bool:
        return self._one("BlameStarted") is not None

    def _cleared(self) -> set[str]:
        """Who opened its final ciphertext consistently in a blame step (and was not disproved)."""
        disproved = {e.args["iteration"] - BLAME_KEY - 1 for e in self._named("OpeningDisproved")
                     if e.args["iteration"] >= BLAME_KEY}
        return {e.args["participant"] for e in self._named("BlameOpened")
                if self.participants.index(e.args["participant"]) not in disproved}

    def _check_blame(self, participants: list[str], settled: Event) -> None:
        """After a sum mismatch: each blame opening's Paillier opening holds (the contract checked
        the commitment and the mask proofs; the opening only when challenged), every participant
        that stayed and did not clear itself is named at its final submission and slashed, its
        balance shared among those that did."""
        started = self._one("BlameStarted")
        self._note("blame", f"the revealed sums differ from the decrypted ones: blame step until block "
                   f"{started.args['until']}", started.args["iteration"], where=started)
        L = self.key.nbytes
        for call in self.calls:
            if call.name == "openBlame" and call.tx.status == 1:
                opened = call.args["opened"]
                c, m, rho = (int.from_bytes(x, "big") for x in (opened[:2 * L], opened[2 * L:3 * L], opened[3 * L:]))
                self._add("blame opening", self.key.verify_opening(c, m, rho), f"{call.tx.sender} opened its final "
                          "ciphertext" + ("" if self.key.verify_opening(c, m, rho) else " falsely (never challenged)"),
                          where=call)
        cleared, blamed = self._cleared(), {e.args["culprit"]: e.args["slashed"] for e in self._named("Blamed")}
        culprits = [a for i, a in enumerate(participants) if i in self.active and a not in cleared]
        coordinator = self._one("RoundCreated").args["coordinator"]
        for address in culprits:
            self._add("blame", False, f"{address} encrypted other values than it committed to (no consistent "
                      f"opening): slashed {blamed.get(address, 0) / 1e18:g} tokens, shared among the "
                      f"{len(cleared)} that opened", where=self.finals.get(address))
        expected = set(culprits) or {coordinator}
        self._add("blame outcome", set(blamed) == expected, f"the settlement named {', '.join(sorted(blamed))}"
                  if set(blamed) == expected else f"the settlement named {sorted(blamed)}, the openings {sorted(expected)}",
                  where=settled)
        if not culprits:
            self._add("blame", False, f"every participant opened consistently: the coordinator {coordinator}'s "
                      "corrections were wrong", where=settled)

    def _slashes(self) -> dict[str, int]:
        """Ledger moves of a blame step: each culprit's balance, shared equally among the cleared
        (the remainder to the first in registration order)."""
        moves: dict[str, int] = {}
        cleared = [a for a in self.participants if a in self._cleared()]
        total = 0
        for e in self._named("Blamed"):
            if e.args["slashed"]:
                moves[e.args["culprit"]] = moves.get(e.args["culprit"], 0) + e.args["slashed"]
                total += e.args["slashed"]
        if cleared and total:
            each = total // len(cleared)
            for n, a in enumerate(cleared):
                moves[a] = moves.get(a, 0) - each - (total - each * len(cleared) if n == 0 else 0)
        return moves

    def _standings(self, participants: list[str], call: Call) -> tuple[list[int], list[str]]:
        """Each participant's standing in a settle call and those whose reveal opens no commitment."""
        reveals = _reveals(call, len(participants))
        out, wrong = [], []
        for i, address in enumerate(participants):
            try:
                values, salt, ct_hash = reveals[i], call.args["salts"][i], call.args["ciphertextHashes"][i]
            except (IndexError, KeyError):
                wrong.append(address)
                out.append(FINAL)
                continue
            stayed = i in self.active
            if stayed and self._blamed and address not in self._cleared():  # a culprit: its reveal void
                out.append(DROPPED_SILENT)
                if any(values) or salt != b"\0" * 32:
                    wrong.append(address)
                continue
            sub = self.finals.get(address)
            if not stayed and (salt == b"\0" * 32 or sub is None):
                out.append(DROPPED_SILENT)
                if any(values):
                    wrong.append(address)
                continue
            out.append(FINAL if stayed else DROPPED_REVEALED)
            if sub is None or commitment(self.rid, sub.args["iteration"], address, values, salt) != sub.args["commitment"] \
                    or ct_hash != sub.args["ciphertextHash"]:
                wrong.append(address)
        return out, wrong

    def _check_ledger(self, where: Event | None) -> None:
        """deposits - payments - withdrawals = balance, for every account of the round."""
        paid: dict[str, int] = self._slashes()
        for e in self._named("Payment"):
            paid[e.args["account"]] = paid.get(e.args["account"], 0) + e.args["amount"]
        bad = None
        for account in set(paid) | {e.args["account"] for e in self._named("Deposited")}:
            deposited = sum(e.args["amount"] for e in self._named("Deposited") if e.args["account"] == account)
            withdrawn = sum(e.args["amount"] for e in self._named("Withdrawn") if e.args["account"] == account)
            balance = self.contract.functions.balanceOf(self.rid, account).call()
            if deposited - paid.get(account, 0) - withdrawn != balance:
                bad = account
        self._add("ledger", bad is None, "deposits - payments - withdrawals = balance, every account"
                  if bad is None else f"ledger of {bad} does not add up", where=where)

    def _check_payments(self, k: int, settled: Event, payments: list[tuple[str, int]], rules,
                        participants: list[str], values: list[list[int]], prices: list[int], standing: list[int]) -> None:
        """The Payment events (and the Bill events, if the rule emits them) equal the mechanism's
        settlement rule applied to the revealed values at the final prices, in booking order."""
        try:
            expected, bills = rules.settlement(participants, values, prices, self.member_index, standing)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._add("payments", False, f"the settlement rule cannot be evaluated: {exc}", k, where=settled)
            return
        self._add("payments", payments == expected, _compare("payment", payments, expected,
                  f"each of the {len(expected)} payments equals the settlement rule applied to the committed reveals"),
                  k, where=settled)
        if bills is not None:
            shown = [(e.args["participant"], list(e.args["items"])) for e in self._named("Bill")]
            self._add("bills", shown == bills, _compare("bill", shown, bills, "every Bill event equals the settlement "
                      "rule's items"), k, where=settled)

    def check_closing(self) -> None:
        closed = self._one("Closed")
        if closed is None:
            return
        reason = CLOSE_REASONS[closed.args["reason"]] if closed.args["reason"] < len(CLOSE_REASONS) else "unknown"
        text = {"ByCoordinator": "the coordinator closed it",
                "CoordinatorLate": f"the coordinator missed its deadline; {closed.args['by']} cancelled it",
                "TooFewParticipants": "dropouts left fewer participants than the privacy minimum",
                "OpeningDisproved": "a challenge disproved the coordinator's opening",
                "BlameUnresolved": "after a sum mismatch nobody opened its final ciphertext consistently",
                }.get(reason, reason)
        self._note("conclusion", f"closed at iteration {closed.args['iteration']} without trading ({text}): every "
                   "deposit is withdrawable", closed.args["iteration"], where=closed)

    def check_failed_transactions(self) -> None:
        """A reverted call by an outsider is a note; one by a party of the round is flagged with
        what made it invalid."""
        parties = {p.lower() for p in self.participants} | {self._one("RoundCreated").args["coordinator"].lower()}
        for call in self.calls:
            if call.tx.status != 0:
                continue
            why = self._diagnose(call)
            detail = f"{call.name} by {call.tx.sender} reverted" + (f": {why}" if why else "")
            if call.tx.sender.lower() in parties:
                self._add("rejected", False, detail, call.args.get("iteration"), where=call)
            else:
                self._note("outsider", detail + " (not a party of the round)", call.args.get("iteration"), where=call)

    def _diagnose(self, call: Call) -> str | None:
        """What made a reverted call invalid, from the round's history (None: not known)."""
        a = call.args
        if call.name == "submit":
            sender = call.tx.sender
            if sender not in self.participants:
                return "not registered"
            if any(e.args["participant"] == sender and e.args["iteration"] == a.get("iteration")
                   and e.tx.block <= call.tx.block for e in self._named("Submitted")):
                return f"a second submission in iteration {a.get('iteration')}"
            ct = a.get("ciphertext", b"")
            if self.key is not None and ct:
                order = (call.tx.block, call.tx.index)
                for c in self.calls:
                    if c.name == "submit" and c.tx.status == 1 and (c.tx.block, c.tx.index) < order \
                            and c.args["ciphertext"] == ct:
                        return (f"repeats {c.tx.sender}'s ciphertext of iteration {c.args['iteration']} "
                                f"({'a replay' if c.tx.sender == sender else 'a copy'})")
                c = int.from_bytes(ct, "big")
                if not 0 < c < self.key.n_sq:
                    return "out of range (0, n^2)"
                if c == 1:
                    return "the ciphertext 1 (an unmasked encryption of 0)"
                if c % self.n == 0:
                    return "a multiple of n (no unit mod n^2)"
        if call.name in ("publish", "conclude") and self.key is not None:
            rho, m = int.from_bytes(a.get("opening", b""), "big"), int.from_bytes(a.get("plaintext", b""), "big")
            if not 0 < rho < self.n:
                return "a non-canonical opening (rho = 0 or rho >= n)"
            if m >= self.n:
                return "a plaintext >= n"
        if call.name in ("register", "registerSigned"):
            key = a.get("maskKey", b"")
            if not any(key):
                return "a zero mask key"
            if any(e.args["maskKey"] == key for e in self._named("Registered")):
                return "a repeated mask key"
        if call.name == "settle":
            concluded = self._one("Concluded")
            if concluded is not None:
                _, wrong = self._standings(self.participants, call)
                if wrong:
                    return f"it billed {', '.join(wrong)} for a reveal other than the one committed"
        return None


def _reveals(call: Call, count: int) -> list[list[int]]:
    """The per-participant reveals of a settle call (its flat ``values``, split evenly)."""
    values = list(call.args.get("values", []))
    if not count or len(values) % count:
        return []
    n = len(values) // count
    return [values[i * n:(i + 1) * n] for i in range(count)]


def _compare(what: str, actual: list, expected: list, ok_detail: str) -> str:
    """``ok_detail`` if the lists agree, else the first difference."""
    if actual == expected:
        return ok_detail
    for i, (a, e) in enumerate(zip(actual, expected)):
        if a != e:
            return f"{what} {i + 1}: on chain {a}, the rule gives {e}"
    return f"{len(actual)} {what}s on chain, the rule gives {len(expected)}"


def check_modules(chain: Chain, market: str) -> Finding:
    """The market runs the compiled PrivateRounds, and its modules the compiled PaillierMath,
    RoundOpenings and RoundSettlement (immutables aside)."""
    contract = chain.contract(MARKET_CONTRACT, market)
    f = contract.functions
    addresses = {MARKET_CONTRACT: market, "PaillierMath": f.paillier().call(), "RoundOpenings": f.openings().call(),
                 "RoundSettlement": f.settlement().call()}
    wrong = [name for name in (MARKET_CONTRACT, *MODULES)
             if not chain.artifacts[name].runs(bytes(chain.w3.eth.get_code(addresses[name])))]
    return Finding("contracts", not wrong, "the market runs PrivateRounds and its modules PaillierMath, RoundOpenings "
                   "and RoundSettlement, as compiled here" if not wrong
                   else f"{', '.join(wrong)} at the market's addresses is not the code compiled here")


def audit_market(chain: Chain, history: MarketHistory, round_id: int | None = None,
                 from_block: int = 0) -> tuple[list[Finding], dict]:
    """All findings of the chosen round (default: every round) plus the series for plots."""
    known = sorted({e.round_id for e in history.events if e.round_id})
    rounds = [round_id] if round_id is not None else known
    findings: list[Finding] = [check_modules(chain, history.address)]
    series = {}
    if round_id is not None and round_id not in known:
        return findings + [Finding("round", False, f"no round {round_id} at {history.address}", round_id)], {}
    for rid in rounds:
        audit = RoundAudit(chain, history, rid)
        try:
            findings += audit.run()
        except Exception as exc:  # noqa: BLE001 - a malformed round is reported, never a crash
            findings += audit.findings + [Finding("round", False, f"round {rid} cannot be audited: {exc!r}", rid)]
        series[rid] = audit.series
    # transactions that name no round (e.g. a createRound that reverted): the sender's own business
    for call in history.calls:
        if call.tx.status == 0 and "roundId" not in call.args:
            findings.append(Finding("outsider", True, f"{call.name} by {call.tx.sender} reverted", None, None,
                                    call.tx.hash_hex, call.tx.block, note=True))
    market = chain.contract(MARKET_CONTRACT, history.address)
    if from_block > 0:
        findings.append(Finding("token conservation", True, f"not checked: the history read starts at block "
                                f"{from_block}, after the market's first rounds", note=True))
        return findings, series
    token = chain.w3.eth.contract(address=market.functions.token().call(), abi=history.token_abi)
    held = token.functions.balanceOf(history.address).call()
    ledgers = 0
    for rid in history.round_ids():
        accounts = {e.args["account"] for e in history.of_round(rid) if e.name in ("Deposited", "Payment")}
        ledgers += sum(market.functions.balanceOf(rid, a).call() for a in accounts)
    findings.append(Finding("token conservation", held == ledgers,
                            f"market holds {held} token units; its ledgers add up to {ledgers}"))
    return findings, series
