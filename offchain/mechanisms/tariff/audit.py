"""Audit rules of the tariff mechanism: the tariff rule replayed from its published start tariff
and the decrypted imbalances, its stop rule, and the pro-rata settlement at the final tariff."""
from __future__ import annotations

import numpy as np

from ...audit.rules import Rules
from ...units import ENERGY_SCALE, price_to_fixed
from .market import TariffIteration, TariffRule, settlement


class TariffRules(Rules):
    def __init__(self, published: dict, params: dict) -> None:
        super().__init__()
        self.floor, self.cap, self.grid = list(params["priceFloor"]), list(params["priceCap"]), params["gridAccount"]
        self.replay: TariffIteration | None = None
        self.start: list[int] | None = None
        try:
            self.rule = TariffRule.from_dict(published["rule"])
        except (KeyError, TypeError, ValueError) as exc:
            self.problems.append((False, f"the published tariff rule is malformed ({exc}): rule not checked"))

    def describe(self) -> str:
        return f"tariff rule ({self.rule.method}) replayed from the published rule, start tariff and imbalances"

    def started(self, prices: list[int]) -> None:
        if not self.problems:
            self.replay = TariffIteration(self.rule, np.asarray(prices) / 1e6)

    def observe(self, d) -> list[tuple[str, bool, str]]:
        """The checks of one decrypted iteration (none after the first divergence: the replay's state is off)."""
        if self.replay is None:
            return []
        k = d.args["iteration"]
        decision = self.replay.observe(np.asarray(d.args["sums"], dtype=float) / ENERGY_SCALE)
        if d.name == "Published":
            expected = None if decision.next_tariff is None else price_to_fixed(decision.next_tariff)
            ok = expected == list(d.args["nextPrices"])
            if not ok:
                self.replay = None
            return [("price update", ok, f"iteration {k}: next tariff follows the published rule" if ok else
                     f"iteration {k}: the rule gives " + ("a stop" if expected is None else "another tariff")
                     + f" ({decision.reason})")]
        stop = decision.next_tariff is None
        return [("stop rule", stop, f"iteration {k}: {decision.reason}" if stop
                 else f"iteration {k}: concluded while the rule continues")]

    def settlement(self, participants, values, prices, member_index, standing=None):
        amounts, grid = settlement(values, prices, self.floor, self.cap, standing)
        return list(zip(participants, amounts)) + [(self.grid, grid)], None
