"""A test-only mechanism: a fixed price per period, one iteration. It exists to prove that the
framework carries a new mechanism with its own files and one registry line (see
tests/test_framework.py): ``__init__.py`` (this wiring), ``scenario.py``, ``market.py``,
``audit.py``, ``figures.py`` and ``FixedPriceRule.sol``."""
from __future__ import annotations

from pathlib import Path

from offchain.framework import Job, Mechanism, PartySummary, RoundSetup, Summary
from offchain.units import price_to_fixed, tokens


class FixedPriceMechanism(Mechanism):
    name = "fixed-price"
    title = "fixed-price market (test only)"
    rule_contract = "FixedPriceRule"
    rule_sources = (Path(__file__).resolve().parent,)
    bill_items = ("energy",)

    def parse(self, data, source="", prosumers=None, seed=None):
        from .scenario import parse

        return parse(data, source, prosumers, seed)

    def layout(self, scenario):
        return (len(scenario.price), 48, len(scenario.prosumers))

    def setup(self, scenario, members=None) -> RoundSetup:
        from .market import FixedPriceCoordinator, FixedPriceProsumer, settlement

        prices = price_to_fixed(scenario.price)
        members = members if members is not None else scenario.prosumers
        return RoundSetup(
            label="one-shot round", participants=[FixedPriceProsumer(p.name, p.net_kwh) for p in members],
            coordinator=FixedPriceCoordinator(prices), slots=len(prices), slot_bits=48, price_floor=prices,
            price_cap=prices, max_iterations=1, public_rule={"mechanism": self.name},
            settlement=lambda values, p, addresses, standing: settlement(values, p),
            collateral=lambda name: 10**24, payees=["grid"])

    def prepare(self, scenario, options) -> Job:
        return Job(scenario=scenario, rounds=[lambda: self.setup(scenario)], labels=["one-shot round"],
                   parameters={"prosumers": len(scenario.prosumers)})

    def summarise(self, job, outcomes, plain, reference) -> Summary:
        out = outcomes[-1]
        bills = out.settlement.bills if out.settlement else []
        parties = [PartySummary(p.name, "prosumer", bill={"energy": tokens(b[0])} if bills else {})
                   for p, b in zip(out.setup.participants, bills or [None] * len(out.setup.participants))]
        details = {"bill_items": ["energy"], "net_kwh": {p.name: list(p.net_kwh) for p in job.scenario.prosumers}}
        return Summary(parties, details, [("price", " ".join(f"{p:g}" for p in job.scenario.price))],
                       headline=f"{len(parties)} prosumers at a fixed price")

    def audit_rules(self, published, params, participants):
        from .audit import FixedPriceRules

        return FixedPriceRules(published, params)

    def figures(self, record):
        from .figures import figures

        return figures(record)


MECHANISM = FixedPriceMechanism()
