"""Settlement of the shared-storage + P2P market, as contracts/StorageMarket.sol computes it.

Each prosumer reveals its bill (:class:`~offchain.mechanisms.admm.Bill`, fixed point): rented
capacities, throughput in the rented storage, net grid exchange per period, and per partner the
consensus trades and its half of the pair price. The contract checks the reveals against the
commitments of the closing iteration and the capacity/grid sums against the decrypted closing
aggregate, then books transfers (amount = price * quantity * 1e6, exact integers):

- rents s^E C^E + s^P C^P and usage fees to the storage operator;
- transmission fees (storage exchange, and the buyer's side of each P2P trade) to the P2P centre;
- grid imports at the retail price and exports at the feed-in price with the grid account;
- each pair's trades at the pair price (the sum of both halves), between the two prosumers.

Every item is a transfer, so the amounts sum to zero exactly. :func:`settlement_amounts` is the
same integer arithmetic in Python: tests hold the contract to it, and the report uses it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..chain.market import StorageTerms
from ..units import AMOUNT_PER_PRICE_ENERGY as UNIT
from ..units import energy_to_fixed, price_to_fixed

PAYEES = ("operator", "centre", "grid")
ITEMS = ("rent", "usage", "transmission", "grid", "p2p")


def market_terms(data, operator: str, centre: str, members: Sequence[str], capacity_slack_kwh: float) -> StorageTerms:
    """The on-chain terms of one case of a market (:class:`~offchain.models.storage_p2p.MarketData`)."""
    st = data.storage
    caps = (st.energy_kwh, st.power_kw) if data.has_storage else (0.0, 0.0)
    return StorageTerms(operator=operator, centre=centre, members=list(members),
                        energy_cap=energy_to_fixed([caps[0]])[0], power_cap=energy_to_fixed([caps[1]])[0],
                        capacity_slack=energy_to_fixed([capacity_slack_kwh])[0],
                        usage_price=price_to_fixed([st.usage_cost])[0],
                        storage_fee=price_to_fixed(data.storage_fees), pair_fee=price_to_fixed(data.fees.ravel()),
                        grid_buy=price_to_fixed(data.retail), grid_sell=price_to_fixed(data.feed_in))


@dataclass(frozen=True)
class Settlement:
    amounts: list[int]  # per prosumer, token base units, positive = credit
    payees: dict[str, int]  # operator, centre, grid
    items: list[dict[str, int]]  # per prosumer: rent, usage, transmission, grid, p2p (signed credits)


def settlement_amounts(terms: StorageTerms, rents: Sequence[int], reveals: Sequence[Sequence[int]],
                       p2p: bool, members: Sequence[int] | None = None) -> Settlement:
    """The contract's settlement of ``reveals`` (fixed-point bill vectors in registration order).

    ``members[i]``: the member index (position in ``terms.members``) of the i-th registered
    participant, which selects its fees; default: registration order = member order, as in
    :func:`~offchain.protocol.storage_round.run_storage_round`."""
    n, T, M = len(reveals), len(terms.grid_buy), len(terms.members)
    member = list(members) if members is not None else list(range(n))
    items = [dict.fromkeys(ITEMS, 0) for _ in range(n)]
    payees = dict.fromkeys(PAYEES, 0)

    def pay(i: int, item: str, payee: str, amount: int) -> None:
        items[i][item] -= amount
        payees[payee] += amount

    for i, v in enumerate(reveals):
        ce, cp, thr, net = v[0], v[1], v[2], v[3:3 + T]
        pay(i, "rent", "operator", (rents[0] * ce + rents[1] * cp) * UNIT)
        pay(i, "usage", "operator", terms.usage_price * thr * UNIT)
        pay(i, "transmission", "centre", terms.storage_fee[member[i]] * thr * UNIT)
        pay(i, "grid", "grid", sum((terms.grid_buy[t] if x > 0 else terms.grid_sell[t]) * x
                                   for t, x in enumerate(net)) * UNIT)
    if p2p:
        def block(i: int, j: int) -> tuple[Sequence[int], Sequence[int]]:
            k = j if j < i else j - 1  # partners in member order, self skipped
            base = 3 + T + 2 * T * k
            return reveals[i][base:base + T], reveals[i][base + T:base + 2 * T]

        for a in range(n):
            for b in range(a + 1, n):
                trade, half_a = block(a, b)
                _, half_b = block(b, a)
                value = sum((half_a[t] + half_b[t]) * trade[t] for t in range(T)) * UNIT
                items[a]["p2p"] += value
                items[b]["p2p"] -= value
                # the buyer pays the fee of its row: pair_fee[buyer * n + seller]
                ma, mb = member[a], member[b]
                pay(a, "transmission", "centre", terms.pair_fee[ma * M + mb] * sum(max(-x, 0) for x in trade) * UNIT)
                pay(b, "transmission", "centre", terms.pair_fee[mb * M + ma] * sum(max(x, 0) for x in trade) * UNIT)
    return Settlement([sum(it.values()) for it in items], payees, items)
