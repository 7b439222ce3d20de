"""The tariff mechanism's scenario (``mechanism = "tariff"``), e.g. ``scenarios/community10.toml``.

Shared blocks (``[site]``, ``[tariff]``, ``[uncertainty]``, ``[risk]``, ``[privacy]``, ``[chain]``,
batteries) come from the reader kit :mod:`offchain.models.scenario`; this module reads the
mechanism's own tables: ``[sharing]`` (the default trade cost and limit), ``[iteration]`` (the
coordinator's tariff update and stop rule) and the ``[[prosumer]]`` templates.

Scaling: ``prosumers=N`` (3 <= N <= 100,000) builds a community of N prosumers by cycling the file's
``[[prosumer]]`` templates. The first copy of each template is the template itself; later copies
(cycle c >= 1) are named ``<template>-<c>`` and get seeded, deterministic size variation (annual
demand, kWp, wind kW, battery capacity and power each multiplied by a factor in [0.7, 1.3]).
With N smaller than the number of templates the first N templates are used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ...framework import MIN_PARTICIPANTS as MIN_SCALED
from ...models.scenario import (
    HEADER_KEYS,
    BatterySpec,
    Reader,
    RiskSpec,
    ScenarioBase,
    SiteSpec,
    TariffSpec,
    UncertaintySpec,
    check_unique_names,
    fail,
    fmt,
    no_unknown,
    read_battery,
    read_grid_tariff,
    read_header,
    read_prosumer_fields,
    read_prosumer_list,
    read_risk,
    read_site,
    read_uncertainty,
    table,
)

MAX_PROSUMERS = 100_000


@dataclass(frozen=True)
class ProsumerSpec:
    name: str
    load_profile: str
    annual_demand_kwh: float
    pv_kwp: float
    wind_kw: float
    shiftable_share: float
    shift_peak_factor: float
    shift_cost: float
    trade_cost: float
    trade_limit_kw: float
    battery: BatterySpec | None
    template: str  # name of the file template it derives from
    index: int  # position in the community (0-based)


@dataclass(frozen=True)
class SharingSpec:
    trade_cost: float
    trade_limit_kw: float


@dataclass(frozen=True)
class IterationSpec:
    method: str
    initial_position: float
    step: float
    step_min: float
    step_max: float
    damping: float
    imbalance_tol: float
    tariff_tol: float
    max_iterations: int


@dataclass(frozen=True, eq=False)
class Market:
    """What every prosumer faces: grid prices per hour and the community's risk settings."""

    retail: np.ndarray  # (T,) CNY/kWh, also the internal tariff's cap
    feed_in: np.ndarray  # (T,) CNY/kWh, also the internal tariff's floor
    cvar_alpha: float
    cvar_beta: float

    def __post_init__(self) -> None:
        for name in ("retail", "feed_in"):
            arr = np.array(getattr(self, name), dtype=float)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def hours(self) -> int:
        return int(self.retail.shape[0])


@dataclass(frozen=True)
class Scenario(ScenarioBase):
    site: SiteSpec
    tariff: TariffSpec
    uncertainty: UncertaintySpec
    risk: RiskSpec
    sharing: SharingSpec
    iteration: IterationSpec
    prosumers: tuple[ProsumerSpec, ...]
    source: str = field(default="")
    mechanism: str = "tariff"

    @property
    def market(self) -> Market:
        return Market(retail=np.array(self.tariff.retail), feed_in=np.array(self.tariff.feed_in),
                      cvar_alpha=self.risk.cvar_alpha, cvar_beta=self.risk.cvar_beta)

    def safe_step(self) -> float:
        """1 / sum_i 1/(2 q_i): CNY/kWh per kW; a gradient step this size cannot overshoot.

        Each prosumer's trade-cost rate q_i bounds its response: |dx_i/dlambda| <= 1/(2 q_i).
        """
        return 1.0 / sum(1.0 / (2.0 * p.trade_cost) for p in self.prosumers)

    def initial_tariff(self) -> np.ndarray:
        lo, hi = np.array(self.tariff.feed_in), np.array(self.tariff.retail)
        return lo + self.iteration.initial_position * (hi - lo)



def _sharing(t: dict) -> SharingSpec:
    r = Reader(t, "sharing")
    s = SharingSpec(trade_cost=r.num("trade_cost", lo=0, hi=10, lo_open=True),
                    trade_limit_kw=r.num("trade_limit_kw", lo=0, lo_open=True))
    r.done()
    return s


