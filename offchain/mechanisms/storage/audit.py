"""Audit rules of the storage + P2P mechanism: each published rent pair replayed from the
decrypted sums, the stop rule from the residuals reported in them, the settlement from the terms."""
from __future__ import annotations

from types import SimpleNamespace

from eth_utils import to_checksum_address

from ...audit.rules import Rules
from ...chain.market import decode_abi
from ...units import energy_from_fixed, energy_to_fixed, price_to_fixed
from .market import StorageOperator, reported_residuals
from .settlement import ITEMS, TERMS_ABI, StorageTerms, settlement_amounts


class StorageRules(Rules):
    """The storage + P2P mechanism (docs/storage-market.md), from the round's params:

    * operator answer: each published rent vector is the operator's closed-form capacity update
      (:class:`~offchain.mechanisms.storage.market.StorageOperator`) of that iteration's decrypted sums;
    * stop rule: the round concludes at iteration K+1, K the first iteration >= 1 whose reported RMS
      residuals (slots 2, 3 over the consensus entries: the residuals of K-1) are within tolerance,
      or at the iteration cap (at once if there is nothing to coordinate);
    * settlement: :func:`~offchain.mechanisms.storage.settlement.settlement_amounts` of the terms at
      the final rents, transfer by transfer and bill item by bill item.
    """

    OPERATOR = ("energy_slope", "energy_price_empty", "power_price", "energy_kwh", "power_kw", "has_storage")
    SETTINGS = ("rho_capacity", "primal_tol", "dual_tol", "max_iterations")

    def __init__(self, mechanism: dict, params: dict, participants: list[str]) -> None:
        super().__init__()
        self.name = mechanism.get("mechanism")
        self.grid, self.p2p = params["gridAccount"], params["pairLanes"] > 0
        self.terms: StorageTerms | None = None
        self.operator: StorageOperator | None = None
        self.checkable = False
        self.met: tuple[int, float, float] | None = None  # first iteration >= 1 whose residuals met the rule
        self.last: tuple[int, float, float] | None = None  # the latest reported residuals
        self.stop_judged = False  # one stop-rule finding per round
        try:
            self.terms = StorageTerms.from_tuple(decode_abi(TERMS_ABI, params["terms"]))
        except Exception as exc:  # noqa: BLE001 - any decoding error: the terms are not the rule's
            self.problems.append((False, f"the round's terms are not StorageRule terms ({exc})"))
        settings, op = mechanism.get("settings") or {}, mechanism.get("operator") or {}
        missing = [f"settings.{f}" for f in self.SETTINGS if f not in settings] \
            + [f"operator.{f}" for f in self.OPERATOR if f not in op] \
            + ([] if "consensus_entries" in mechanism else ["consensus_entries"])
        if missing:
            self.problems.append((False, f"mechanism {self.name!r} does not publish "
                                  f"{', '.join(missing)}: the operator's answers and the stop rule are not checked"))
            return
        try:
            n, T = len(participants), params["slots"] - 3
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

    def dropped(self, k: int, positions: list[int]) -> None:
        if self.operator is not None:  # as the operator does: the store is shared among those that stay
            self.operator.n -= len(positions)

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

    def observe(self, d) -> list[tuple[str, bool, str]]:
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
        rents = list(d.args["nextPrices"])
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

    def settlement(self, participants, values, prices, member_index, standing=None):
        """Expected Payment events (participants, then operator, centre, grid account) and Bill events."""
        if self.terms is None:
            raise ValueError("the round has no StorageRule terms")
        s = settlement_amounts(self.terms, prices, values, self.p2p, member_index, standing)
        t = self.terms
        payments = list(zip(participants, s.amounts)) + [(to_checksum_address(t.operator), s.payees["operator"]),
                                                         (to_checksum_address(t.centre), s.payees["centre"]),
                                                         (self.grid, s.payees["grid"])]
        return payments, [(p, [it[item] for item in ITEMS]) for p, it in zip(participants, s.items)]
