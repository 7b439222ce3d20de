"""Every check an auditor makes of a round, from chain data alone.

Each check yields :class:`Finding` rows (pass or fail, with the transaction and block of a
failure). The generic checks hold for every mechanism; the mechanism-specific part (its price
rule, stop rule and settlement rule) is looked up in the registry by the ``mechanism`` name the
coordinator published in ``RoundCreated`` (an unknown or malformed name is reported, never a
crash), and the rule contract's code is compared with the registered mechanism's.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import keccak

from ..chain.backends import Chain
from ..chain.market import MARKET_CONTRACT, commitment
from ..errors import MechanismError
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at(event: Event | Call | None) -> dict[str, Any]:
    return {"tx": event.tx.hash_hex, "block": event.tx.block} if event is not None else {}


# the events each phase may see (PhaseChanged moves the phase; Published the iteration)
ALLOWED = {
    "Registering": {"Registered", "Deposited", "Withdrawn", "PhaseChanged"},
    "Iterating": {"RoundStarted", "Submitted", "PairMessages", "Aggregated", "Published", "Deposited", "PhaseChanged"},
    "Concluded": {"Concluded", "Deposited", "PhaseChanged"},
    "Settled": {"Bill", "Payment", "Settled", "Withdrawn"},
    "Closed": {"Closed", "Withdrawn"},
}
PHASES = ("Registering", "Iterating", "Concluded", "Settled", "Closed")


class RoundAudit:
    """The checks of one round; ``findings`` in the order they were made."""

    def __init__(self, chain: Chain, history: MarketHistory, round_id: int) -> None:
        self.chain, self.h, self.rid = chain, history, round_id
        self.events = history.of_round(round_id)
        self.calls = history.calls_of_round(round_id)
        self.findings: list[Finding] = []
        self.series: dict[str, Any] = {"prices": [], "sums": [], "payments": {}, "gas": history.gas_by_iteration(round_id)}
        self.contract = chain.contract(MARKET_CONTRACT, history.address)

    # ------------------------------------------------------------------ helpers
    def _add(self, check: str, ok: bool, detail: str, iteration: int | None = None, where=None) -> bool:
        self.findings.append(Finding(check, ok, detail, self.rid, iteration, **({} if ok else _at(where))))
        return ok

    def _one(self, name: str) -> Event | None:
        found = [e for e in self.events if e.name == name]
        return found[0] if found else None

    def _named(self, name: str, iteration: int | None = None) -> list[Event]:
        return [e for e in self.events if e.name == name and (iteration is None or e.args.get("iteration") == iteration)]

    # ------------------------------------------------------------------ the checks
    def run(self) -> list[Finding]:
        created = self._one("RoundCreated")
        params = created.args["params"]
        self.n = int.from_bytes(params["n"], "big")
        self.key = PublicKey(self.n) if self.n else None
        self.check_key(created)
        participants = self.check_registration()
        self.member_index = self._member_index(params, participants)
        self.check_order()
        rules = self._rules(params, participants)
        concluded = self.check_iterations(params, participants, rules)
        self.check_settlement(params, participants, concluded, rules)
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
        return addresses

    def _member_index(self, params: dict, participants: list[str]) -> list[int]:
        members = [m.lower() for m in params["members"]]
        if not members:
            return list(range(len(participants)))
        return [members.index(p.lower()) if p.lower() in members else -1 for p in participants]

    def check_order(self) -> None:
        """Events follow the round's state machine: nothing early, late or out of turn."""
        phase, iteration, bad = "Registering", 0, None
        for e in self.events[1:]:
            if e.name not in ALLOWED[phase] or e.args.get("iteration", iteration) != iteration:
                bad = e
                break
            if e.name == "PhaseChanged":
                phase = PHASES[e.args["to"]]
            elif e.name == "Published":
                iteration += 1
        self._add("order of events", bad is None, "every event in turn" if bad is None else
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
        code = bytes(self.chain.w3.eth.get_code(rule))
        ok = artifact is not None and code == bytes.fromhex(artifact.deployed.removeprefix("0x"))
        self._add("rule contract", ok, f"{rule} runs {mechanism.rule_contract}, the registered rule of "
                  f"{mechanism.name!r}" if ok else f"the rule contract {rule} is not {mechanism.rule_contract}'s code",
                  where=created)

    def check_iterations(self, params: dict, participants: list[str], rules) -> Event | None:
        """The generic iteration checks and, per decrypted iteration, the mechanism's rules; the
        ``Concluded`` event (``None``: not concluded)."""
        layout = SlotLayout(params["slots"], params["slotBits"], params["slotWidth"], max(len(participants), 1)) \
            if self.key is not None else None
        started = self._one("RoundStarted")
        if started is not None and rules is not None:
            rules.started(list(started.args["prices"]))
        submits = {c.tx.hash: c for c in self.calls if c.name == "submit" and c.tx.status == 1}
        prices = list(started.args["prices"]) if started else []
        k = 0
        while True:
            subs = self._named("Submitted", k)
            agg = self._named("Aggregated", k)
            dec = self._named("Published", k) + self._named("Concluded", k)
            if not subs and not agg and not dec:
                break
            self._check_submissions(k, subs, submits, participants)
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
                          f"iteration {k}: (1+n)^m rho^n = aggregate", k, where=d)
                sums = layout.unpack_sums(plaintext)
                self._add("decoded sums", sums == list(d.args["sums"]), f"iteration {k}: slot sums of the plaintext", k,
                          where=d)
            self.series["prices"].append([p / 1e6 for p in prices])
            self.series["sums"].append([s / ENERGY_SCALE for s in d.args["sums"]])
            if rules is not None:
                for check, ok, detail in rules.observe(d):
                    self._add(check, ok, detail, k, where=d)
            if d.name == "Concluded":
                return d
            prices = list(d.args["nextPrices"])
            k += 1
        closed = self._one("Closed")
        if closed is not None:
            self._add("conclusion", True, f"closed at iteration {closed.args['iteration']} without trading: every "
                      "deposit is withdrawable", k)
        elif self._named("RoundStarted"):
            self._add("conclusion", False, f"round not concluded: stalled at iteration {k}", k, where=self.events[-1])
        return None

    def _check_submissions(self, k: int, subs: list[Event], submits: dict, participants: list[str]) -> None:
        who = [e.args["participant"] for e in subs]
        missing = [p for p in participants if p not in who]
        ok = not missing and len(who) == len(set(who))
        detail = f"iteration {k}: one submission from each of {len(participants)} participants"
        if missing:
            detail = f"iteration {k}: no submission from {', '.join(missing)}"
        attempts = [c for c in self.calls if c.name == "submit" and c.tx.status == 0
                    and c.args.get("iteration") == k and c.tx.sender in missing]
        self._add("submissions", ok, detail + (" (its transaction reverted)" if attempts else ""), k,
                  where=attempts[0] if attempts else (subs[-1] if subs else None))
        for e in subs:
            call = submits.get(e.tx.hash)
            ct = call.args["ciphertext"] if call else b""
            c = int.from_bytes(ct, "big")
            in_range = (0 < c < self.key.n_sq) if self.key is not None else ct == b""
            good = (call is not None and keccak(ct) == e.args["ciphertextHash"]
                    and call.args["commitment"] == e.args["commitment"] and in_range)
            if not good:
                self._add("ciphertext", False, f"iteration {k}: the input of {e.args['participant']}'s submission "
                          "does not match its event", k, where=e)

    def _check_aggregate(self, k: int, subs: list[Event], submits: dict, agg: Event) -> None:
        product = self.key.add(*(int.from_bytes(submits[e.tx.hash].args["ciphertext"], "big")
                                 for e in subs if e.tx.hash in submits))
        self._add("aggregate", product == int.from_bytes(agg.args["aggregate"], "big"),
                  f"iteration {k}: product of the {len(subs)} ciphertexts mod n^2", k, where=agg)

    def check_settlement(self, params: dict, participants: list[str], concluded: Event | None, rules) -> None:
        settled = self._one("Settled")
        self._check_ledger(settled or self._one("Closed") or self._one("RoundCreated"))
        if concluded is None or settled is None:
            closed = self._one("Closed")
            if concluded is not None and closed is not None:
                self._add("settlement", True, f"concluded at iteration {concluded.args['iteration']}, then closed "
                          "without trading: nothing settled, every deposit withdrawable")
            elif concluded is not None:
                self._add("settlement", False, "concluded round never settled", where=concluded)
            return
        k = concluded.args["iteration"]
        call = next(c for c in self.calls if c.name == "settle" and c.tx.hash == settled.tx.hash)
        values = _reveals(call, len(participants))
        for address in self._misbilled(k, participants, call):
            self._add("billed as committed", False, f"{address}'s settled reveal does not open its commitment",
                      k, where=settled)
        ok = len(values) == len(participants)
        if self.key is not None:  # the first `slots` revealed values are the encrypted ones
            totals = [sum(col) for col in zip(*(v[:params["slots"]] for v in values))] if values else []
            ok = ok and totals == list(concluded.args["sums"])
        self._add("billed as committed", ok, "every reveal opens its participant's last commitment"
                  + ("; the reveals add up to the decrypted total" if self.key is not None else ""), k, where=settled)
        payments = [(e.args["account"], e.args["amount"]) for e in self._named("Payment")]
        if rules is not None:
            self._check_payments(k, settled, payments, rules, participants, values, list(concluded.args["prices"]))
        paid: dict[str, int] = {}
        for account, amount in payments:
            paid[account] = paid.get(account, 0) + amount
        self._add("zero sum", sum(paid.values()) == 0, f"payments sum to {sum(paid.values())}", k, where=settled)
        self.series["payments"] = {a: v / 1e18 for a, v in paid.items()}

    def _check_ledger(self, where: Event | None) -> None:
        """deposits - payments - withdrawals = balance, for every account of the round."""
        paid: dict[str, int] = {}
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
                        participants: list[str], values: list[list[int]], prices: list[int]) -> None:
        """The Payment events (and the Bill events, if the rule emits them) equal the mechanism's
        settlement rule applied to the revealed values at the final prices, in booking order."""
        try:
            expected, bills = rules.settlement(participants, values, prices, self.member_index)
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

    def _misbilled(self, k: int, participants: list[str], call: Call) -> list[str]:
        """Participants whose reveal in a settle call does not open their last commitment."""
        finals = {e.args["participant"]: e for e in self._named("Submitted", k)}
        wrong = []
        args = call.args
        reveals = _reveals(call, len(participants))
        for i, address in enumerate(participants):
            sub = finals.get(address)
            try:
                values, salt, ct_hash = reveals[i], args["salts"][i], args["ciphertextHashes"][i]
            except (IndexError, KeyError):
                wrong.append(address)
                continue
            if sub is None or commitment(self.rid, k, address, values, salt) != sub.args["commitment"] \
                    or ct_hash != sub.args["ciphertextHash"]:
                wrong.append(address)
        return wrong

    def check_failed_transactions(self) -> None:
        concluded = self._one("Concluded")
        participants = [e.args["participant"] for e in self._named("Registered")]
        for call in self.calls:
            if call.tx.status != 0:
                continue
            detail = f"{call.name} by {call.tx.sender} reverted: its effect is missing"
            if call.name == "settle" and concluded is not None:
                wrong = self._misbilled(concluded.args["iteration"], participants, call)
                if wrong:
                    detail = f"settle by {call.tx.sender} reverted: it billed {', '.join(wrong)} for a reveal " \
                             "other than the one committed"
            self._add("transactions", False, detail, call.args.get("iteration"), where=call)


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


