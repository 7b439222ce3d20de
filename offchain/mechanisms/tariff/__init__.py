"""The weakly centralised tariff mechanism (registry name ``tariff``): prosumers with CVaR risk
schedule against an internal tariff that a coordinator iterates from the encrypted community
imbalance (Qi, Ai, Ji, Li, Wang, Pan, "A weakly centralized multiple prosumers energy-sharing
mechanism that takes into account privacy protection", Electric Power Engineering Technology).

Layers: ``scenario.py`` (its tables), ``market.py`` (pure math and the parties' logic),
``audit.py`` (its audit rules), ``figures.py`` (report figures), ``contracts/rules/TariffRule.sol``.
"""
from __future__ import annotations

from typing import Any

from ...framework import Job, Mechanism, MirrorSettlement, PartySummary, RoundSetup, Summary, counted

BILL_ITEMS = ("internal", "grid share")


def collateral(prices: list[int], kwh_per_period: float) -> int:
    """Token base units that cover trading ``kwh_per_period`` every period at ``prices`` (fixed point)."""
    from math import ceil

    from ...units import AMOUNT_PER_PRICE_ENERGY, ENERGY_SCALE

    return sum(prices) * int(ceil(kwh_per_period * ENERGY_SCALE)) * AMOUNT_PER_PRICE_ENERGY


