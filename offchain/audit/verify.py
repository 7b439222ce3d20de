"""Every check an auditor makes of a round, from chain data alone.

Each check yields :class:`Finding` rows: a pass, a failure (with the transaction and block where
it shows) or a note (something that happened and is not a fault of the market: a dropout, a
participant that did not open in a dispute, an outsider's rejected call). A party the chain
proves at fault (``Blamed``: a false check claim, a disproved opening, a withheld reveal, a sum
cheat, a late or false coordinator) is a failure named at the transaction that proved it; the
audit recomputes each proof (openings, check values, pair-mask proofs) and never names a party
the chain did not prove.

The round is rebuilt attempt by attempt (``StepChanged`` opens each submission attempt of an
iteration): who submitted, who was dropped and why, the aggregate of that attempt's ciphertexts,
the coordinator's decryption and its check slot, and, when the check slot shows masks that do not
cancel, the dispute. Then the reveals, the settlement (after a blame step when the reveals did
not add up), the forfeits and their sharing, and the ledgers.

The mechanism-specific part (its price rule, stop rule and settlement rule) is looked up in the
registry by the ``mechanism`` name the coordinator published in ``RoundCreated``. A round that is
not a gridshare mechanism's (its rule contract runs no registered mechanism's rule, or its
published mechanism is not a registered one: an outsider's round in the same contract) is
reported in notes on that round, never as failures of the market.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from eth_utils import keccak

from ..chain.backends import Chain
from ..chain.market import (CLOSE_REASONS, CULPRIT_FAULTS, DROP_REASONS, FAULTS, MARKET_CONTRACT, MODULES, PHASES, STEPS,
                            commitment)
from ..errors import MechanismError
from ..privacy import secagg
from ..privacy.masks import stream
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
    culprit: bool = False  # a party the chain proved at fault and punished by the rules: named, not a market failure

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at(event: Event | Call | None) -> dict[str, Any]:
    return {"tx": event.tx.hash_hex, "block": event.tx.block} if event is not None else {}


# the events each phase may see (PhaseChanged moves the phase; Published the iteration)
ALLOWED = {
    "Registering": {"Registered", "Deposited", "PhaseChanged", "StepChanged", "RoundStarted", "Dropped", "Blamed"},
    "Iterating": {"Submitted", "MaskPoint", "PairMessages", "Dropped", "AggregationProgress", "Aggregated", "Published",
                  "Disputed", "CheckOpened", "Accused", "Blamed", "Deposited", "PhaseChanged", "StepChanged",
                  "Challenged", "OpeningConfirmed", "OpeningDisproved"},
    "Concluded": {"Concluded", "Deposited", "PhaseChanged", "Challenged", "OpeningConfirmed", "OpeningDisproved",
                  "Revealed", "BlameStarted", "BlameOpened", "Blamed"},
    "Settled": {"Bill", "Payment", "Compensated", "Settled", "Withdrawn"},
    "Closed": {"Closed", "Compensated", "Withdrawn"},
}
NEXT_ITERATION = {"MaskPoint"}  # posted one iteration ahead
WITH_ATTEMPT = {"Submitted", "Disputed"}  # name the attempt they belong to
ATTEMPT_EVENTS = {"StepChanged", "Submitted", "Dropped", "AggregationProgress", "Aggregated", "Published", "Concluded",
                  "Disputed", "CheckOpened", "Accused", "Blamed"}
FINAL, DROPPED_REVEALED, DROPPED_SILENT = 0, 1, 2  # RoundTypes.Standing

FAULT_TEXT = {
    "WithheldReveal": "stayed to the end and did not reveal its values",
    "FalseOpening": "posted an opening of its ciphertext that a challenge disproved",
    "FalseCheck": "claimed check values that its neighbour's proof contradicts: its masks do not cancel",
    "SumCheated": "was the only participant that did not open its final ciphertext in the blame step: it encrypted "
                  "other values than it revealed",
    "CoordinatorLate": "missed its deadline",
    "CoordinatorFalseOpening": "published a decryption that a challenge disproved",
    "CoordinatorFalseSums": "published false sums: every participant proved its final ciphertext in the blame step",
    "Overdrawn": "revealed values whose bill exceeds its deposit: settled without them",
}
CLOSE_TEXT = {
    "ByCoordinator": "the coordinator closed it",
    "CoordinatorLate": "the coordinator missed its deadline",
    "TooFewParticipants": "dropouts left fewer participants than the privacy minimum",
    "OpeningDisproved": "a challenge disproved the coordinator's decryption",
    "DisputeUnresolved": "a dispute named nobody",
    "MasksDoNotCancel": "the masks did not cancel in a round whose openings cannot be checked",
    "RevealsDoNotAddUp": "the reveals did not add up in a round whose openings cannot be checked",
    "NotSettled": "concluded, and nobody settled it in time",
}
RACES = {"aggregate", "advance", "settle", "cancel"}  # calls anyone may make: a loser of a race is no fault
STATE_CHANGES = {"StepChanged", "PhaseChanged", "AggregationProgress", "Aggregated", "BlameStarted"}
LEDGER_MOVES = {"Deposited": 1, "Payment": -1, "Withdrawn": -1, "Blamed": -1, "Compensated": 1}  # sign on the balance
FORFEITED = 26  # roundInfo's field: forfeited and not yet shared out
POINT, PROOF = secagg.POINT_BYTES, secagg.EXPANDED_BYTES
OWN = POINT + PROOF  # Y_i(k) || its proof
PAIR = 2 * POINT + PROOF  # Y_j(k) || P || its proof


@dataclass
class Attempt:
    """One submission attempt of an iteration and what followed it, up to the next attempt."""
    k: int
    number: int
    active: list[int]  # registration positions (0-based) in the round when it began
    events: list[Event] = field(default_factory=list)

    def named(self, *names: str) -> list[Event]:
        return [e for e in self.events if e.name in names]

    @property
    def label(self) -> str:
        return f"iteration {self.k}" + (f" attempt {self.number}" if self.number else "")


def _point_problem(data: bytes) -> str | None:
    """Why ``data`` is no point the contract takes (None: it is one)."""
    data = bytes(data)
    if len(data) != POINT or data[0] not in (2, 3):
        return f"not a {POINT}-byte compressed point"
    if int.from_bytes(data[1:], "big") >= secagg.Q:
        return "a point whose x is not below N, the group order"
    return None if secagg.is_point(data) else "not a point of the curve"


class RoundAudit:
    """The checks of one round; ``findings`` in the order they were made."""

    def __init__(self, chain: Chain, history: MarketHistory, round_id: int) -> None:
        self.chain, self.h, self.rid = chain, history, round_id
        self.events = history.of_round(round_id)
        self.calls = history.calls_of_round(round_id)
        self.call_of = {c.tx.hash: c for c in self.calls}
        self.findings: list[Finding] = []
        self.series: dict[str, Any] = {"prices": [], "sums": [], "payments": {}, "gas": history.gas_by_iteration(round_id)}
        self.contract = chain.contract(MARKET_CONTRACT, history.address)
        self.foreign: str | None = None  # why the round is not a gridshare mechanism's (None: it is one)

    # ------------------------------------------------------------------ helpers
    def _add(self, check: str, ok: bool, detail: str, iteration: int | None = None, where=None) -> bool:
        self.findings.append(Finding(check, ok, detail, self.rid, iteration, **({} if ok else _at(where))))
        return ok

    def _note(self, check: str, detail: str, iteration: int | None = None, where=None) -> None:
        self.findings.append(Finding(check, True, detail, self.rid, iteration, **_at(where), note=True))

    def _one(self, name: str) -> Event | None:
        found = [e for e in self.events if e.name == name]
        return found[0] if found else None

    def _named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    def _pos(self, address: str) -> int:
        return self.index[address.lower()]

    def _who(self, position: int) -> str:
        return self.participants[position]

    def _names(self, positions) -> str:
        return ", ".join(self._who(i) for i in sorted(positions)) or "nobody"

    def _int(self, data: bytes) -> int:
        return int.from_bytes(data, "big")

    # ------------------------------------------------------------------ the checks
    def run(self) -> list[Finding]:
        created = self._one("RoundCreated")
        if created is None:
            self._note("round", "created before the first block read (--from-block): not audited")
            return self.findings
        params = self.params = created.args["params"]
        self.coordinator = created.args["coordinator"]
        self.foreign = self._foreign(params)
        if self.foreign:
            self._note("outsider round", f"round {self.rid} is not a gridshare mechanism's round ({self.foreign}): "
                       "what the audit finds in it is noted, none of it is a failure of the market", where=created)
        self.n = self._int(params["n"])
        self.key = PublicKey(self.n) if self.n else None
        self.check_key(created)
        self.participants = self.check_registration()
        self.index = {a.lower(): i for i, a in enumerate(self.participants)}
        self.member_index = self._member_index(params)
        self.layout = SlotLayout(params["slots"], params["slotBits"], params["slotWidth"], max(len(self.participants), 1)) \
            if self.key is not None else None
        self.plan = secagg.Plan(self.participants, secagg.round_context(self.h.address, self.rid, self.chain.chain_id))
        self.points = self._mask_points()
        self.ciphertexts: dict[bytes, bytes] = {}  # Submitted tx hash -> the ciphertext submitted
        self.check_order()
        rules = self.rules = self._rules(params, created)
        concluded = self.concluded = self.check_iterations(rules)
        self.check_challenges()
        self.check_faults()
        self.check_settlement(concluded, rules)
        self.check_ledger()
        self.check_closing()
        self.check_failed_transactions()
        if self.foreign:
            self.findings = [self._as_note(f) for f in self.findings]
        return self.findings

    def _as_note(self, f: Finding) -> Finding:
        """A finding of an outsider's round: a note, labelled as such."""
        if f.note:
            return f
        detail = f.detail if f.ok else f"not a gridshare mechanism's round: {f.detail}"
        return replace(f, ok=True, note=True, detail=detail)

    def _foreign(self, params: dict) -> str | None:
        """Why the round is not a gridshare mechanism's (None: its rule runs a registered mechanism's
        rule and it publishes a registered mechanism)."""
        from .. import registry

        code = bytes(self.chain.w3.eth.get_code(params["rule"]))
        rules = []
        for name in registry.names():
            try:
                rules.append(self.chain.artifacts.get(registry.get(name).rule_contract))
            except MechanismError:
                continue
        if not any(artifact is not None and artifact.runs(code) for artifact in rules):
            return f"its rule contract {params['rule']} runs no registered mechanism's rule"
        name = _published_name(params["mechanism"])
        if name is None:
            return "its published mechanism is not gridshare's JSON"
        if name not in registry.names():
            return f"it publishes the unknown mechanism {name!r}"
        return None

    def check_key(self, created: Event) -> None:
        params = created.args["params"]
        if self.key is None:
            ok = created.args["keyData"] == "0x" + "0" * 40
            self._add("coordinator key", ok, "no Paillier key: commitments only" if ok else
                      "a round without a modulus has key data", where=created)
            return
        code = bytes(self.chain.w3.eth.get_code(created.args["keyData"]))
        expected = b"\x00" + (self.n * self.n).to_bytes(2 * len(params["n"]), "big") + params["n"]
        self._add("coordinator key", self.n % 2 == 1 and code == expected,
                  f"{self.n.bit_length()}-bit Paillier modulus; n and n^2 stored on chain as registered"
                  if code == expected else "the key data on chain is not (n^2, n) of the registered modulus",
                  where=created)

    def check_registration(self) -> list[str]:
        regs = self._named("Registered")
        addresses = [e.args["participant"] for e in regs]
        self.keys = [bytes(e.args["keys"]) for e in regs]
        positions_ok = [e.args["position"] for e in regs] == list(range(1, len(regs) + 1))
        ok = positions_ok and list(self.contract.functions.participants(self.rid).call()) == addresses
        self._add("participants", ok, f"{len(regs)} registered in order, storage agrees" if ok else
                  "registration events disagree with the participants kept in storage", where=regs[-1] if regs else None)
        expected = 2 * POINT if self.n else (POINT if self.params["pairLanes"] else 0)
        bad = next((e for e, k in zip(regs, self.keys) if len(k) != expected
                    or any(_point_problem(k[i:i + POINT]) for i in range(0, len(k), POINT))), None)
        what = {0: "no keys (no Paillier key, no pair lanes)", POINT: "its key A, a valid curve point",
                2 * POINT: "its key A and its first mask point, valid curve points"}[expected]
        self._add("mask keys", bad is None, f"each registered {what}" if bad is None
                  else f"{bad.args['participant']} registered keys the contract should have refused", where=bad)
        seen: dict[bytes, str] = {}  # key A -> who registered it first
        for e, k in zip(regs, self.keys):
            if k and k[:POINT] in seen:
                self._note("mask keys", f"{e.args['participant']} registered the key of {seen[k[:POINT]]}: the masks "
                           "of whichever does not hold its secret do not cancel, which a dispute names", where=e)
            seen.setdefault(k[:POINT], e.args["participant"])
        return addresses

    def _member_index(self, params: dict) -> list[int]:
        """Each participant's member index: its place in the allow-list, the index the creator
        signed for it, or its registration order."""
        members = [m.lower() for m in params["members"]]
        if members:
            return [members.index(p.lower()) if p.lower() in members else -1 for p in self.participants]
        if params["signedMembers"]:
            signed = {c.tx.sender.lower(): c.args["memberIndex"] for c in self.calls
                      if c.name == "registerSigned" and c.tx.status == 1}
            return [signed.get(p.lower(), -1) for p in self.participants]
        return list(range(len(self.participants)))

    def _mask_points(self) -> dict[int, dict[int, bytes]]:
        """Each participant's mask point Y(k) per iteration: Y(0) registered, Y(k+1) the last it
        posted with a submission of iteration k."""
        points: dict[int, dict[int, bytes]] = {0: {i: k[POINT:] for i, k in enumerate(self.keys) if len(k) == 2 * POINT}}
        for e in self._named("MaskPoint"):
            points.setdefault(e.args["iteration"], {})[self._pos(e.args["participant"])] = bytes(e.args["point"])
        return points

    def check_order(self) -> None:
        """Events follow the round's state machine: nothing early, late or out of turn."""
        phase, iteration, attempt, bad = "Registering", 0, 0, None
        for e in self.events[1:]:
            k = e.args.get("iteration", iteration)
            if e.name not in ALLOWED[phase] or k != iteration + (e.name in NEXT_ITERATION) \
                    or (e.name in WITH_ATTEMPT and e.args["attempt"] != attempt):
                bad = e
                break
            if e.name == "PhaseChanged":
                if e.args["to"] <= e.args["from"] or PHASES[e.args["from"]] != phase:
                    bad = e
                    break
                phase = PHASES[e.args["to"]]
            elif e.name == "StepChanged":
                attempt = e.args["attempt"]
            elif e.name == "Published":
                iteration += 1
        self._add("order of events", bad is None, "every event in turn, phases only forward" if bad is None else
                  f"{bad.name} out of turn (phase {phase}, iteration {iteration}, attempt {attempt})", where=bad)

    def _rules(self, params: dict, created: Event):
        """The round's mechanism rules from the registry (one "update rule" finding: what is
        replayed, or why not), after checking the rule contract's code."""
        from ..registry import get

        name = _published_name(params["mechanism"])
        if name is None:
            self._add("update rule", False, "the published mechanism is not gridshare's JSON: rule not checked",
                      where=created)
            return None
        try:
            mechanism = get(name)
        except MechanismError:
            self._add("update rule", False, f"unknown mechanism {name!r}: rule not checked", where=created)
            return None
        self.series["mechanism"] = name
        artifact = self.chain.artifacts.get(mechanism.rule_contract)
        rule = params["rule"]
        ok = artifact is not None and artifact.runs(bytes(self.chain.w3.eth.get_code(rule)))
        self._add("rule contract", ok, f"{rule} runs {mechanism.rule_contract}, the registered rule of {name!r}"
                  if ok else f"the rule contract {rule} is not {mechanism.rule_contract}'s code", where=created)
        try:
            rules = mechanism.audit_rules(json.loads(params["mechanism"]), params, self.participants)
        except Exception as exc:  # noqa: BLE001 - a malformed round is reported, never a crash
            self._add("update rule", False, f"mechanism {name!r}: its rules cannot be built ({exc})", where=created)
            return None
        for ok, detail in rules.problems or [(True, rules.describe())]:
            self._add("update rule", ok, detail, where=created)
        return rules

    # ------------------------------------------------------------------ iterations
    def _attempts(self) -> list[Attempt]:
        """The round's submission attempts in order, each with the events up to the next one
        (``self.start_drops``: those dropped at the start, before any attempt)."""
        attempts: list[Attempt] = []
        active = set(range(len(self.participants)))
        self.start_drops: list[Event] = []
        for e in self.events:
            if e.name == "StepChanged" and PHASES[e.args["phase"]] == "Iterating" and STEPS[e.args["step"]] == "Submitting":
                attempts.append(Attempt(e.args["iteration"], e.args["attempt"], sorted(active), [e]))
            elif e.name in ATTEMPT_EVENTS and attempts:
                attempts[-1].events.append(e)
            elif e.name == "Dropped":
                self.start_drops.append(e)
            if e.name == "Dropped":
                active.discard(self._pos(e.args["participant"]))
        return attempts

    def check_iterations(self, rules) -> Event | None:
        """The checks of every attempt and, per published iteration, the mechanism's rules; the
        ``Concluded`` event (``None``: not concluded)."""
        started = self._one("RoundStarted")
        prices = list(started.args["prices"]) if started else []
        if started is not None and rules is not None:
            rules.started(prices)
        info = self.contract.functions.roundInfo(self.rid).call()
        phase, step, self.deadline = PHASES[info[0]], STEPS[info[1]], int(info[4])
        # a round whose current step is not yet late is in progress, not stalled
        self.live = phase in ("Registering", "Iterating") and self.chain.block_number <= self.deadline
        self.attempts = self._attempts()
        self._check_start_drops(rules)
        for att in self.attempts:
            gone = [self._pos(e.args["participant"]) for e in att.named("Dropped")]
            self._check_attempt(att)
            if rules is not None and gone:
                rules.dropped(att.k, gone)
            d = next(iter(att.named("Published", "Concluded")), None)
            if d is None:
                continue
            self.series["prices"].append([p / 1e6 for p in prices])
            self.series["sums"].append([s / ENERGY_SCALE for s in d.args["sums"]])
            if rules is not None:
                for check, ok, detail in rules.observe(d):
                    self._add(check, ok, detail, att.k, where=d)
            if d.name == "Concluded":
                return d
            prices = list(d.args["nextPrices"])
        last = self.attempts[-1] if self.attempts else None
        if last is not None and self.live:
            self._note("in progress", f"{last.label}: {len(last.named('Submitted'))} of {len(last.active)} submitted so "
                       f"far, step {step}; the step's deadline is block {self.deadline}", last.k)
        elif self._one("Closed") is None and started is not None:
            self._add("conclusion", False, f"round not concluded: stalled at {last.label if last else 'its start'} past "
                      f"its deadline (block {self.deadline}): anyone may advance or cancel it",
                      last.k if last else 0, where=self.events[-1])
        return None

    def _fate_of_dropped(self) -> str:
        """What became of a dropped participant: the round's end decides."""
        if self._one("Settled") is not None:
            return "settled by the mechanism's fallback"
        if self._one("Closed") is not None:
            return "the round then closed without trading (its deposit withdrawable)"
        return "to be settled by the mechanism's fallback"

    def _check_start_drops(self, rules) -> None:
        """Participants dropped at the start: their deposit was below the round's collateral."""
        collateral = self.params["collateral"]
        for e in self.start_drops:
            who = e.args["participant"]
            held = sum(d.args["amount"] for d in self._before(e.tx, "Deposited") if d.args["account"] == who)
            if held < collateral and DROP_REASONS[e.args["reason"]] == "NoCollateral":
                self._note("dropout", f"{who} deposited {held}, less than the collateral {collateral}: dropped at the "
                           f"start, {self._fate_of_dropped()}", 0, where=e)
            else:
                self._add("dropout", False, f"{who} was dropped at the start though it deposited {held}, the "
                          f"collateral being {collateral}", 0, where=e)
        if rules is not None and self.start_drops:
            rules.dropped(0, [self._pos(e.args["participant"]) for e in self.start_drops])

    def _check_attempt(self, att: Attempt) -> None:
        subs = att.named("Submitted")
        drops = {self._pos(e.args["participant"]): (DROP_REASONS[e.args["reason"]], e) for e in att.named("Dropped")}
        self._check_submissions(att, subs, drops)
        for i, (reason, e) in sorted(drops.items()):
            text = {"MissedSubmission": f"did not submit in {att.label}",
                    "MissedOpening": f"did not open in the dispute of {att.label}",
                    "Culprit": f"was proven a culprit in the dispute of {att.label}"}.get(reason, reason)
            self._note("dropout", f"{self._who(i)} {text}: dropped, {self._fate_of_dropped()}", att.k, where=e)
        aggregated = next(iter(att.named("Aggregated")), None)
        if self.key is not None and aggregated is not None:
            product = self.key.add(*(self._int(self.ciphertexts[e.tx.hash]) for e in subs if e.tx.hash in self.ciphertexts))
            chunks = 1 + len(att.named("AggregationProgress"))
            in_chunks = f" ({chunks} chunks)" if chunks > 1 else ""
            self._add("aggregate", product == self._int(aggregated.args["aggregate"]),
                      f"{att.label}: product of the {len(subs)} ciphertexts mod n^2{in_chunks}", att.k, where=aggregated)
        d = next(iter(att.named("Published", "Concluded", "Disputed")), None)
        if d is None:
            return
        if self.key is None:
            self._add("decoded sums", not d.args["sums"], f"{att.label}: no key, no sums", att.k, where=d)
            return
        if aggregated is None:
            self._add("aggregate", False, f"{att.label}: decrypted without an aggregate", att.k, where=d)
            return
        m, rho = self._int(d.args["plaintext"]), self._int(d.args["opening"])
        ok = self.key.verify_opening(self._int(aggregated.args["aggregate"]), m, rho)
        self._add("opening proof", ok, f"{att.label}: (1+n)^m rho^n = aggregate, 0 < rho < n" if ok else
                  f"{att.label}: the coordinator {self.coordinator}'s decryption does not open the aggregate "
                  "((1+n)^m rho^n differs from it)", att.k, where=d)
        sums, check = self.layout.unpack(m)
        if d.name == "Disputed":
            self._add("check slot", check == d.args["check"] != 0, f"{att.label}: check slot {check}: the masks did not "
                      "cancel, a dispute" if check else f"{att.label}: the check slot is 0, yet the coordinator disputed",
                      att.k, where=d)
            self._check_dispute(att, subs, drops)
            return
        self._add("check slot", check == 0, f"{att.label}: check slot 0, the masks cancelled" if check == 0 else
                  f"{att.label}: check slot {check}: the masks did not cancel, yet the coordinator published", att.k, where=d)
        self._add("decoded sums", sums == list(d.args["sums"]), f"{att.label}: slot sums of the plaintext", att.k, where=d)

    def _check_submissions(self, att: Attempt, subs: list[Event], drops: dict) -> None:
        """One submission from each active participant (those that missed the deadline dropped),
        each as its call sent it."""
        who = [self._pos(e.args["participant"]) for e in subs]
        missed = {i for i, (reason, _) in drops.items() if reason == "MissedSubmission"}
        closed = bool(missed) or any(STEPS[e.args["step"]] == "Aggregating" for e in att.named("StepChanged"))
        expected = set(att.active) - missed
        problem = ("a second submission" if len(who) != len(set(who))
                   else f"a submission from {self._names(set(who) - set(att.active))}, not active"
                   if set(who) - set(att.active)
                   else f"{self._names(missed & set(who))} dropped though it submitted" if missed & set(who)
                   else f"no submission from {self._names(expected - set(who))} and it was not dropped"
                   if closed and expected - set(who) else None)
        if closed or problem:
            self._add("submissions", problem is None, f"{att.label}: " + (problem or f"one submission from each of the "
                      f"{len(expected)} active participants"), att.k, where=subs[-1] if subs else None)
        for e in subs:
            call = self.call_of.get(e.tx.hash)
            ct = bytes(call.args["ciphertext"]) if call is not None and call.name == "submit" else None
            problem = "no submit call" if ct is None else self._ciphertext_problem(ct) or self._next_point_problem(call)
            if ct is not None and (keccak(ct) != e.args["ciphertextHash"] or call.args["commitment"] != e.args["commitment"]):
                problem = "its input does not match its event"
            if problem:
                self._add("ciphertext", False, f"{att.label}: {e.args['participant']}'s submission: {problem}", att.k, where=e)
            else:
                self.ciphertexts[e.tx.hash] = ct

    def _next_point_problem(self, call: Call) -> str | None:
        """Why a submit call's next mask point is refused (None: it is not)."""
        point = bytes(call.args.get("nextPoint", b""))
        if self.key is None:
            return "a mask point in a round without a key" if point else None
        problem = _point_problem(point)
        return f"a next mask point that is {problem}" if problem else None

    def _ciphertext_problem(self, ct: bytes) -> str | None:
        """Why a submitted ciphertext is invalid (None: it is not)."""
        if self.key is None:
            return None if ct == b"" else "a ciphertext in a round without a key"
        if len(ct) != self.key.ciphertext_bytes:
            return f"a ciphertext of {len(ct)} bytes, not {self.key.ciphertext_bytes}"
        c = self._int(ct)
        if not 0 < c < self.key.n_sq:
            return "out of range (0, n^2)"
        if c == 1:
            return "the ciphertext 1 (an unmasked encryption of 0)"
        if c % self.n == 0:
            return "a multiple of n (no unit mod n^2)"
        return None

    # ------------------------------------------------------------------ disputes
    def _check_dispute(self, att: Attempt, subs: list[Event], drops: dict) -> None:
        """A disputed attempt: each submitter's opening (its ciphertext, masked plaintext and
        randomness) holds and its check values add up to its check slot; each accusation stands
        (the accuser's proven pair mask differs from the accused's claim); the advance after it
        dropped exactly those that did not open and the culprits the dispute proved."""
        in_dispute = {self._pos(e.args["participant"]) for e in subs}
        sub_of = {self._pos(e.args["participant"]): e for e in subs}
        claims: dict[int, list[int]] = {}
        wrong = 0
        for e in att.named("CheckOpened"):
            i = self._pos(e.args["participant"])
            claims[i] = list(e.args["checks"])
            call = self.call_of.get(e.tx.hash)
            submitted = self.ciphertexts.get(sub_of[i].tx.hash) if i in sub_of else None
            problem = self._check_opening_problem(i, submitted, bytes(call.args["opened"]), claims[i], in_dispute)
            if problem:
                wrong += 1
                self._add("dispute opening", False, f"{att.label}: {self._who(i)}'s opening in the dispute: {problem}",
                          att.k, where=e)
        if claims and not wrong:
            self._add("dispute openings", True, f"{att.label}: {len(claims)} of {len(in_dispute)} submitters opened; "
                      "each opening holds and its check values add up to its check slot", att.k)
        for e in att.named("Accused"):
            self._check_accusation(att, e, claims, in_dispute)
        closed = self._one("Closed")
        unresolved = closed is not None and CLOSE_REASONS[closed.args["reason"]] == "DisputeUnresolved" \
            and closed.args["iteration"] == att.k and att is self.attempts[-1]
        if not drops and not unresolved:
            return  # the dispute has not ended (or the round closed for another reason)
        proven = {self._pos(e.args["culprit"]) for e in att.named("Blamed")
                  if FAULTS[e.args["fault"]] in ("FalseCheck", "FalseOpening") and e.args["culprit"].lower() in self.index}
        dropped = {reason: {i for i, (r, _) in drops.items() if r == reason} for reason in ("MissedOpening", "Culprit")}
        expected = {"MissedOpening": in_dispute - set(claims), "Culprit": proven}
        where = next(iter(drops.values()))[1] if drops else closed
        ok = dropped == expected
        proven_, silent = self._names(proven), self._names(expected["MissedOpening"])
        self._add("dispute outcome", ok, f"{att.label}: dropped the culprits ({proven_}) and those that did not open "
                  f"({silent})" + ("; the dispute named nobody: closed" if unresolved else "") if ok else
                  f"{att.label}: the advance dropped {self._names(dropped['Culprit'])} as culprits and "
                  f"{self._names(dropped['MissedOpening'])} as not opened; the dispute proved {proven_} and {silent} "
                  "did not open", att.k, where=where)

    def _check_opening_problem(self, i: int, submitted: bytes | None, opened: bytes, checks: list[int],
                               active: set[int]) -> str | None:
        """Why participant i's dispute opening does not hold (None: it holds)."""
        L = self.key.nbytes
        ct, m, rho = opened[:2 * L], self._int(opened[2 * L:3 * L]), self._int(opened[3 * L:])
        if submitted is None or ct != submitted:
            return "it opens another ciphertext than the one it submitted"
        if not self.key.verify_opening(self._int(ct), m, rho):
            return "the opening does not hold ((1+n)^m rho^n differs from its ciphertext)"
        neighbours = self.plan.active_neighbours(i, active)
        if len(checks) != len(neighbours):
            return f"{len(checks)} check values for {len(neighbours)} active neighbours"
        modulus = 1 << self.params["slotBits"]
        total = sum(self.plan.sign(i, j) * c for j, c in zip(neighbours, checks)) % modulus
        if (self.layout.unpack(m)[1] - total) % modulus:
            return "its check values do not add up to its plaintext's check slot"
        return None

    def _proven_streams(self, i: int, k: int, attempt: int, data: bytes, others: list[int]) -> list[list[int]] | str:
        """Participant i's pair masks with ``others`` in an attempt, from what it posted to prove them
        (``data``: its key A, Y_i(k) and its proof, then per other Y_j(k), P = a_i Y_j(k) and its
        proof), each checked against what the chain keeps; or why they do not hold."""
        if len(data) != POINT + OWN + len(others) * PAIR:
            return f"{len(data)} bytes of proofs, not {POINT + OWN + len(others) * PAIR}"
        key, own = data[:POINT], data[POINT:2 * POINT]
        points = self.points.get(k, {})
        if key != self.keys[i][:POINT]:
            return "its key is not the one it registered"
        if own != points.get(i) or not secagg.verify(key, self.plan.point(k), own, data[2 * POINT:POINT + OWN]):
            return f"its mask point of iteration {k} is not the one it posted, or its proof does not hold"
        out = []
        for q, j in enumerate(others):
            at = POINT + OWN + q * PAIR
            theirs, pair, proof = data[at:at + POINT], data[at + POINT:at + 2 * POINT], data[at + 2 * POINT:at + PAIR]
            if theirs != points.get(j) or not secagg.verify(key, theirs, pair, proof):
                return f"its pair point with {self._who(j)} is not proven"
            out.append(stream(self.plan.seed(i, j, pair), secagg.stream_index(k, attempt), self.params["slots"] + 1,
                              self.params["slotBits"]))
        return out

    def _check_accusation(self, att: Attempt, e: Event, claims: dict[int, list[int]], active: set[int]) -> None:
        """Whether an accusation stands: the accuser's proven check value with the accused differs
        from the accused's claim (and is the accuser's own claim)."""
        i, j = self._pos(e.args["accuser"]), self._pos(e.args["accused"])
        call = self.call_of[e.tx.hash]
        mine, theirs = list(call.args["mine"]), list(call.args["theirs"])
        ni, nj = self.plan.active_neighbours(i, active), self.plan.active_neighbours(j, active)
        why = None
        if mine != claims.get(i) or theirs != claims.get(j):
            why = "its check values are not the ones both opened"
        elif j not in ni or i not in nj:
            why = "they are no neighbours"
        else:
            proven = self._proven_streams(i, att.k, att.number, bytes(call.args["proof"]), [j])
            if isinstance(proven, str):
                why = f"the accuser's proof does not hold: {proven}"
            elif proven[0][-1] != mine[ni.index(j)] or mine[ni.index(j)] == theirs[nj.index(i)]:
                why = "the accuser's proven check value is not its claim, or both claims agree"
        self._add("accusation", why is None, f"{att.label}: {e.args['accuser']} proved its pair mask with "
                  f"{e.args['accused']} (check value {mine[ni.index(j)] if j in ni else '?'}), which claimed "
                  f"{theirs[nj.index(i)] if i in nj else '?'}" if why is None else f"{att.label}: the chain named "
                  f"{e.args['accused']} on {e.args['accuser']}'s accusation, which does not stand: {why}", att.k, where=e)

    # ------------------------------------------------------------------ challenges and faults
    def _opening_label(self, key: int) -> str:
        """What the opening under a challenge key is (RoundStorage's keys)."""
        kind = key >> 128
        if kind == 0:
            return f"the coordinator's decryption of iteration {key >> 16} attempt {key & 0xFFFF}"
        position = key & 0xFFFF
        who = self._who(position - 1) if 0 < position <= len(self.participants) else f"participant {position}"
        if kind == 1:
            return f"{who}'s opening in the dispute of iteration {(key >> 32) & 0xFFFFFFFF} attempt {(key >> 16) & 0xFFFF}"
        return f"{who}'s blame opening"

    def check_challenges(self) -> None:
        for e in self._named("OpeningConfirmed"):
            self._note("challenge", f"{self._opening_label(e.args['key'])}: challenged and confirmed on chain", where=e)
        for e in self._named("OpeningDisproved"):
            self._note("challenge", f"{e.args['challenger']} disproved {self._opening_label(e.args['key'])} on chain",
                       where=e)

    def check_faults(self) -> None:
        """Each party the chain named at fault, at the transaction that proved it: a culprit (a
        failure of that party, which the market punished as its rules say, not of the market),
        except a participant that did not open in a blame step (offline or a cheat: the chain
        cannot tell), which is a note."""
        for e in self._named("Blamed"):
            who, fault, amount = e.args["culprit"], FAULTS[e.args["fault"]], e.args["forfeited"]
            k = self._state_before(e.tx)["k"]
            if fault == "NotOpened":
                self._note("blame", f"{who} did not open in the blame step: settled by the fallback; offline or a cheat, "
                           "the chain cannot tell", k, where=e)
                continue
            party = f"the coordinator {who}" if fault.startswith("Coordinator") else who
            self.findings.append(Finding("culprit", True, f"{party} {FAULT_TEXT.get(fault, fault)} ({fault}): forfeited "
                                         f"{amount / 1e18:g} tokens" + (", shared among the others" if amount else ""),
                                         self.rid, k, **_at(e), culprit=True))

    # ------------------------------------------------------------------ the end
    def check_settlement(self, concluded: Event | None, rules) -> None:
        self.check_reveals()
        settled = self._one("Settled")
        if concluded is not None and self._one("BlameStarted") is not None:
            self._check_blame(concluded)
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
        call = self.call_of[settled.tx.hash]
        values = _reveals(call, len(self.participants))
        standing = self._standings(settled.tx, overdrawn=False)  # as the caller had to count the reveals
        ok = len(values) == len(self.participants)
        for i, (row, s) in enumerate(zip(values, standing)):
            if s == DROPPED_SILENT and any(row) or s != DROPPED_SILENT and (
                    row != self.revealed[i][0] or call.args["ciphertextHashes"][i] != self.revealed[i][1]):
                ok = False
                self._add("billed as revealed", False, f"{self._who(i)} settled with values other than it revealed",
                          k, where=settled)
        detail = "the settlement bills every participant its own reveal"
        if self.key is not None and self._one("BlameStarted") is None:
            totals = [sum(row[t] for row, s in zip(values, standing) if s == FINAL) for t in range(self.params["slots"])]
            ok = ok and totals == list(concluded.args["sums"])
            detail += "; the reveals of those that stayed add up to the decrypted total"
        dropped = sum(s != FINAL for s in standing)
        self._add("billed as revealed", ok, detail + (f"; {dropped} settled by the mechanism's fallback" if dropped else ""),
                  k, where=settled)
        payments = [(e.args["account"], e.args["amount"]) for e in self._named("Payment")]
        if rules is not None:  # the contract voids the reveals of the overdrawn before it books the payments
            self._check_payments(k, settled, payments, rules, values, list(concluded.args["prices"]),
                                 self._standings(settled.tx))
        paid: dict[str, int] = {}
        for account, amount in payments:
            paid[account] = paid.get(account, 0) + amount
        self._add("zero sum", sum(paid.values()) == 0, f"payments sum to {sum(paid.values())}", k, where=settled)
        self.series["payments"] = {a: v / 1e18 for a, v in paid.items()}

    def check_reveals(self) -> None:
        """Every reveal opens its participant's last commitment (values, salt and the ciphertext it
        was submitted with)."""
        last: dict[str, Event] = {}
        for e in self._named("Submitted"):
            last[e.args["participant"]] = e
        self.revealed: dict[int, tuple[list[int], bytes]] = {}  # position -> (values, ciphertext hash)
        bad = None
        for e in self._named("Revealed"):
            who, call = e.args["participant"], self.call_of[e.tx.hash]
            values, salt, ct_hash = list(call.args["values"]), call.args["salt"], call.args["ciphertextHash"]
            sub = last.get(who)
            if sub is None or commitment(self.rid, sub.args["iteration"], who, values, salt) != sub.args["commitment"] \
                    or ct_hash != sub.args["ciphertextHash"]:
                bad = bad or e
                self._add("reveal", False, f"{who}'s reveal does not open its last commitment", where=e)
            self.revealed[self._pos(who)] = (values, ct_hash)
        if self.revealed and bad is None:
            self._add("reveals", True, f"each of the {len(self.revealed)} reveals opens its participant's last commitment")

    def _standings(self, tx, overdrawn: bool = True) -> list[int]:
        """Each participant's standing in the settlement of ``tx`` (RoundSettlement._standings):
        counted if it revealed, is no culprit and, having stayed, (after a blame step) cleared.
        ``overdrawn``: with the participants ``tx`` itself found overdrawn (as it booked them)."""
        happened = [e for e in self.events if (e.tx.block, e.tx.index) <= (tx.block, tx.index)
                    and not (not overdrawn and e.tx.hash == tx.hash and e.name == "Blamed"
                             and FAULTS[e.args["fault"]] == "Overdrawn")]
        dropped = {self._pos(e.args["participant"]) for e in happened if e.name == "Dropped"}
        culprits = {e.args["culprit"].lower() for e in happened
                    if e.name == "Blamed" and FAULTS[e.args["fault"]] in CULPRIT_FAULTS}
        cleared = self._cleared()
        blamed = any(e.name == "BlameStarted" and e.tx.hash != tx.hash for e in happened)
        out = []
        for i, who in enumerate(self.participants):
            stayed = i not in dropped
            counted = i in self.revealed and who.lower() not in culprits and not (stayed and blamed and i not in cleared)
            out.append(DROPPED_SILENT if not counted else FINAL if stayed else DROPPED_REVEALED)
        return out

    def _cleared(self) -> set[int]:
        """Who opened its final ciphertext in a blame step and was not disproved."""
        disproved = {(e.args["key"] & 0xFFFF) - 1 for e in self._named("OpeningDisproved") if e.args["key"] >> 128 == 2}
        return {self._pos(e.args["participant"]) for e in self._named("BlameOpened")} - disproved

    def _check_blame(self, concluded: Event) -> None:
        """After the reveals did not add up (or one was withheld): why the blame step began, each
        blame opening (its ciphertext, opening and proven masks give its reveal), and whom the
        settlement named: the only one that did not open (a cheat), else each that did not open
        (settled by the fallback), or, when everyone opened, the coordinator."""
        started = self._one("BlameStarted")
        first = self.call_of[started.tx.hash]
        withheld = [e.args["culprit"] for e in self._named("Blamed")
                    if e.tx.hash == started.tx.hash and FAULTS[e.args["fault"]] == "WithheldReveal"]
        standing = self._standings(started.tx)
        values = _reveals(first, len(self.participants))
        totals = [sum(row[t] for row, s in zip(values, standing) if s == FINAL) for t in range(self.params["slots"])]
        mismatch = [t for t, (a, b) in enumerate(zip(totals, concluded.args["sums"])) if a != b]
        self._add("blame step", bool(withheld or mismatch), "the reveals" + (f" differ from the decrypted sums in slot "
                  f"{mismatch[0]} (revealed {totals[mismatch[0]]}, decrypted {concluded.args['sums'][mismatch[0]]})"
                  if mismatch else " add up") + (f"; {', '.join(withheld)} withheld its reveal" if withheld else "")
                  + f": blame step until block {started.args['until']}", concluded.args["iteration"], where=started)
        k, attempt = concluded.args["iteration"], self.attempts[-1].number
        active = set(range(len(self.participants))) - {self._pos(e.args["participant"]) for e in self._named("Dropped")}
        for e in self._named("BlameOpened"):
            i = self._pos(e.args["participant"])
            why = self._blame_opening_problem(i, k, attempt, self.call_of[e.tx.hash], active)
            self._add("blame opening", why is None, f"{self._who(i)} opened its final ciphertext and proved its masks: "
                      "they give its reveal and a zero check slot" if why is None
                      else f"{self._who(i)}'s blame opening: {why}", k, where=e)
        settled = self._one("Settled")
        if settled is None:
            return
        culprits = {e.args["culprit"].lower() for e in self._named("Blamed") if FAULTS[e.args["fault"]] in CULPRIT_FAULTS
                    and (e.tx.block, e.tx.index) < (settled.tx.block, settled.tx.index)}
        cleared = self._cleared()
        unopened = [self._who(i) for i in sorted(active) if i in self.revealed and i not in cleared
                    and self._who(i).lower() not in culprits]
        unrevealed = [i for i in active if i not in self.revealed]
        if len(unopened) == 1 and not unrevealed and not culprits:
            expected = {unopened[0]: "SumCheated"}
        elif unopened:
            expected = {a: "NotOpened" for a in unopened}
        else:
            expected = {} if unrevealed or culprits else {self.coordinator: "CoordinatorFalseSums"}
        named = {e.args["culprit"]: FAULTS[e.args["fault"]] for e in self._named("Blamed") if e.tx.hash == settled.tx.hash}
        self._add("blame outcome", named == expected, f"the settlement named {_faults(named)}" if named == expected else
                  f"the settlement named {_faults(named)}; the blame openings name {_faults(expected)}", k, where=settled)

    def _blame_opening_problem(self, i: int, k: int, attempt: int, call: Call, active: set[int]) -> str | None:
        """Why participant i's blame opening does not give its reveal (None: it does)."""
        L = self.key.nbytes
        opened, values = bytes(call.args["opened"]), list(call.args["values"])
        ct, m, rho = opened[:2 * L], self._int(opened[2 * L:3 * L]), self._int(opened[3 * L:])
        if i not in self.revealed or values != self.revealed[i][0] or keccak(ct) != self.revealed[i][1]:
            return "it opens another ciphertext or reveal than the ones it revealed"
        if not self.key.verify_opening(self._int(ct), m, rho):
            return "its opening does not hold ((1+n)^m rho^n differs from its ciphertext)"
        neighbours = self.plan.active_neighbours(i, active)
        streams = self._proven_streams(i, k, attempt, bytes(call.args["masks"]), neighbours)
        if isinstance(streams, str):
            return streams
        modulus = 1 << self.params["slotBits"]
        mask = [sum(self.plan.sign(i, j) * s[t] for j, s in zip(neighbours, streams)) % modulus
                for t in range(self.params["slots"] + 1)]
        if self.layout.unpack(m, mask) != (values[:self.params["slots"]], 0):
            return "its plaintext less its proven masks is not its reveal"
        return None

    def check_ledger(self) -> None:
        """deposits - payments - withdrawals - forfeited + compensated = balance, for every account
        of the round; what was forfeited and not shared out is the round's pool."""
        moves: dict[str, int] = {}
        for e in self.events:
            if e.name in LEDGER_MOVES:
                account = e.args["culprit"] if e.name == "Blamed" else e.args["account"]
                amount = e.args["forfeited"] if e.name == "Blamed" else e.args["amount"]
                moves[account] = moves.get(account, 0) + LEDGER_MOVES[e.name] * amount
        bad = [a for a, v in moves.items() if self.contract.functions.balanceOf(self.rid, a).call() != v]
        forfeited = sum(e.args["forfeited"] for e in self._named("Blamed"))
        shared = sum(e.args["amount"] for e in self._named("Compensated"))
        pool = int(self.contract.functions.roundInfo(self.rid).call()[FORFEITED])
        ok = not bad and forfeited - shared == pool
        where = self._one("Settled") or self._one("Closed") or self._one("RoundCreated")
        self._add("ledger", ok, "deposits - payments - withdrawals - forfeited + compensated = balance, every account"
                  + (f"; {forfeited / 1e18:g} tokens forfeited, {shared / 1e18:g} shared out" if forfeited else "")
                  if ok else f"the ledger of {', '.join(bad)} does not add up" if bad else
                  f"forfeited {forfeited}, shared {shared}, yet the round's pool holds {pool}", where=where)

    def _check_payments(self, k: int, settled: Event, payments: list[tuple[str, int]], rules,
                        values: list[list[int]], prices: list[int], standing: list[int]) -> None:
        """The Payment events (and the Bill events, if the rule emits them) equal the mechanism's
        settlement rule applied to the revealed values at the final prices, in booking order."""
        values = [v if s != DROPPED_SILENT else [0] * len(v) for v, s in zip(values, standing)]  # as the contract voids them
        try:
            expected, bills = rules.settlement(self.participants, values, prices, self.member_index, standing)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._add("payments", False, f"the settlement rule cannot be evaluated: {exc}", k, where=settled)
            return
        self._add("payments", payments == expected, _compare("payment", payments, expected,
                  f"each of the {len(expected)} payments equals the settlement rule applied to the reveals"),
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
        text = CLOSE_TEXT.get(reason, reason) + ("" if reason != "CoordinatorLate" else f"; {closed.args['by']} cancelled it")
        held = {e.args["account"] for e in self._named("Deposited")}
        back = {e.args["account"] for e in self._named("Withdrawn")} & held
        self._note("conclusion", f"closed at iteration {closed.args['iteration']} without trading ({text}): every "
                   f"deposit is withdrawable, less what culprits forfeited; {len(back)} of {len(held)} depositors "
                   "have withdrawn (refunded)", closed.args["iteration"], where=closed)

    # ------------------------------------------------------------------ rejected calls
    def check_failed_transactions(self) -> None:
        """A reverted call by a party of the round is flagged with what made it invalid (a call that
        only lost a race, e.g. an aggregation someone else did first, is a note; one no party could
        have made pass is a failure of the settlement, not of its sender); one by an outsider is a
        note."""
        parties = {p.lower() for p in self.participants} | {self.coordinator.lower()}
        for call in self.calls:
            if call.tx.status != 0:
                continue
            race = self._lost_race(call)
            unpayable = call.name == "settle" and self._unpayable(call)
            why = (f"another {call.name} had just made the move it tried" if race else
                   f"the settlement charges {unpayable} (InsufficientDeposit)" if unpayable else self._diagnose(call))
            detail = f"{call.name} by {call.tx.sender} reverted" + (f": {why}" if why else "")
            k = call.args.get("iteration")
            ended = self._state_before(call.tx)["phase"] in ("Settled", "Closed")
            if call.tx.sender.lower() not in parties:
                self._note("outsider", detail + " (not a party of the round)", k, where=call)
            elif ended and call.name != "settle":  # e.g. a party that was down, back after a cancellation
                self._note("rejected", f"{detail}: the round had already ended; nothing changed", k, where=call)
            elif race:
                self._note("rejected", detail, k, where=call)
            elif unpayable:
                self._add("settlement", False, f"{detail}: the round cannot be settled, through no fault of the "
                          "caller", k, where=call)
            else:
                self._add("rejected", False, detail, k, where=call)

    def _state_before(self, tx) -> dict[str, Any]:
        """The round's phase, step, iteration, attempt and deadline before ``tx``, from the events."""
        state = {"phase": "Registering", "step": "Submitting", "k": 0, "attempt": 0, "deadline": None}
        for e in self.events:
            if (e.tx.block, e.tx.index) >= (tx.block, tx.index):
                break
            if e.name == "PhaseChanged":
                state["phase"] = PHASES[e.args["to"]]
            elif e.name == "StepChanged":
                state.update(step=STEPS[e.args["step"]], k=e.args["iteration"], attempt=e.args["attempt"],
                             deadline=e.args["deadline"])
        return state

    def _before(self, tx, name: str) -> list[Event]:
        return [e for e in self._named(name) if (e.tx.block, e.tx.index) < (tx.block, tx.index)]

    def _diagnose(self, call: Call) -> str | None:
        """What made a reverted call invalid, from the round's history (None: not known)."""
        a, tx, sender = call.args, call.tx, call.tx.sender
        st = self._state_before(tx)
        registered = any(e.args["participant"] == sender for e in self._before(tx, "Registered"))
        late = st["deadline"] is not None and tx.block > st["deadline"]
        if call.name == "submit":
            if not registered:
                return "not registered"
            if st["phase"] != "Iterating" or st["step"] != "Submitting":
                return f"submissions are closed (phase {st['phase']}, step {st['step']})"
            if late:
                return f"after the attempt's deadline (block {st['deadline']})"
            if a["iteration"] != st["k"]:
                return f"for iteration {a['iteration']} while the round is at iteration {st['k']}"
            if any(e.args["participant"] == sender for e in self._before(tx, "Dropped")):
                return f"{sender} was dropped: no longer active"
            if any(e.args["participant"] == sender and (e.args["iteration"], e.args["attempt"]) == (st["k"], st["attempt"])
                   for e in self._before(tx, "Submitted")):
                return f"a second submission in iteration {st['k']} attempt {st['attempt']}"
            return self._ciphertext_problem(bytes(a["ciphertext"])) or self._next_point_problem(call)
        if call.name in ("register", "registerSigned"):
            if st["phase"] != "Registering" or late:
                return "registration is closed"
            if registered:
                return "already registered"
            if sender.lower() in (self.coordinator.lower(), self.params["gridAccount"].lower()):
                return "the coordinator and the grid account cannot register"
            keys = bytes(a["keys"])
            expected = 2 * POINT if self.n else (POINT if self.params["pairLanes"] else 0)
            if len(keys) != expected:
                return f"keys of {len(keys)} bytes, not {expected}"
            problem = next((p for p in (_point_problem(keys[i:i + POINT]) for i in range(0, len(keys), POINT)) if p), None)
            return f"a key that is {problem}" if problem else None
        if call.name in ("publish", "conclude", "dispute"):
            if sender != self.coordinator:
                return "not the coordinator"
            if st["phase"] != "Iterating" or st["step"] != "Aggregating":
                return f"nothing to decrypt now (phase {st['phase']}, step {st['step']})"
            if self.key is not None:
                m, rho = self._int(a.get("plaintext", b"")), self._int(a.get("opening", b""))
                if m >= self.n:
                    return "a plaintext >= n"
                if not 0 < rho < self.n:
                    return "a non-canonical opening (rho = 0 or rho >= n)"
                check = self.layout.unpack(m)[1]
                if call.name != "dispute" and check:
                    return f"the masks did not cancel (check slot {check}): a dispute was due"
                if call.name == "dispute" and not check:
                    return "the masks cancelled (check slot 0): nothing to dispute"
            return None
        if call.name == "advance":
            if st["phase"] != "Iterating" or st["step"] == "Aggregating" or not late:
                return f"nothing to advance (phase {st['phase']}, step {st['step']}, deadline {st['deadline']})"
            return "its list of those that missed the step is wrong"
        if call.name == "openCheck":
            return self._diagnose_open_check(call, st)
        if call.name == "withdraw" and st["phase"] not in ("Settled", "Closed"):
            return f"a withdrawal before the round ended (phase {st['phase']})"
        if call.name == "settle" and st["phase"] == "Concluded":
            values = _reveals(call, len(self.participants))
            wrong = [self._who(i) for i, row in enumerate(values) if i in self.revealed and any(row)
                     and row != self.revealed[i][0]]
            return f"it billed {', '.join(wrong)} for values other than it revealed" if wrong else None
        if call.name == "reveal" and st["phase"] == "Concluded":
            subs = [e for e in self._before(tx, "Submitted") if e.args["participant"] == sender]
            if subs and commitment(self.rid, subs[-1].args["iteration"], sender, list(a["values"]), a["salt"]) \
                    != subs[-1].args["commitment"]:
                return "its values and salt do not open its last commitment"
        return None

    def _lost_race(self, call: Call) -> bool:
        """Whether a call anyone may make (aggregate, advance, settle, cancel) reverted because
        another one of its kind had just made the move: the last change of the round's state
        before it came from that other call."""
        if call.name not in RACES:
            return False
        changes = [e for e in self.events if e.name in STATE_CHANGES
                   and (e.tx.block, e.tx.index) < (call.tx.block, call.tx.index)]
        winner = self.call_of.get(changes[-1].tx.hash) if changes else None
        return winner is not None and winner.name == call.name

    def _unpayable(self, call: Call) -> str | None:
        """Whether a reverted settle call's payments exceed what an account holds (e.g. a culprit's
        fallback bill once its deposit was forfeited): which (None: none does)."""
        values = _reveals(call, len(self.participants))
        concluded = self._one("Concluded")
        if self.rules is None or concluded is None or len(values) != len(self.participants):
            return None
        try:
            expected, _ = self.rules.settlement(self.participants, values, list(concluded.args["prices"]),
                                                self.member_index, self._standings(call.tx))
        except (ValueError, KeyError, IndexError, TypeError):
            return None
        short = [f"{account} {amount / 1e18:g} tokens while it holds {held / 1e18:g}" for account, amount in expected
                 if amount > (held := self._balance_before(call.tx, account))]
        return "; ".join(short) or None

    def _balance_before(self, tx, account: str) -> int:
        """An account's ledger balance before ``tx``, from the round's events."""
        total = 0
        for e in self.events:
            if (e.tx.block, e.tx.index) >= (tx.block, tx.index):
                break
            if e.name in LEDGER_MOVES and (e.args.get("account") or e.args.get("culprit")) == account:
                total += LEDGER_MOVES[e.name] * (e.args["forfeited"] if e.name == "Blamed" else e.args["amount"])
        return total

    def _diagnose_open_check(self, call: Call, st: dict) -> str | None:
        sender = call.tx.sender
        if st["step"] != "Disputing":
            return "no dispute in progress"
        if sender.lower() not in self.index:
            return "not registered"
        i = self._pos(sender)
        subs = [e for e in self._before(call.tx, "Submitted") if e.args["participant"] == sender
                and (e.args["iteration"], e.args["attempt"]) == (st["k"], st["attempt"])]
        if not subs:
            return f"{sender} did not submit in the disputed attempt"
        attempt = next(att for att in reversed(self.attempts) if (att.k, att.number) == (st["k"], st["attempt"]))
        return self._check_opening_problem(i, self.ciphertexts.get(subs[-1].tx.hash), bytes(call.args["opened"]),
                                           list(call.args["checks"]), set(attempt.active))


def _published_name(mechanism: str) -> str | None:
    """The mechanism name a round publishes (its JSON's ``mechanism``), None if it is not gridshare's JSON."""
    try:
        published = json.loads(mechanism or "{}")
    except ValueError:
        return None
    name = published.get("mechanism") if isinstance(published, dict) else None
    return name if isinstance(name, str) else None


def _faults(named: dict[str, str]) -> str:
    return ", ".join(f"{a} ({f})" for a, f in sorted(named.items())) or "nobody"


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


def _check_children(audits: dict[int, "RoundAudit"]) -> list[Finding]:
    """Each child round against its parent: its coordinator (the operator) is a participant of the
    parent, and what the operator revealed in the parent is what its child round concluded, as the
    parent's mechanism links them (``Rules.child_link``)."""
    out = []
    for rid, child in sorted(audits.items()):
        params = getattr(child, "params", None)
        parent_id = int(params["parentRoundId"]) if params else 0
        if not parent_id:
            continue
        parent = audits.get(parent_id)
        if parent is None or not hasattr(parent, "participants"):
            out.append(Finding("child round", True, f"round {rid} is a child of round {parent_id}, which was not "
                               "audited here", rid, note=True))
            continue
        operator = child.coordinator.lower()
        members = [a.lower() for a in parent.participants]
        if operator not in members:
            out.append(Finding("child round", False, f"round {rid}'s coordinator {child.coordinator} is not a "
                               f"participant of its parent round {parent_id}", rid))
            continue
        pos = members.index(operator)
        out.append(Finding("child round", True, f"round {rid} is run by participant {pos} of round {parent_id} "
                           f"({child.coordinator}), its coordinator", rid))
        concluded, revealed = getattr(child, "concluded", None), getattr(parent, "revealed", {}).get(pos)
        link = parent.rules.child_link([int(v) for v in concluded.args["sums"]], list(revealed[0])) \
            if concluded is not None and revealed is not None and getattr(parent, "rules", None) is not None else None
        if link is None:
            out.append(Finding("child result", True, f"round {rid}: its result is not linked to what its operator "
                               f"revealed in round {parent_id} (not concluded, not revealed, or the mechanism states "
                               "no link)", rid, note=True))
        else:
            ok, detail = link
            out.append(Finding("child result", ok, f"round {rid} against its operator's reveal in round {parent_id}: "
                               f"{detail}", rid))
    return out


def check_modules(chain: Chain, market: str) -> Finding:
    """The market runs the compiled PrivateRounds, and its modules the compiled PaillierMath,
    RoundOpenings, RoundSettlement and RoundDisputes (immutables aside)."""
    contract = chain.contract(MARKET_CONTRACT, market)
    f = contract.functions
    addresses = {MARKET_CONTRACT: market, "PaillierMath": f.paillier().call(), "RoundOpenings": f.openings().call(),
                 "RoundSettlement": f.settlement().call(), "RoundDisputes": f.disputes().call()}
    wrong = [name for name in (MARKET_CONTRACT, *MODULES)
             if not chain.artifacts[name].runs(bytes(chain.w3.eth.get_code(addresses[name])))]
    return Finding("contracts", not wrong, "the market runs PrivateRounds and its modules PaillierMath, RoundOpenings, "
                   "RoundSettlement and RoundDisputes, as compiled here" if not wrong
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
    audits: dict[int, RoundAudit] = {}
    for rid in rounds:
        audit = audits[rid] = RoundAudit(chain, history, rid)
        try:
            findings += audit.run()
        except Exception as exc:  # noqa: BLE001 - a malformed round is reported, never a crash
            crash = Finding("round", False, f"round {rid} cannot be audited: {exc!r}", rid)
            findings += [audit._as_note(f) for f in audit.findings + [crash]] if audit.foreign else audit.findings + [crash]
        series[rid] = audit.series
    findings += _check_children(audits)
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
        ledgers += int(market.functions.roundInfo(rid).call()[FORFEITED])  # forfeited, not yet shared out
        accounts = {e.args.get("account") or e.args.get("culprit") for e in history.of_round(rid)
                    if e.name in ("Deposited", "Payment", "Compensated", "Blamed")}
        ledgers += sum(market.functions.balanceOf(rid, a).call() for a in accounts)
    findings.append(Finding("token conservation", held == ledgers,
                            f"market holds {held} token units; its ledgers and unshared forfeits add up to {ledgers}"))
    return findings, series
