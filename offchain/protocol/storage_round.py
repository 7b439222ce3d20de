"""The shared-storage + P2P market (paper A) on chain: the private ADMM's messages travel as the
generic round's transactions, and the contract settles the bills.

Parties and accounts: the storage operator (round coordinator, Paillier key holder), the P2P
centre (collects transmission fees), the grid account, one account per prosumer.

One ADMM iteration k is one round iteration:
  1. every prosumer submits one transaction: a Paillier ciphertext of its masked operator message
     [w^E, w^P, residuals of k-1, 0...] under the operator's key, a commitment to it, and its pair
     messages w_ij, one pad-sealed block per partner (only partner j can open the block for j);
  2. anyone calls ``aggregate`` (the product of the ciphertexts mod n^2, on chain);
  3. the operator decrypts the aggregate only, and ``publish``es it with its opening (checked on
     chain) and its answer, the rents s^E, s^P, as the round's next price vector.
Every prosumer reads the partners' blocks and the rents from the receipts and does its z-step.
After the stop rule, a closing iteration carries each prosumer's bill slots (capacities,
throughput, net grid) in the ciphertext and a commitment to its whole bill; the operator
``conclude``s, and ``settle`` checks every reveal against its commitment and the decrypted sums,
then books rents, fees, grid exchange and P2P payments (:mod:`offchain.mechanisms.storage_settlement`).
"""
from __future__ import annotations

import json
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from eth_utils import keccak

from ..chain.backends import Chain
from ..chain.market import Market, Reveal, RoundParams, commitment
from ..mechanisms.admm import AdmmResult, AdmmSettings, Bill, Respond, Step, consensus_entries, operator_slots, run_admm
from ..mechanisms.storage_settlement import market_terms, settlement_amounts
from ..privacy.masks import MaskKey, mask_vector, seal, unseal
from ..privacy.packing import SlotLayout
from ..privacy.paillier import RandomnessPool, generate_keypair
from ..units import energy_from_fixed, energy_to_fixed, price_from_fixed, price_to_fixed

SLOT_BITS = 48
RENT_CAP = 100.0  # the price band of the rents (token per kWh or kW per day): a sanity bound
COLLATERAL_TOKENS = 10_000  # deposited by every prosumer and the grid account; withdrawn after settlement


@dataclass
class StorageRoundResult:
    admm: AdmmResult
    market: Market
    round_id: int
    addresses: dict[str, str]  # operator, centre, grid, and each prosumer's name
    payments: dict[str, int]  # account -> token base units (positive = credit)
    bills: list[dict[str, int]]  # per prosumer: rent, usage, transmission, grid, p2p (the Bill events)
    expected: dict  # the Python mirror of the settlement (must equal the chain's)
    gas: dict[str, list[int]]
    seconds: dict[str, float]
    transactions: int

    def to_dict(self) -> dict:
        return {"market": self.market.address, "round_id": self.round_id, "addresses": self.addresses,
                "payments": self.payments, "bills": self.bills,
                "gas": {k: {"count": len(v), "total": sum(v), "mean": sum(v) / len(v)} for k, v in self.gas.items() if v},
                "seconds": self.seconds, "transactions": self.transactions}


