"""Every check an auditor makes of a round, from chain data alone.

Each check yields :class:`Finding` rows (pass or fail, with the transaction and block of a
failure). The mechanism-specific part (the price rule, the stop rule and the settlement) is looked
up by the ``mechanism`` name the coordinator published in ``RoundCreated``: :class:`TariffRules`
(TariffMarket) or :class:`StorageRules` (StorageMarket, docs/storage-market.md).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
from eth_utils import keccak, to_checksum_address

from ..chain.backends import Chain
from ..chain.market import StorageTerms, commitment
from ..mechanisms.admm import StorageOperator, reported_residuals
from ..mechanisms.storage_settlement import ITEMS, settlement_amounts
from ..mechanisms.tariff import TariffIteration, TariffRule, settlement
from ..privacy.packing import SlotLayout
from ..privacy.paillier import PublicKey
from ..units import ENERGY_SCALE, energy_from_fixed, energy_to_fixed, price_to_fixed
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


class RoundAudit:
    """The checks of one round; ``findings`` in the order they were made."""

    def __init__(self, chain: Chain, history: MarketHistory, round_id: int) -> None:
        self.chain, self.h, self.rid = chain, history, round_id
        self.events = history.of_round(round_id)
        self.calls = history.calls_of_round(round_id)
        self.findings: list[Finding] = []
        self.series: dict[str, Any] = {"tariff": [], "imbalance": [], "payments": {}, "gas": history.gas_by_iteration(round_id)}

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
        self.key = PublicKey(self.n)
        self.check_key(created)
        participants = self.check_registration()
        self.check_order()
        concluded, rules = self.check_iterations(params, participants)
        self.check_settlement(params, participants, concluded, rules)
        self.check_failed_transactions()
        return self.findings

    def check_key(self, created: Event) -> None:
        params = created.args["params"]
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
        stored, keys = self._stored_participants()
        ok = positions_ok and stored == addresses and keys == [e.args["maskKey"] for e in regs]
        self._add("participants", ok, f"{len(regs)} registered in order, storage agrees" if ok else
                  "registration events disagree with the participants kept in storage", where=regs[-1] if regs else None)
        return addresses

    def _stored_participants(self) -> tuple[list[str], list[bytes]]:
        contract = self.chain.contract("TariffMarket", self.h.address)
        accounts, keys = contract.functions.participants(self.rid).call()
        return list(accounts), [bytes(k) for k in keys]

    def check_order(self) -> None:
        """Events follow the round's state machine: nothing early, late or out of turn."""
        phase, iteration, bad = "registering", 0, None
        allowed = {
            "registering": {"Registered", "Deposited", "Withdrawn", "RoundStarted"},
            "iterating": {"Submitted", "PairMessages", "Aggregated", "Published", "Concluded", "Deposited"},
            "concluded": {"Bill", "Payment", "Settled", "Deposited"},  # settle(): [bills,] payments, then Settled
            "settled": {"Payment", "Withdrawn"},
        }
        for e in self.events[1:]:
            if e.name not in allowed[phase] or e.args.get("iteration", iteration) != iteration:
                bad = e
                break
            if e.name == "RoundStarted":
                phase = "iterating"
            elif e.name == "Published":
                iteration += 1
            elif e.name == "Concluded":
                phase = "concluded"
            elif e.name == "Settled":
                phase = "settled"
        self._add("order of events", bad is None, "every event in turn" if bad is None else
                  f"{bad.name} out of turn (phase {phase}, iteration {iteration})", where=bad)

    def _rules(self, params: dict, participants: list[str], started: Event | None):
        """The round's mechanism rules (one "update rule" finding: what is replayed, or why not)."""
        if started is None:
            return None
        mechanism = json.loads(params["mechanism"] or "{}")
        rules = StorageRules(mechanism, params, participants) if _is_storage(params) \
            else TariffRules(mechanism, list(started.args["tariff"]), params)
        self.series["mechanism"] = "storage" if isinstance(rules, StorageRules) else "tariff"
        for ok, detail in rules.problems or [(True, rules.describe())]:
            self._add("update rule", ok, detail, where=self._one("RoundCreated"))
        return rules

    def check_iterations(self, params: dict, participants: list[str]) -> tuple[Event | None, Any]:
        """The generic iteration checks and, per decrypted iteration, the mechanism's rules; returns the
        ``Concluded`` event (``None``: not concluded) and the mechanism's rules."""
        layout = SlotLayout(params["periods"], params["slotBits"], params["slotWidth"], max(len(participants), 1))
        started = self._one("RoundStarted")
        rules = self._rules(params, participants, started)
        submits = {(c.tx.hash): c for c in self.calls if c.name == "submit" and c.tx.status == 1}
        tariff = list(started.args["tariff"]) if started else []
        k = 0
        while True:
            subs = self._named("Submitted", k)
            agg = self._named("Aggregated", k)
            dec = self._named("Published", k) + self._named("Concluded", k)
            if not subs and not agg and not dec:
                break
            self._check_submissions(k, subs, submits, participants)
            if not agg:
                self._add("aggregate", False, f"iteration {k} never aggregated", k, where=subs[-1] if subs else None)
                break
            self._check_aggregate(k, subs, submits, agg[0])
            if not dec:
                self._add("decryption", False, f"iteration {k}: aggregate never decrypted", k, where=agg[0])
                break
            d = dec[0]
            plaintext, opening = int.from_bytes(d.args["plaintext"], "big"), int.from_bytes(d.args["opening"], "big")
            aggregate = int.from_bytes(agg[0].args["aggregate"], "big")
            self._add("opening proof", self.key.verify_opening(aggregate, plaintext, opening),
                      f"iteration {k}: (1+n)^m rho^n = aggregate", k, where=d)
            sums = layout.unpack_sums(plaintext)
            self._add("decoded sums", sums == list(d.args["sums"]), f"iteration {k}: slot sums of the plaintext", k, where=d)
            self.series["tariff"].append([p / 1e6 for p in tariff])
            self.series["imbalance"].append([s / ENERGY_SCALE for s in d.args["sums"]])
            if rules is not None:
                for check, ok, detail in rules.observe(d):
                    self._add(check, ok, detail, k, where=d)
            if d.name == "Concluded":
                return d, rules
            tariff = list(d.args["nextTariff"])
            k += 1
        if self._named("RoundStarted"):
            self._add("conclusion", False, f"round not concluded: stalled at iteration {k}", k,
                      where=self.events[-1])
        return None, rules

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
            good = (call is not None and keccak(ct) == e.args["ciphertextHash"]
                    and call.args["commitment"] == e.args["commitment"] and 0 < c < self.key.n_sq)
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
        if concluded is None or settled is None:
            if concluded is not None:
                self._add("settlement", False, "concluded round never settled", where=concluded)
            return
        k = concluded.args["iteration"]
        call = next(c for c in self.calls if c.name == "settle" and c.tx.hash == settled.tx.hash)
        values = [list(r["values"]) for r in call.args["reveals"]]
        for address in self._misbilled(k, participants, call):
            self._add("billed as committed", False, f"{address}'s settled schedule does not open its commitment",
                      k, where=settled)
        # the first `periods` revealed values are the encrypted slots (the rest: mechanism data)
        totals = [sum(col) for col in zip(*(v[:params["periods"]] for v in values))] if values else []
        self._add("billed as committed", totals == list(concluded.args["sums"]) and len(values) == len(participants),
                  "every bill opens its prosumer's last commitment; bills add up to the decrypted total", k, where=settled)
        payments = [(e.args["account"], e.args["amount"]) for e in self._named("Payment")]
        if rules is not None:
            self._check_payments(k, settled, payments, rules, participants, values, list(concluded.args["tariff"]))
        paid: dict[str, int] = {}
        for account, amount in payments:
            paid[account] = paid.get(account, 0) + amount
        self._add("zero sum", sum(paid.values()) == 0, f"transfers sum to {sum(paid.values())}", k, where=settled)
        self.series["payments"] = {a: v / 1e18 for a, v in paid.items()}
        contract = self.chain.contract("TariffMarket", self.h.address)
        ledger_ok, bad = True, None
        for account in set(paid) | {e.args["account"] for e in self._named("Deposited")}:
            deposited = sum(e.args["amount"] for e in self._named("Deposited") if e.args["account"] == account)
            withdrawn = sum(e.args["amount"] for e in self._named("Withdrawn") if e.args["account"] == account)
            balance = contract.functions.balanceOf(self.rid, account).call()
            if deposited + paid.get(account, 0) - withdrawn != balance:
                ledger_ok, bad = False, account
        self._add("ledger", ledger_ok, "deposits + payments - withdrawals = balance, every account"
                  if ledger_ok else f"ledger of {bad} does not add up", where=settled)

    def _check_payments(self, k: int, settled: Event, payments: list[tuple[str, int]], rules,
                        participants: list[str], values: list[list[int]], prices: list[int]) -> None:
        """The Payment events (and a mechanism's per-item Bill events) equal the mechanism's settlement
        rule applied to the revealed bills at the final prices, transfer by transfer, in booking order."""
        try:
            expected, bills = rules.settlement(participants, values, prices)
        except ValueError as exc:
            self._add("payments", False, f"the settlement rule cannot be evaluated: {exc}", k, where=settled)
            return
        self._add("payments", payments == expected, _compare("transfer", payments, expected,
                  f"each of the {len(expected)} transfers equals the settlement rule applied to the committed bills"),
                  k, where=settled)
        if bills is not None:
            shown = [(e.args["participant"], *(e.args[item] for item in ITEMS)) for e in self._named("Bill")]
            self._add("bills", shown == bills, _compare("bill", shown, bills, f"every Bill event ({', '.join(ITEMS)}) "
                      "equals the settlement rule's items"), k, where=settled)

    def _misbilled(self, k: int, participants: list[str], call: Call) -> list[str]:
        """Participants whose bill in a settle call does not open their last commitment."""
        finals = {e.args["participant"]: e for e in self._named("Submitted", k)}
        wrong = []
        for address, reveal in zip(participants, call.args["reveals"]):
            sub = finals.get(address)
            if sub is None or commitment(self.rid, k, address, reveal["values"], reveal["salt"]) != sub.args["commitment"] \
                    or reveal["ciphertextHash"] != sub.args["ciphertextHash"]:
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
                    detail = f"settle by {call.tx.sender} reverted: it billed {', '.join(wrong)} for a schedule " \
                             "other than the one committed"
            self._add("transactions", False, detail, call.args.get("iteration"), where=call)


