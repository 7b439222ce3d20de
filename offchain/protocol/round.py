"""The private trading round of the tariff mechanism, end to end on a chain.

Flow (docs/protocol.md): deploy or reuse the market, create the round with the coordinator's
Paillier key, register every prosumer with its mask key, post collateral, then iterate: every
prosumer bids (solve, mask, pack, encrypt), the contract aggregates, the coordinator decrypts the
aggregate only, publishes the opening and the next tariff, until the stop rule; finally the
prosumers reveal their last schedules and the contract settles payments that sum to zero.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..chain.backends import Chain
from ..chain.market import Market, RoundParams
from ..mechanisms.tariff import TariffIteration
from ..privacy.packing import SlotLayout
from ..units import AMOUNT_PER_PRICE_ENERGY, ENERGY_SCALE, price_from_fixed, price_to_fixed
from .agents import Coordinator, ProsumerAgent

Progress = Callable[[str, float], None]  # (what is happening, fraction of the iteration cap done)


@dataclass
class PhaseClock:
    """Wall time per phase of the round."""
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] += now - since
        return now


@dataclass
class PrivateRoundResult:
    market: Market
    round_id: int
    agents: list[ProsumerAgent]
    coordinator: Coordinator
    iterations: list[dict]
    converged: bool
    reason: str
    final_tariff: np.ndarray
    payments: dict[str, int]
    gas: dict[str, list[int]]
    seconds: dict[str, float]
    receipts: dict[str, list]
    grid_address: str

    @property
    def transactions(self) -> dict[str, list[str]]:
        """Transaction hashes by kind (create_round, register, submit, aggregate, ...)."""
        return {k: [r["transactionHash"].to_0x_hex() for r in v] for k, v in self.receipts.items()}


def collateral(prices: list[int], kwh_per_period: float) -> int:
    """Token base units that cover trading ``kwh_per_period`` every period at ``prices`` (fixed point)."""
    return sum(prices) * int(np.ceil(kwh_per_period * ENERGY_SCALE)) * AMOUNT_PER_PRICE_ENERGY


def run_private_round(chain: Chain, models: list, rule, initial_tariff: np.ndarray, *,
                      key_bits: int = 2048, verify_openings: bool = True, market: Market | None = None,
                      progress: Progress | None = None, settle: bool = True,
                      coordinator_class: type[Coordinator] = Coordinator) -> PrivateRoundResult:
    """One private round; ``settle=False`` stops after conclusion (the agents keep their reveals).

    ``coordinator_class`` lets tests run a deliberately dishonest coordinator.
    """
    progress = progress or (lambda what, frac: None)
    clock = PhaseClock()
    gas: dict[str, list[int]] = defaultdict(list)
    receipts_by_kind: dict[str, list] = defaultdict(list)

    def record(kind: str, receipts) -> None:
        for r in receipts if isinstance(receipts, list) else [receipts]:
            gas[kind].append(int(r["gasUsed"]))
            receipts_by_kind[kind].append(r)

    n = len(models)
    operator, grid, *prosumer_accounts = chain.accounts(n + 2)
    t = time.perf_counter()
    progress("generating the coordinator's Paillier key", 0.0)
    coordinator = coordinator_class(operator, TariffIteration(rule, initial_tariff), key_bits)
    key = coordinator.public_key
    layout = SlotLayout.for_round(len(initial_tariff), n, key.nbytes * 8)
    agents = [ProsumerAgent(model.name, model, account) for model, account in zip(models, prosumer_accounts)]
    t = clock.add("setup", t)

    progress("deploying contracts", 0.0)
    if market is None:
        market = Market.deploy(chain, operator)
    params = RoundParams(
        n=key.n, periods=layout.periods, slot_bits=layout.slot_bits, slot_width=layout.slot_width,
        max_iterations=rule.max_iterations, price_floor=price_to_fixed(rule.floor), price_cap=price_to_fixed(rule.cap),
        grid_account=grid.address, verify_openings=verify_openings,
        mechanism=json.dumps({"mechanism": "tariff", "rule": rule.to_dict()}, sort_keys=True))
    round_id, receipt = market.create_round(operator, params)
    record("create_round", receipt)

    progress("registering prosumers and posting collateral", 0.0)
    record("register", market.register_many([(a.account, round_id, a.mask_key.public_bytes) for a in agents]))
    # Collateral covers the worst case: a prosumer buying its trade limit every hour at retail,
    # the grid account buying every prosumer's limit at feed-in.
    limits = [float(m.spec.trade_limit_kw) for m in models]
    deposits = [(grid, collateral(params.price_floor, sum(limits)))]
    deposits += [(a.account, collateral(params.price_cap, limit)) for a, limit in zip(agents, limits)]
    record("mint", market.token.mint_many(operator, [(account, amount) for account, amount in deposits]))
    record("deposit", market.deposit_many([(account, round_id, amount) for account, amount in deposits]))
    t = clock.add("chain", t)

    peers = market.participants(round_id)
    # aggregation and settlement follow the on-chain registration order (concurrent
    # registrations may be mined in any order)
    position = {address.lower(): i for i, (address, _) in enumerate(peers)}
    agents.sort(key=lambda a: position[a.address.lower()])
    context = market.address.encode() + round_id.to_bytes(32, "big") + chain.chain_id.to_bytes(32, "big")
    for agent in agents:
        agent.join(key, layout, peers, context)
    t = clock.add("setup", t)

    record("start", market.start(operator, round_id, price_to_fixed(initial_tariff)))
    t = clock.add("chain", t)

    iterations: list[dict] = []
    decision = None
    for k in range(rule.max_iterations):
        tariff = price_from_fixed(market.tariff(round_id))
        progress(f"iteration {k}: prosumers bid", k / rule.max_iterations)
        t = clock.add("chain", t)
        bids = [agent.bid(round_id, k, tariff) for agent in agents]
        t = time.perf_counter()
        clock.seconds["solve"] = sum(a.solve_seconds for a in agents)
        clock.seconds["encrypt"] = sum(a.encrypt_seconds for a in agents)
        before = {kind: len(v) for kind, v in gas.items()}
        receipts = market.submit_many([(a.account, round_id, k, b.ciphertext, b.commitment) for a, b in zip(agents, bids)])
        record("submit", receipts)
        progress(f"iteration {k}: aggregating on chain", (k + 0.5) / rule.max_iterations)
        aggregate, receipt = market.aggregate(operator, round_id, [b.ciphertext for b in bids], [b.commitment for b in bids])
        record("aggregate", receipt)
        t = clock.add("chain", t)
        decision, plaintext, opening = coordinator.decide(aggregate, layout)
        t = clock.add("decrypt", t)
        final = decision.next_tariff is None  # converged, or the iteration cap reached
        if final:
            sums, receipt = market.conclude(operator, round_id, aggregate, plaintext, opening)
            record("conclude", receipt)
        else:
            sums, receipt = market.publish(operator, round_id, aggregate, plaintext, opening,
                                           price_to_fixed(decision.next_tariff))
            record("publish", receipt)
        t = clock.add("chain", t)
        iterations.append({
            "iteration": k,
            "tariff": tariff.tolist(),
            "imbalance": (np.asarray(sums, dtype=float) / ENERGY_SCALE).tolist(),
            "gas": {kind: sum(gas[kind][before.get(kind, 0):]) for kind in ("submit", "aggregate", "publish", "conclude")
                    if len(gas[kind]) > before.get(kind, 0)},
        })
        if final:
            break

    for agent in agents:
        agent.leave()
    payments: dict[str, int] = {}
    if settle:
        progress("settling payments", 1.0)
        payments, receipt = market.settle(operator, round_id, [a.reveal() for a in agents])
        record("settle", receipt)
        record("withdraw", market.withdraw_many([grid] + [a.account for a in agents], round_id))
    clock.add("chain", t)
    return PrivateRoundResult(
        market=market, round_id=round_id, agents=agents, coordinator=coordinator, iterations=iterations,
        converged=bool(decision and decision.converged), reason=decision.reason if decision else "",
        final_tariff=np.asarray(iterations[-1]["tariff"]), payments=payments, gas=dict(gas),
        seconds=dict(clock.seconds), receipts=dict(receipts_by_kind), grid_address=grid.address)
