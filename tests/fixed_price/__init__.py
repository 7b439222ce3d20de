"""A test-only mechanism: a fixed price per period, one iteration. It exists to prove that the
framework carries a new mechanism with its own files and one registry line (see
tests/test_framework.py): ``__init__.py`` (this wiring), ``scenario.py``, ``market.py``,
``audit.py``, ``figures.py`` and ``FixedPriceRule.sol``."""
from __future__ import annotations

from pathlib import Path

from offchain.framework import Job, Mechanism, PartySummary, RoundSetup, Summary
from offchain.units import price_to_fixed, tokens


def _to_operator(m):
    """A community round's settlement: what its grid account would balance, its operator does."""
    from offchain.framework import MirrorSettlement

    return MirrorSettlement(m.amounts, {"coordinator": m.payees["grid"]}, m.bills)


def _sealed(setup):
    """The round without a key: each bid is committed, then opened by its bidder's own reveal."""
    setup.encrypted = False
    return setup


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

    def community(self, scenario, members) -> RoundSetup:
        """A community's child round: its members pay their operator (the round's coordinator)."""
        from .market import settlement

        setup = self.setup(scenario, members)
        setup.label, setup.payees, setup.balancing = "community round", [], "coordinator"
        setup.settlement = lambda values, p, addresses, standing: _to_operator(settlement(values, p))
        return setup

    def nested(self, scenario) -> RoundSetup:
        """The parent round: the prosumers of community 0 and one operator per other community."""
        from .market import CommunityOperator

        alone = [p for p in scenario.prosumers if p.community == 0]
        setup = self.setup(scenario, alone)
        communities = sorted({p.community for p in scenario.prosumers} - {0})
        for c in communities:
            members = [p for p in scenario.prosumers if p.community == c]
            name = f"community-{c}"
            setup.participants.append(CommunityOperator(name, lambda members=members: self.community(scenario, members)))
            setup.child_rounds[name] = (len(members), 1)
        return setup

    def prepare(self, scenario, options) -> Job:
        build = (lambda: self.nested(scenario)) if scenario.nested else (lambda: self.setup(scenario))
        if scenario.sealed:
            build = lambda plain=build: _sealed(plain())  # noqa: E731
        return Job(scenario=scenario, rounds=[build], labels=["one-shot round"],
                   parameters={"prosumers": len(scenario.prosumers), "nested": scenario.nested})

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