def _compare(what: str, actual: list, expected: list, ok_detail: str) -> str:
    """``ok_detail`` if the lists agree, else the first difference."""
    if actual == expected:
        return ok_detail
    for i, (a, e) in enumerate(zip(actual, expected)):
        if a != e:
            return f"{what} {i + 1}: on chain {a}, the rule gives {e}"
    return f"{len(actual)} {what}s on chain, the rule gives {len(expected)}"


class TariffRules:
    """TariffMarket: the tariff rule replayed from its start tariff and the decrypted imbalances, the
    stop rule (the replay's stop) and the pro-rata settlement at the final tariff."""

    def __init__(self, mechanism: dict, start: list[int], params: dict) -> None:
        self.floor, self.cap, self.grid = list(params["priceFloor"]), list(params["priceCap"]), params["gridAccount"]
        self.problems: list[tuple[bool, str]] = []
        self.replay: TariffIteration | None = None
        if mechanism.get("mechanism") == "tariff":
            self.rule = TariffRule.from_dict(mechanism["rule"])
            self.replay = TariffIteration(self.rule, np.asarray(start) / 1e6)
        else:
            self.problems.append((False, f"unknown mechanism {mechanism.get('mechanism')!r}: rule not checked"))

    def describe(self) -> str:
        return f"tariff rule ({self.rule.method}) replayed from the published rule, start tariff and imbalances"

    def observe(self, d: Event) -> list[tuple[str, bool, str]]:
        """The checks of one decrypted iteration (none after the first divergence: the replay's state is off)."""
        if self.replay is None:
            return []
        k = d.args["iteration"]
        decision = self.replay.observe(np.asarray(d.args["sums"], dtype=float) / ENERGY_SCALE)
        if d.name == "Published":
            expected = None if decision.next_tariff is None else price_to_fixed(decision.next_tariff)
            ok = expected == list(d.args["nextTariff"])
            if not ok:
                self.replay = None
            return [("tariff update", ok, f"iteration {k}: next tariff follows the published rule" if ok else
                     f"iteration {k}: the rule gives " + ("a stop" if expected is None else "another tariff")
                     + f" ({decision.reason})")]
        stop = decision.next_tariff is None
        return [("stop rule", stop, f"iteration {k}: {decision.reason}" if stop
                 else f"iteration {k}: concluded while the rule continues")]

    def settlement(self, participants: list[str], values: list[list[int]], prices: list[int]):
        """Expected Payment events (account, amount) in booking order; no Bill events."""
        amounts, grid = settlement(values, prices, self.floor, self.cap)
        return list(zip(participants, amounts)) + [(self.grid, grid)], None


