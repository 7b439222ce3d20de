"""Settlement of the shared-storage + P2P market, as contracts/rules/StorageRule.sol computes it.

Each prosumer reveals its bill (:class:`~offchain.mechanisms.storage.market.Bill`, fixed point):
rented capacities, throughput in the rented storage, net grid exchange per period, and per
partner the consensus trades and its half of the pair price. The round contract checks the
reveals against the commitments of the closing iteration and the capacity/grid sums against the
decrypted closing aggregate; the rule then books (amount = price * quantity * 1e6, exact
integers, positive = paid):

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

from ...units import AMOUNT_PER_PRICE_ENERGY as UNIT
from ...units import energy_to_fixed, price_to_fixed

PAYEES = ("operator", "centre", "grid")
ITEMS = ("rent", "usage", "transmission", "grid", "p2p")
TERMS_ABI = "(address,address,uint64,uint64,uint64,uint64,uint64[],uint64[],uint64[],uint64[])"


@dataclass(frozen=True)
class StorageTerms:
    """StorageRule's ``StorageTerms`` (units 1e-6: kWh, kW, token per kWh / kW). Member indices
    are positions in the round's allow-list."""
    operator: str  # receives rents and usage fees; must be the round's coordinator
    centre: str  # receives transmission fees
    energy_cap: int
    power_cap: int
    capacity_slack: int
    usage_price: int
    storage_fee: list[int]  # per member
    pair_fee: list[int]  # members**2, row-major [buyer * M + seller], paid by the buyer
    grid_buy: list[int]  # per period (T)
    grid_sell: list[int]  # per period

    @property
    def periods(self) -> int:
        return len(self.grid_buy)

    @property
    def members(self) -> int:
        return len(self.storage_fee)

    def as_tuple(self) -> tuple:
        return (self.operator, self.centre, self.energy_cap, self.power_cap, self.capacity_slack, self.usage_price,
                list(self.storage_fee), list(self.pair_fee), list(self.grid_buy), list(self.grid_sell))

    @classmethod
    def from_tuple(cls, t) -> "StorageTerms":
        return cls(str(t[0]), str(t[1]), *[int(x) for x in t[2:6]], *[[int(x) for x in a] for a in t[6:]])


def market_terms(data, operator: str, centre: str, capacity_slack_kwh: float) -> StorageTerms:
    """The on-chain terms of one case of a market (:class:`~offchain.models.storage_p2p.MarketData`)."""
    st = data.storage
    caps = (st.energy_kwh, st.power_kw) if data.has_storage else (0.0, 0.0)
    return StorageTerms(operator=operator, centre=centre,
                        energy_cap=energy_to_fixed([caps[0]])[0], power_cap=energy_to_fixed([caps[1]])[0],
                        capacity_slack=energy_to_fixed([capacity_slack_kwh])[0],
                        usage_price=price_to_fixed([st.usage_cost])[0],
                        storage_fee=price_to_fixed(data.storage_fees), pair_fee=price_to_fixed(data.fees.ravel()),
                        grid_buy=price_to_fixed(data.retail), grid_sell=price_to_fixed(data.feed_in))


@dataclass(frozen=True)
class Settlement:
    amounts: list[int]  # per prosumer, token base units, positive = paid
    payees: dict[str, int]  # operator, centre, grid
    items: list[dict[str, int]]  # per prosumer: rent, usage, transmission, grid, p2p (positive = paid)


def settlement_amounts(terms: StorageTerms, rents: Sequence[int], reveals: Sequence[Sequence[int]],
                       p2p: bool, members: Sequence[int] | None = None, standing: Sequence[int] | None = None) -> Settlement:
    """The rule's settlement of ``reveals`` (fixed-point bill vectors in registration order).

    ``members[i]``: the member index (position in the allow-list) of the i-th registered
    participant, which selects its fees; default: registration order = member order. A
    participant that dropped out (``standing[i] != 0``) is not settled, and no trade with it counts."""
    n, T, M = len(reveals), len(terms.grid_buy), terms.members
    stays = [s == 0 for s in standing] if standing is not None else [True] * n
    member = list(members) if members is not None else list(range(n))
    items = [dict.fromkeys(ITEMS, 0) for _ in range(n)]
    payees = dict.fromkeys(PAYEES, 0)

    def pay(i: int, item: str, payee: str, amount: int) -> None:
        items[i][item] += amount
        payees[payee] -= amount

    for i, v in enumerate(reveals):
        if not stays[i]:
            continue
        ce, cp, thr, net = v[0], v[1], v[2], v[3:3 + T]
        pay(i, "rent", "operator", (rents[0] * ce + rents[1] * cp) * UNIT)
        pay(i, "usage", "operator", terms.usage_price * thr * UNIT)
        pay(i, "transmission", "centre", terms.storage_fee[member[i]] * thr * UNIT)
        pay(i, "grid", "grid", sum((terms.grid_buy[t] if x > 0 else terms.grid_sell[t]) * x
                                   for t, x in enumerate(net)) * UNIT)
    if p2p:
        def block(i: int, j: int) -> tuple[Sequence[int], Sequence[int]]:
            k = j if j < i else j - 1  # partners in registration order, self skipped
            base = 3 + T + 2 * T * k
            return reveals[i][base:base + T], reveals[i][base + T:base + 2 * T]

        for a in range(n):
            for b in range(a + 1, n):
                if not (stays[a] and stays[b]):
                    continue
                trade, half_a = block(a, b)
                _, half_b = block(b, a)
                value = sum((half_a[t] + half_b[t]) * trade[t] for t in range(T)) * UNIT
                items[a]["p2p"] -= value  # b pays a for what a sold to it
                items[b]["p2p"] += value
                # the buyer pays the fee of its row: pair_fee[buyer * M + seller]
                ma, mb = member[a], member[b]
                pay(a, "transmission", "centre", terms.pair_fee[ma * M + mb] * sum(max(-x, 0) for x in trade) * UNIT)
                pay(b, "transmission", "centre", terms.pair_fee[mb * M + ma] * sum(max(x, 0) for x in trade) * UNIT)
    return Settlement([sum(it.values()) for it in items], payees, items)