def audit_market(chain: Chain, history: MarketHistory, round_id: int | None = None) -> tuple[list[Finding], dict]:
    """All findings of the chosen round (default: every round) plus the series for plots."""
    rounds = [round_id] if round_id is not None else history.round_ids()
    findings: list[Finding] = []
    series = {}
    if round_id is not None and round_id not in history.round_ids():
        return [Finding("round", False, f"no round {round_id} at {history.address}", round_id)], {}
    for rid in rounds:
        audit = RoundAudit(chain, history, rid)
        try:
            findings += audit.run()
        except Exception as exc:  # noqa: BLE001 - a malformed round is reported, never a crash
            findings += audit.findings + [Finding("round", False, f"round {rid} cannot be audited: {exc!r}", rid)]
        series[rid] = audit.series
    # transactions that name no round (e.g. a createRound that reverted)
    for call in history.calls:
        if call.tx.status == 0 and "roundId" not in call.args:
            findings.append(Finding("transactions", False, f"{call.name} reverted", None, None, call.tx.hash_hex, call.tx.block))
    market = chain.contract(MARKET_CONTRACT, history.address)
    token = chain.w3.eth.contract(address=market.functions.token().call(), abi=history.token_abi)
    held = token.functions.balanceOf(history.address).call()
    ledgers = 0
    for rid in history.round_ids():
        accounts = {e.args["account"] for e in history.of_round(rid) if e.name in ("Deposited", "Payment")}
        ledgers += sum(market.functions.balanceOf(rid, a).call() for a in accounts)
    findings.append(Finding("token conservation", held == ledgers,
                            f"market holds {held} token units; its ledgers add up to {ledgers}"))
    return findings, series