class StorageRules:
    """StorageMarket (mechanism ``storage-admm``, docs/storage-market.md), from the round's params:

    * operator answer: each published rent vector is the operator's closed-form capacity update
      (:class:`~offchain.mechanisms.admm.StorageOperator`) of that iteration's decrypted sums;
    * stop rule: the round concludes at iteration K+1, K the first iteration >= 1 whose reported RMS
      residuals (slots 2, 3 over the consensus entries: the residuals of K-1) are within tolerance,
      or at the iteration cap (at once if there is nothing to coordinate);
    * settlement: :func:`~offchain.mechanisms.storage_settlement.settlement_amounts` of the terms at
      the final rents, transfer by transfer and bill item by bill item.
    """

    OPERATOR = ("energy_slope", "energy_price_empty", "power_price", "energy_kwh", "power_kw", "has_storage")
    SETTINGS = ("rho_capacity", "primal_tol", "dual_tol", "max_iterations")

    def __init__(self, mechanism: dict, params: dict, participants: list[str]) -> None:
        self.name = mechanism.get("mechanism")
        self.grid, self.p2p = params["gridAccount"], params["pairLanes"] > 0
        self.problems: list[tuple[bool, str]] = []
        self.terms: StorageTerms | None = None
        self.operator: StorageOperator | None = None
        self.checkable = False
        self.met: tuple[int, float, float] | None = None  # first iteration >= 1 whose residuals met the rule
        self.last: tuple[int, float, float] | None = None  # the latest reported residuals
        self.stop_judged = False  # one stop-rule finding per round
        try:
            self.terms = StorageTerms.decode(params["terms"])
        except Exception as exc:  # noqa: BLE001 - any decoding error: the terms are not StorageMarket's
            self.problems.append((False, f"the round's terms are not StorageMarket terms ({exc})"))
        settings, op = mechanism.get("settings") or {}, mechanism.get("operator") or {}
        missing = [f"settings.{f}" for f in self.SETTINGS if f not in settings] \
            + [f"operator.{f}" for f in self.OPERATOR if f not in op] \
            + ([] if "consensus_entries" in mechanism else ["consensus_entries"])
        if missing:
            self.problems.append((False, f"mechanism {self.name!r} (StorageMarket) does not publish "
                                  f"{', '.join(missing)}: the operator's answers and the stop rule are not checked"))
            return
        try:
            n, T = len(participants), params["periods"] - 3
            self.has_storage = bool(op["has_storage"])
            self.rho, self.cap = float(settings["rho_capacity"]), int(settings["max_iterations"])
            self.tol = (float(settings["primal_tol"]), float(settings["dual_tol"]))
            # consensus constraints (admm.consensus_entries): T per trade direction, 2 capacities per prosumer
            self.entries = max(1, n * (n - 1) * T * self.p2p + 2 * n * self.has_storage)
            if mechanism["consensus_entries"] != self.entries:
                self.problems.append((False, f"published consensus_entries {mechanism['consensus_entries']} differ from "
                                      f"the round's {self.entries} ({n} participants, {T} periods)"))
            caps = energy_to_fixed([op["energy_kwh"], op["power_kw"]]) if self.has_storage else [0, 0]
            if self.terms is not None and [self.terms.energy_cap, self.terms.power_cap] != caps:
                self.problems.append((False, f"the operator's store {caps} differs from the terms' capacities "
                                      f"{[self.terms.energy_cap, self.terms.power_cap]}"))
            if self.has_storage:
                self.operator = StorageOperator(SimpleNamespace(**{f: op[f] for f in self.OPERATOR}), n, self.rho)
            self.coupled = self.has_storage or self.p2p
        except (TypeError, ValueError) as exc:
            self.problems.append((False, f"malformed mechanism data ({exc}): the operator's answers and the stop "
                                  "rule are not checked"))
            return
        self.checkable = True

    def describe(self) -> str:
        return (f"{self.name}: rents from the operator's closed form (rho_capacity {self.rho:g}); stop after the "
                f"first iteration >= 1 with RMS residuals over {self.entries} consensus entries <= {self.tol[0]:g}, "
                f"{self.tol[1]:g} (cap {self.cap}); settlement of the round's terms")

    def _residuals(self, sums: list[int]) -> tuple[float, float]:
        """The RMS primal and dual residuals reported in slots 2, 3 (as admm.run_admm computes them)."""
        return reported_residuals(energy_from_fixed(sums), self.entries)

    def _due(self, k: int) -> str | None:
        """Why the round had to conclude at iteration k (None: it had to continue)."""
        if not self.coupled:
            return "nothing to coordinate (no storage, no pair lanes): the round closes at once" if k == 0 else None
        if self.met is not None:
            K, r, s = self.met
            return (f"one after iteration {K}, the first whose reported residuals met the stop rule "
                    f"(r {r:.3g} <= {self.tol[0]:g}, s {s:.3g} <= {self.tol[1]:g})") if k == K + 1 else None
        return f"iteration cap {self.cap} reached" if k >= self.cap else None

    def observe(self, d: Event) -> list[tuple[str, bool, str]]:
        if not self.checkable:
            return []
        k, sums, out = d.args["iteration"], list(d.args["sums"]), []
        due = self._due(k)
        if d.name == "Concluded":
            if not self.stop_judged:
                self.stop_judged = True
                last = f" (last reported residuals r {self.last[1]:.3g}, s {self.last[2]:.3g})" if self.last else ""
                out.append(("stop rule", due is not None, f"iteration {k}: concluded: {due}" if due else
                            f"iteration {k}: concluded, but no iteration 1..{k - 1} met the stop rule{last} and the "
                            f"cap {self.cap} is not reached"))
            return out
        if due is not None and not self.stop_judged:
            self.stop_judged = True
            out.append(("stop rule", False, f"iteration {k}: published rents, but the round had to conclude: {due}"))
        rents = list(d.args["nextTariff"])
        expected = price_to_fixed(self.operator.respond(energy_from_fixed(sums))) if self.operator else [0, 0]
        ok = rents == expected
        out.append(("operator answer", ok, f"iteration {k}: rents {rents} (1e-6 token per kWh, kW) = the operator's "
                    "closed form of the decrypted sums" if ok else
                    f"iteration {k}: published rents {rents}, the operator's closed form of the decrypted sums gives "
                    f"{expected}" + ("" if self.operator else " (no storage)")))
        r, s = self._residuals(sums)
        self.last = (k, r, s)
        if self.met is None and k >= 1 and r <= self.tol[0] and s <= self.tol[1]:
            self.met = (k, r, s)
        return out

    def settlement(self, participants: list[str], values: list[list[int]], prices: list[int]):
        """Expected Payment events (participants, then operator, centre, grid account) and Bill events."""
        if self.terms is None:
            raise ValueError("the round has no StorageMarket terms")
        terms = self._in_registration_order(participants)
        s = settlement_amounts(terms, prices, values, self.p2p)
        payments = list(zip(participants, s.amounts)) + [(terms.operator, s.payees["operator"]),
                                                         (terms.centre, s.payees["centre"]), (self.grid, s.payees["grid"])]
        return payments, [(p, *(it[item] for item in ITEMS)) for p, it in zip(participants, s.items)]

    def _in_registration_order(self, participants: list[str]) -> StorageTerms:
        """The terms with the members (and their fees) in registration order, as the contract indexes
        them: settlement_amounts takes member index = reveal index."""
        t = self.terms
        index = {to_checksum_address(m): i for i, m in enumerate(t.members)}
        missing = [p for p in participants if p not in index]
        if missing:
            raise ValueError(f"{', '.join(missing)} registered but not members of the terms")
        idx, M = [index[p] for p in participants], len(t.members)
        return replace(t, members=list(participants), storage_fee=[t.storage_fee[i] for i in idx],
                       pair_fee=[t.pair_fee[a * M + b] for a in idx for b in idx])