class ChainExchange:
    """The messages of :func:`~offchain.mechanisms.admm.run_admm` as transactions of one round."""

    mode = "chain"

    def __init__(self, chain: Chain, market: Market, round_id: int, operator, prosumers: Sequence,
                 key: tuple, layout: SlotLayout, mask_keys: Sequence[MaskKey], pairs: bool):
        self.chain, self.market, self.round_id = chain, market, round_id
        self.operator_account, self.accounts = operator, list(prosumers)
        self.public, self._private = key
        self.layout, self.pairs = layout, pairs
        self.addresses = [a.address for a in self.accounts]
        peers = market.participants(round_id)
        if [p.lower() for p, _ in peers] != [a.lower() for a in self.addresses]:
            raise RuntimeError("registration order differs from the prosumers' order")
        context = market.address.encode() + round_id.to_bytes(32, "big") + chain.chain_id.to_bytes(32, "big")
        self.masks = [mk.pair_seeds(a, peers, context + b"/operator") for mk, a in zip(mask_keys, self.addresses)]
        self.pads = [mk.pair_seeds(a, peers, context + b"/pairs") for mk, a in zip(mask_keys, self.addresses)]
        self.pools = [RandomnessPool(self.public, ahead=2) for _ in self.accounts]
        self.k = 0  # the round's iteration
        self.gas: dict[str, list[int]] = defaultdict(list)
        self.seconds: dict[str, float] = defaultdict(float)
        self.transactions = 0
        self.reveals: list[Reveal] = []
        self.ciphertexts = 0

    def _record(self, kind: str, receipts) -> None:
        for r in receipts if isinstance(receipts, list) else [receipts]:
            self.gas[kind].append(int(r["gasUsed"]))
            self.transactions += 1

    def _submit(self, op: dict[int, np.ndarray], pairs: dict[int, dict[int, np.ndarray]],
                reveal_values: dict[int, list[int]] | None) -> tuple[list[bytes], list[bytes], dict]:
        t0 = time.perf_counter()
        n, k, L = len(self.accounts), self.k, self.layout.periods
        items, cts, cms, reveals = [], [], [], []
        for i, account in enumerate(self.accounts):
            fixed = energy_to_fixed(op[i])
            mask = mask_vector(account.address, self.masks[i], k, L, self.layout.slot_bits)
            ct = self.public.to_bytes(self.public.encrypt(self.layout.pack(fixed, mask), self.pools[i].take()))
            values = reveal_values[i] if reveal_values is not None else fixed
            salt = secrets.token_bytes(32)
            cm = commitment(self.round_id, k, account.address, values, salt)
            sealed = b"".join(seal(energy_to_fixed(pairs[i][j]), self.pads[i][self.addresses[j].lower()], k,
                                   account.address, self.addresses[j])
                              for j in range(n) if j != i) if self.pairs else b""
            items.append((account, self.round_id, k, ct, cm, sealed))
            cts.append(ct), cms.append(cm), reveals.append(Reveal(values, salt, keccak(ct)))
        t1 = time.perf_counter()
        self.seconds["encrypt"] += t1 - t0
        receipts = self.market.submit_many(items)
        self._record("submit", receipts)
        self.ciphertexts += len(cts)
        received: dict[int, dict[int, np.ndarray]] = {i: {} for i in range(n)}
        if self.pairs:
            T = len(next(iter(pairs[0].values())))
            for receipt in receipts:
                for ev in self.chain.events(receipt, self.market.contract, "PairMessages"):
                    sender = self.addresses.index(ev["args"]["participant"])
                    blob = bytes(ev["args"]["messages"])
                    others = [j for j in range(n) if j != sender]
                    for b, j in enumerate(others):
                        words = blob[8 * T * b:8 * T * (b + 1)]
                        received[j][sender] = energy_from_fixed(unseal(
                            words, self.pads[j][self.addresses[sender].lower()], k, self.addresses[sender],
                            self.addresses[j]))
        self.seconds["chain"] += time.perf_counter() - t1
        self.reveals = reveals
        return cts, cms, received

    def _aggregate(self, cts, cms) -> tuple[bytes, int, int, np.ndarray]:
        t0 = time.perf_counter()
        agg, receipt = self.market.aggregate(self.operator_account, self.round_id, cts, cms)
        self._record("aggregate", receipt)
        t1 = time.perf_counter()
        plaintext, opening = self._private.opening(int.from_bytes(agg, "big"))
        sums = np.asarray(self.layout.unpack_sums(plaintext))
        self.seconds["chain"] += t1 - t0
        self.seconds["decrypt"] += time.perf_counter() - t1
        return agg, plaintext, opening, sums

    def iterate(self, k: int, op, pairs, respond: Respond) -> Step:
        cts, cms, received = self._submit(op, pairs, None)
        agg, plaintext, opening, sums = self._aggregate(cts, cms)
        rents = respond(energy_from_fixed(sums))
        t0 = time.perf_counter()
        published, receipt = self.market.publish(self.operator_account, self.round_id, agg, plaintext, opening,
                                                 price_to_fixed(rents))
        self._record("publish", receipt)
        self.seconds["chain"] += time.perf_counter() - t0
        if list(published) != sums.tolist():
            raise RuntimeError(f"iteration {self.k}: the contract decoded other sums than the operator")
        self.k += 1
        return Step(energy_from_fixed(published), price_from_fixed(price_to_fixed(rents)), received)

    def close(self, k: int, op, pairs, bills: dict[int, Bill], rents: np.ndarray) -> Step:
        cts, cms, received = self._submit(op, pairs, {i: b.vector() for i, b in bills.items()})
        agg, plaintext, opening, sums = self._aggregate(cts, cms)
        t0 = time.perf_counter()
        concluded, receipt = self.market.conclude(self.operator_account, self.round_id, agg, plaintext, opening)
        self._record("conclude", receipt)
        self.seconds["chain"] += time.perf_counter() - t0
        return Step(energy_from_fixed(concluded), rents, received)

    def stop(self) -> None:
        for p in self.pools:
            p.close()

    def stats(self) -> dict:
        pair_msgs = self.k + 1 if self.pairs else 0
        n = len(self.accounts)
        return {"mode": self.mode, "messages": (self.k + 1) * n * (1 + (n - 1) * bool(pair_msgs)),
                "ciphertexts": self.ciphertexts, "transactions": self.transactions,
                "encrypt_seconds": self.seconds["encrypt"], "decrypt_seconds": self.seconds["decrypt"],
                "key_bits": self.public.n.bit_length()}


