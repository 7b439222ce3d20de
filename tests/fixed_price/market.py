"""The fixed-price mechanism's pure math: every prosumer contributes its net energy once; the
coordinator concludes at once; each pays its net at the fixed price, the grid account balances."""
from __future__ import annotations

from collections.abc import Callable

from offchain.framework import Answer, Contribution, MirrorSettlement, RoundSetup
from offchain.units import AMOUNT_PER_PRICE_ENERGY, energy_to_fixed


class FixedPriceProsumer:
    def __init__(self, name: str, net_kwh) -> None:
        self.name, self.net = name, energy_to_fixed(net_kwh)

    def plan(self, k, prices):
        return None

    def contribute(self, k, prices, solved) -> Contribution:
        return Contribution(list(self.net))

    def observe(self, k, answer, received) -> None:
        pass


class FixedPriceCoordinator:
    name = "coordinator"

    def __init__(self, prices: list[int]) -> None:
        self.prices = prices
        self.total: list[int] | None = None

    def start(self) -> list[int]:
        return list(self.prices)

    def answer(self, k, sums) -> Answer:
        self.total = list(sums)
        return Answer(final=True, converged=True, reason="one-shot: the price is fixed",
                      residuals={"net_kwh": sum(abs(s) for s in sums) / 1e6})


def settlement(values: list[list[int]], prices: list[int]) -> MirrorSettlement:
    amounts = [sum(p * x for p, x in zip(prices, v)) * AMOUNT_PER_PRICE_ENERGY for v in values]
    return MirrorSettlement(amounts, {"grid": -sum(amounts)}, [[a] for a in amounts])


class CommunityOperator:
    """The operator of a community: a participant of the parent round that runs its members' child
    round in each iteration (as its coordinator) and contributes the community's total, which it
    sees only summed; the members pay it, it pays the parent."""

    def __init__(self, name: str, members: Callable[[], "RoundSetup"]) -> None:
        self.name, self.members = name, members

    def plan(self, k, prices):
        return None

    def child(self, k, prices):
        setup = self.members()
        setup.coordinator.name = self.name  # its coordinator is this participant of the parent
        return setup

    def contribute(self, k, prices, outcome) -> Contribution:
        return Contribution(list(outcome.iterations[-1].sums))

    def observe(self, k, answer, received) -> None:
        pass