class TariffMechanism(Mechanism):
    name = "tariff"
    title = "weakly centralised tariff iteration"
    rule_contract = "TariffRule"
    bill_items = BILL_ITEMS

    def parse(self, data: dict, source: str = "", prosumers: int | None = None, seed: int | None = None):
        from .scenario import parse

        return parse(data, source, prosumers=prosumers, seed=seed)

    def layout(self, scenario) -> tuple[int, int, int]:
        return (scenario.hours, 64, len(scenario.prosumers))

    def iteration_cap(self, scenario) -> int:
        return scenario.iteration.max_iterations

    def prepare(self, scenario, options: dict) -> Job:
        from ...models.profiles import build_profiles
        from ...models.prosumer import build_models
        from ...units import price_to_fixed
        from .market import TariffCoordinator, TariffProsumer, TariffRule, centralized_reference, settlement

        profiles = build_profiles(scenario)
        models = build_models(scenario, profiles)
        for m in counted(models, "solving each prosumer's day alone"):  # its cost alone; warm starts follow it
            m.alone()
        rule = TariffRule.from_scenario(scenario)
        initial = scenario.initial_tariff()
        floor, cap = price_to_fixed(rule.floor), price_to_fixed(rule.cap)
        limits = {m.name: float(m.spec.trade_limit_kw) for m in models}

        def mirror(values: list[list[int]], prices: list[int], addresses: dict[str, str],
                   standing: list[int]) -> MirrorSettlement:
            amounts, grid = settlement(values, prices, floor, cap, standing)
            return MirrorSettlement(amounts, {"grid": grid})

        def deposit(name: str) -> int:
            # the worst case: a prosumer buying its trade limit every hour at retail, the grid
            # account buying every prosumer's limit at feed-in
            return collateral(floor, sum(limits.values())) if name == "grid" else collateral(cap, limits.get(name, 0.0))

        def setup() -> RoundSetup:
            return RoundSetup(
                label="day-ahead round", participants=[TariffProsumer(m) for m in models],
                coordinator=TariffCoordinator(rule, initial), slots=len(floor), price_floor=floor, price_cap=cap,
                max_iterations=rule.max_iterations, public_rule={"mechanism": self.name, "rule": rule.to_dict()},
                settlement=mirror, collateral=deposit, payees=["grid"])

        return Job(scenario=scenario, rounds=[setup], labels=["day-ahead round"],
                   reference=lambda: centralized_reference(models, scenario.market),
                   profiles=profiles.to_dict([p.name for p in scenario.prosumers]), plaintext_check=True,
                   parameters={"prosumers": len(models), "periods": len(floor),
                               "rule": {**rule.to_dict(), "floor": floor, "cap": cap}},  # prices as on chain
                   state={"models": models, "rule": rule})

    def summarise(self, job: Job, outcomes: list, plain: list, reference: Any) -> Summary:
        import numpy as np

        from ...units import ENERGY_SCALE, price_from_fixed

        out = outcomes[-1]
        models = job.state["models"]
        final = price_from_fixed(out.final_prices)
        parties = []
        bills = (_bills([r or [0] * len(out.final_prices) for r in out.reveals], out.final_prices, out.settlement.amounts)
                 if out.settled else [{} for _ in models])
        for model, agent, bill in zip(models, out.setup.participants, bills):
            parties.append(PartySummary(model.name, "prosumer", cost_alone=model.alone().objective,
                                        cost_shared=agent.response.objective, bill=bill))
        parties.append(PartySummary("grid", "grid"))
        alone = sum(p.cost_alone for p in parties[:-1])
        shared = sum(p.cost_shared for p in parties[:-1])
        saving_pct = 100 * (alone - shared) / abs(alone)
        details: dict[str, Any] = {
            "bill_items": list(BILL_ITEMS),
            "final_tariff": final.tolist(),
            "market": {"retail": job.scenario.market.retail.tolist(), "feed_in": job.scenario.market.feed_in.tolist()},
            "community": {"cost_alone": alone, "cost_shared": shared, "saving_pct": saving_pct},
            "imbalance_kw": [[s / ENERGY_SCALE for s in it.sums] for it in out.iterations],
            "schedules": [_schedule(a.response) for a in out.setup.participants],
        }
        lines = [("final tariff (CNY/kWh)", " ".join(f"{p:.3f}" for p in final))]
        if reference is not None:
            gap = float(np.max(np.abs(reference.tariff - final)))
            total_gap = 100 * (shared - reference.total_objective) / abs(reference.total_objective)
            details["reference"] = {**reference.to_dict(), "max_tariff_gap": gap, "total_gap_pct": total_gap}
            lines.append(("centralized reference", f"max tariff gap {gap:.4f} CNY/kWh, total cost gap {total_gap:.3f}%"))
        if plain:  # the plaintext mode, side by side
            plain = plain[-1]
            gap = float(np.max(np.abs(price_from_fixed(plain.final_prices) - final)))
            details["plaintext"] = {"iterations": len(plain.iterations), "converged": plain.converged,
                                    "tariff": price_from_fixed(plain.final_prices).tolist(),
                                    "max_tariff_gap_vs_private": gap, "wall_seconds": plain.seconds["total"]}
            lines.append(("plaintext mode", f"{len(plain.iterations)} iterations, max tariff gap {gap:.2e}"))
        saving = alone - shared
        headline = f"community saving {saving:.2f} CNY/day ({saving_pct:.2f}% of the stand-alone total)"
        return Summary(parties, details, lines, headline)

    def audit_rules(self, published: dict, params: dict, participants: list[str]):
        from .audit import TariffRules

        return TariffRules(published, params)

    def figures(self, record: dict) -> dict:
        from .figures import figures

        return figures(record)


def _bills(values: list[list[int]], prices: list[int], paid: list[int]) -> list[dict[str, float]]:
    """Each prosumer's payment split into its internal trades at the tariff and its share of the
    community's grid residual (tokens, positive = paid)."""
    from ...units import AMOUNT_PER_PRICE_ENERGY, tokens

    internal = [sum(x * p for x, p in zip(v, prices)) * AMOUNT_PER_PRICE_ENERGY for v in values]
    return [{"internal": tokens(i), "grid share": tokens(a - i)} for i, a in zip(internal, paid)]


def _schedule(response) -> dict[str, list[float]]:
    import numpy as np

    sched = response.schedule
    zero = 0 * response.x
    return {"internal": response.x.tolist(),
            "grid": (sched["grid_import_expected"] - sched["grid_export_expected"]).tolist(),
            "battery": (np.asarray(sched.get("battery_charge", zero)) - np.asarray(sched.get("battery_discharge", zero))).tolist()}


MECHANISM = TariffMechanism()
