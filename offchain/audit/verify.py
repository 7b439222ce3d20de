"""Every check an auditor makes of a round, from chain data alone.

Each check yields :class:`Finding` rows (pass or fail, with the transaction and block of a
failure). The mechanism-specific part (the tariff rule and its settlement) is looked up by the
``mechanism`` name the coordinator published in ``RoundCreated``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from eth_utils import keccak

from ..chain.backends import Chain
from ..chain.market import commitment
from ..mechanisms.tariff import TariffIteration, TariffRule, settlement
from ..privacy.packing import SlotLayout
from ..privacy.paillier import PublicKey
from ..units import ENERGY_SCALE, price_to_fixed
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
        concluded = self.check_iterations(params, participants)
        self.check_settlement(params, participants, concluded)
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
            "concluded": {"Payment", "Settled", "Deposited"},  # settle() emits the payments, then Settled
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

    def check_iterations(self, params: dict, participants: list[str]) -> Event | None:
        layout = SlotLayout(params["periods"], params["slotBits"], params["slotWidth"], max(len(participants), 1))
        mechanism = json.loads(params["mechanism"] or "{}")
        started = self._one("RoundStarted")
        replay = None
        if mechanism.get("mechanism") == "tariff" and started is not None:
            replay = TariffIteration(TariffRule.from_dict(mechanism["rule"]), np.asarray(started.args["tariff"]) / 1e6)
        elif _is_storage(params) and started is not None:
            self._add("update rule", False, f"mechanism {mechanism.get('mechanism')!r} (StorageMarket): its update "
                      "and settlement rules are not verified by this audit yet", where=self._one("RoundCreated"))
        elif started is not None:
            self._add("update rule", False, f"unknown mechanism {mechanism.get('mechanism')!r}: rule not checked",
                      where=self._one("RoundCreated"))
        submits = {(c.tx.hash): c for c in self.calls if c.name == "submit" and c.tx.status == 1}
        tariff = list(started.args["tariff"]) if started else []
        k, diverged = 0, False
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
            if replay is not None and not diverged:
                decision = replay.observe(np.asarray(d.args["sums"], dtype=float) / ENERGY_SCALE)
                if d.name == "Published":
                    expected = None if decision.next_tariff is None else price_to_fixed(decision.next_tariff)
                    ok = expected == list(d.args["nextTariff"])
                    diverged = not self._add("tariff update", ok, f"iteration {k}: next tariff follows the published rule"
                                             if ok else f"iteration {k}: the rule gives "
                                             + ("a stop" if expected is None else "another tariff")
                                             + f" ({decision.reason})", k, where=d)
                else:
                    self._add("stop rule", decision.next_tariff is None, f"iteration {k}: {decision.reason}"
                              if decision.next_tariff is None else f"iteration {k}: concluded while the rule continues",
                              k, where=d)
            if d.name == "Concluded":
                return d
            tariff = list(d.args["nextTariff"])
            k += 1
        if self._named("RoundStarted"):
            self._add("conclusion", False, f"round not concluded: stalled at iteration {k}", k,
                      where=self.events[-1])
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

    def check_settlement(self, params: dict, participants: list[str], concluded: Event | None) -> None:
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
        paid: dict[str, int] = {}
        for e in self._named("Payment"):
            paid[e.args["account"]] = paid.get(e.args["account"], 0) + e.args["amount"]
        if not _is_storage(params):  # storage rounds: reported as not verified in check_iterations
            amounts, grid = settlement(values, concluded.args["tariff"], params["priceFloor"], params["priceCap"])
            expected = dict(zip(participants, amounts))
            expected[params["gridAccount"]] = grid
            self._add("payments", paid == expected,
                      "each transfer equals the settlement rule applied to the committed schedule", k, where=settled)
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
