"""Audit rules of the fixed-price mechanism: one iteration, and the settlement at the fixed price."""
from __future__ import annotations

from offchain.audit.rules import Rules

from .market import settlement


class FixedPriceRules(Rules):
    def __init__(self, published: dict, params: dict) -> None:
        super().__init__()
        self.grid = params["gridAccount"]

    def describe(self) -> str:
        return "fixed price: one iteration, every participant pays its net energy at the price"

    def observe(self, d):
        k = d.args["iteration"]
        ok = d.name == "Concluded" and k == 0
        return [("stop rule", ok, f"iteration {k}: " + ("concluded at once" if ok else "a fixed price needs one iteration"))]

    def settlement(self, participants, values, prices, member_index, standing=None):
        s = settlement(values, prices)
        return list(zip(participants, s.amounts)) + [(self.grid, s.payees["grid"])], \
            [(p, b) for p, b in zip(participants, s.bills)]

    def child_link(self, child_sums, operator_values):
        """A community operator reveals its child round's total net energy."""
        ok = list(operator_values) == list(child_sums)
        return ok, ("the operator revealed its community's concluded total" if ok else
                    f"the operator revealed {list(operator_values)}, its community concluded {list(child_sums)}")