def _iteration(t: dict) -> IterationSpec:
    r = Reader(t, "iteration")
    m = IterationSpec(
        method=r.str_("method", choices=("bfgs", "secant"), default="bfgs"),
        initial_position=r.num("initial_position", lo=0, hi=1),
        step=r.num("step", lo=0, lo_open=True),
        step_min=r.num("step_min", lo=0, lo_open=True),
        step_max=r.num("step_max", lo=0, lo_open=True),
        damping=r.num("damping", lo=0, hi=1, lo_open=True),
        imbalance_tol=r.num("imbalance_tol", lo=0, lo_open=True),
        tariff_tol=r.num("tariff_tol", lo=0, lo_open=True),
        max_iterations=r.int_("max_iterations", lo=1, hi=100_000),
    )
    r.done()
    if m.step_max < m.step_min:
        fail("iteration.step_max", f"must be >= iteration.step_min = {fmt(m.step_min)}, got {fmt(m.step_max)}")
    if not m.step_min <= m.step <= m.step_max:
        fail("iteration.step", f"must be in [step_min, step_max] = [{fmt(m.step_min)}, {fmt(m.step_max)}], "
             f"got {fmt(m.step)}")
    return m


def _prosumer(t: Any, i: int, sharing: SharingSpec) -> ProsumerSpec:
    path = f"prosumer[{i}]"
    if not isinstance(t, dict):
        fail(path, f"must be a table, got {type(t).__name__}")
    r = Reader(t, path)
    common = read_prosumer_fields(r)
    battery = read_battery(r.raw("battery"), f"{path}.battery") if "battery" in t else None
    p = ProsumerSpec(
        **common,
        trade_cost=r.num("trade_cost", lo=0, hi=10, lo_open=True, default=sharing.trade_cost),
        trade_limit_kw=r.num("trade_limit_kw", lo=0, lo_open=True, default=sharing.trade_limit_kw),
        battery=battery, template=common["name"], index=i)
    r.done()
    return p


def _scale(templates: tuple[ProsumerSpec, ...], n: int, seed: int) -> tuple[ProsumerSpec, ...]:
    k = len(templates)
    out: list[ProsumerSpec] = []
    names = {p.name for p in templates}
    for i in range(n):
        tpl = templates[i % k]
        cycle = i // k
        if cycle == 0:
            out.append(replace(tpl, index=i))
            continue
        rng = np.random.default_rng([seed, 0x5CA1E, i])
        f = rng.uniform(0.7, 1.3, size=5)
        name = f"{tpl.name}-{cycle}"
        while name in names:  # a template could itself be called "H01-1"
            name += "x"
        names.add(name)
        bat = tpl.battery
        if bat is not None:
            bat = BatterySpec(**{**asdict(bat), "capacity_kwh": float(bat.capacity_kwh * f[3]),
                                 "power_kw": float(bat.power_kw * f[4])})
        out.append(replace(tpl, name=name, index=i, battery=bat,
                           annual_demand_kwh=float(tpl.annual_demand_kwh * f[0]),
                           pv_kwp=float(tpl.pv_kwp * f[1]), wind_kw=float(tpl.wind_kw * f[2])))
    return tuple(out)


def parse(data: dict, source: str = "", prosumers: int | None = None, seed: int | None = None) -> Scenario:
    """Validate a tariff scenario document (already parsed TOML)."""
    no_unknown(data, HEADER_KEYS | {"site", "tariff", "uncertainty", "risk", "sharing", "iteration", "prosumer"}, "")
    header = read_header(data, seed)
    site = read_site(table(data, "site", "site"))
    tariff = read_grid_tariff(table(data, "tariff", "tariff"))
    unc = read_uncertainty(table(data, "uncertainty", "uncertainty"))
    risk = read_risk(table(data, "risk", "risk"))
    sharing = _sharing(table(data, "sharing", "sharing"))
    iteration = _iteration(table(data, "iteration", "iteration"))
    templates = tuple(_prosumer(t, i, sharing) for i, t in enumerate(read_prosumer_list(data)))
    check_unique_names(templates)
    if prosumers is not None:
        if isinstance(prosumers, bool) or not isinstance(prosumers, (int, np.integer)):
            fail("prosumers", f"must be an integer, got {type(prosumers).__name__} {prosumers!r}")
        if prosumers < MIN_SCALED:
            fail("prosumers", f"must be >= {MIN_SCALED} (a round's privacy minimum), got {prosumers}")
        if prosumers > MAX_PROSUMERS:
            fail("prosumers", f"must be <= {MAX_PROSUMERS}, got {prosumers}")
        members = _scale(templates, int(prosumers), header["seed"])
    else:
        if len(templates) < 2:
            fail("prosumer", f"a community needs at least 2 prosumers, got {len(templates)}")
        members = templates
    return Scenario(**header, site=site, tariff=tariff, uncertainty=unc, risk=risk, sharing=sharing,
                    iteration=iteration, prosumers=members, source=source)
