"""The fixed-price mechanism's scenario: a price per period and each prosumer's net energy."""
from __future__ import annotations

from dataclasses import dataclass, field

from offchain.models.scenario import (HEADER_KEYS, Reader, ScenarioBase, fail, no_unknown, read_header,
                                      read_prosumer_list, table)


@dataclass(frozen=True)
class Prosumer:
    name: str
    net_kwh: tuple[float, ...]  # per period: > 0 bought, < 0 sold
    community: int = 0


@dataclass(frozen=True)
class Scenario(ScenarioBase):
    price: tuple[float, ...]
    prosumers: tuple[Prosumer, ...]
    nested: bool = False  # communities 1, 2, ... clear in their own child rounds, their operators in the parent
    sealed: bool = False  # sealed bids: a round without a key (commitments only, each opened by its own reveal)
    source: str = field(default="")
    mechanism: str = "fixed-price"


def parse(data: dict, source: str = "", prosumers=None, seed=None) -> Scenario:
    no_unknown(data, HEADER_KEYS | {"market", "prosumer"}, "")
    header = read_header(data, seed)
    m = Reader(table(data, "market", "market"), "market")
    periods = m.int_("periods", lo=1, hi=48)
    price = m.vec("price", periods, lo=0.0)
    nested = m.bool_("nested", default=False)
    sealed = m.bool_("sealed", default=False)
    m.done()
    members = []
    for i, t in enumerate(read_prosumer_list(data)):
        r = Reader(t, f"prosumer[{i}]")
        members.append(Prosumer(r.str_("name"), r.vec("net_kwh", periods), r.int_("community", lo=0, default=0)))
        r.done()
    if len(members) < 2:
        fail("prosumer", f"needs at least 2 prosumers, got {len(members)}")
    return Scenario(**header, price=price, prosumers=tuple(members), nested=nested, sealed=sealed, source=source)