def _is_storage(params: dict) -> bool:
    """A StorageMarket round: it carries terms (or names a storage mechanism)."""
    name = str(json.loads(params.get("mechanism") or "{}").get("mechanism", ""))
    return bool(params.get("terms")) or name.startswith("storage")


def audit_market(chain: Chain, history: MarketHistory, round_id: int | None = None) -> tuple[list[Finding], dict]:
    """All findings of the chosen round (default: every round) plus the series for plots."""
    rounds = [round_id] if round_id is not None else history.round_ids()
    findings: list[Finding] = []
    series = {}
    if round_id is not None and round_id not in history.round_ids():
        return [Finding("round", False, f"no round {round_id} at {history.address}", round_id)], {}
    for rid in rounds:
        audit = RoundAudit(chain, history, rid)
        findings += audit.run()
        series[rid] = audit.series
    # transactions that name no round (e.g. a createRound that reverted)
    for call in history.calls:
        if call.tx.status == 0 and "roundId" not in call.args:
            findings.append(Finding("transactions", False, f"{call.name} reverted", None, None, call.tx.hash_hex, call.tx.block))
    token = chain.w3.eth.contract(address=chain.contract("TariffMarket", history.address).functions.token().call(),
                                  abi=history.token_abi)
    market = chain.contract("TariffMarket", history.address)
    held = token.functions.balanceOf(history.address).call()
    ledgers = 0
    for rid in history.round_ids():
        accounts = {e.args["account"] for e in history.of_round(rid) if e.name in ("Deposited", "Payment")}
        ledgers += sum(market.functions.balanceOf(rid, a).call() for a in accounts)
    findings.append(Finding("token conservation", held == ledgers,
                            f"market holds {held} token units; its ledgers add up to {ledgers}"))
    return findings, series