def run_storage_round(chain: Chain, models: Sequence, data, settings: AdmmSettings, *, key_bits: int = 2048,
                      verify_openings: bool = True, case_label: str = "",
                      progress: Callable[[int, float, float], None] | None = None,
                      status: Callable[[str], None] | None = None, parallel=None) -> StorageRoundResult:
    """Deploys the market, runs the private ADMM through the chain and settles it."""
    status = status or (lambda what: None)
    t_start = time.perf_counter()
    n, T = data.n, data.T
    operator, centre, grid, *prosumers = chain.accounts(n + 3)
    status("generating the operator's Paillier key")
    key = generate_keypair(key_bits)
    layout = SlotLayout.for_round(operator_slots(T), n, key[0].nbytes * 8, slot_bits=SLOT_BITS)
    status("deploying the market")
    market = Market.deploy(chain, operator, contract="StorageMarket")
    gas: dict[str, list[int]] = defaultdict(list)
    txs = 0

    def record(kind: str, receipts) -> None:
        nonlocal txs
        for r in receipts if isinstance(receipts, list) else [receipts]:
            gas[kind].append(int(r["gasUsed"]))
            txs += 1

    # the revealed capacities may exceed the store by the consensus residual (4x the stop tolerance)
    slack = 4 * float(np.sqrt(n * consensus_entries(data))) * settings.primal_tol
    terms = market_terms(data, operator.address, centre.address, [p.address for p in prosumers], slack)
    st = data.storage
    # everything an auditor needs to replay the operator's answers and the stop rule
    mechanism = {"mechanism": "storage-admm", "case": data.case.number, "label": case_label,
                 "settings": {k: v for k, v in settings.to_dict().items() if k != "seed"},
                 "operator": {"energy_slope": st.energy_slope, "energy_price_empty": st.energy_price_empty,
                              "power_price": st.power_price, "energy_kwh": st.energy_kwh, "power_kw": st.power_kw,
                              "has_storage": data.has_storage},
                 "consensus_entries": consensus_entries(data),
                 "stop": "after iteration k >= 2 when the RMS residuals of k-1 (sqrt(slot / 1e3 / consensus_entries), "
                         "slots 2 and 3) are at most primal_tol and dual_tol; then one closing iteration"}
    params = RoundParams(
        n=key[0].n, periods=layout.periods, slot_bits=layout.slot_bits, slot_width=layout.slot_width,
        max_iterations=settings.max_iterations + 1, price_floor=[0, 0], price_cap=price_to_fixed([RENT_CAP] * 2),
        grid_account=grid.address, verify_openings=verify_openings, mechanism=json.dumps(mechanism, sort_keys=True),
        pair_lanes=T if data.pairs else 0, terms=terms.encode())
    round_id, receipt = market.create_round(operator, params)
    record("create_round", receipt)
    status("registering prosumers and posting collateral")
    mask_keys = [MaskKey() for _ in prosumers]
    for account, mk in zip(prosumers, mask_keys):  # one by one: registration order = member order
        record("register", market.register(account, round_id, mk.public_bytes))
    collateral = COLLATERAL_TOKENS * 10**18
    funded = [grid, *prosumers]
    record("mint", market.token.mint_many(operator, [(a, collateral) for a in funded]))
    record("deposit", market.deposit_many([(a, round_id, collateral) for a in funded]))
    record("start", market.start(operator, round_id, price_to_fixed([st.energy_price_empty, st.power_price])))
    setup_seconds = time.perf_counter() - t_start

    ex = ChainExchange(chain, market, round_id, operator, prosumers, key, layout, mask_keys, bool(data.pairs))
    status("iterating")
    try:
        result = run_admm(models, data, settings, exchange=ex, progress=progress, parallel=parallel)
    finally:
        ex.stop()
    status("settling")
    t0 = time.perf_counter()
    payments, receipt = market.settle(operator, round_id, ex.reveals)
    record("settle", receipt)
    bills = [{k: int(v) for k, v in ev["args"].items() if k not in ("roundId", "participant")}
             for ev in chain.events(receipt, market.contract, "Bill")]
    record("withdraw", market.withdraw_many([a for a in (operator, centre, grid, *prosumers)
                                              if market.balance(round_id, a) > 0], round_id))
    expected = settlement_amounts(terms, price_to_fixed(result.rents), [r.values for r in ex.reveals], bool(data.pairs))
    for kind, values in ex.gas.items():
        gas[kind] += values
    seconds = {"setup": setup_seconds, **ex.seconds, "settle": time.perf_counter() - t0,
               "x_update": result.x_update_time, "total": time.perf_counter() - t_start}
    addresses = {"operator": operator.address, "centre": centre.address, "grid": grid.address,
                 **{name: a.address for name, a in zip(data.names, prosumers)}}
    return StorageRoundResult(
        admm=result, market=market, round_id=round_id, addresses=addresses, payments=payments, bills=bills,
        expected={"amounts": expected.amounts, "payees": expected.payees, "items": expected.items},
        gas=dict(gas), seconds=seconds, transactions=txs + ex.transactions)
