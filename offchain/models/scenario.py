"""Scenario files: a day-ahead community case in TOML, validated into frozen dataclasses.

``load_scenario(path, prosumers=None, seed=None)`` reads a file such as
``scenarios/community10.toml`` (every option is documented there), checks every field (type,
range, unknown keys) and raises :class:`ScenarioError` with the field's path in the message, e.g.
``prosumer[3].battery.efficiency: must be in (0, 1], got 1.5``.

Scaling: ``prosumers=N`` (N >= 2) builds a community of N prosumers by cycling the file's
``[[prosumer]]`` templates. The first copy of each template is the template itself; later copies
(cycle c >= 1) are named ``<template>-<c>`` and get seeded, deterministic size variation (annual
demand, kWp, wind kW, battery capacity and power each multiplied by a factor in [0.7, 1.3]).
With N smaller than the number of templates the first N templates are used.
"""
from __future__ import annotations

import datetime as _dt
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HOURS = 24
LOAD_PROFILES = ("h0", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2")
MAX_PROSUMERS = 100_000


class ScenarioError(ValueError):
    """A scenario file or argument is invalid; the message starts with the offending field."""


# --------------------------------------------------------------------------------------------
# dataclasses
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatterySpec:
    capacity_kwh: float
    power_kw: float
    efficiency: float  # one-way, applied on charge and on discharge
    soc_min: float  # fractions of capacity
    soc_max: float
    soc_initial: float  # start SoC = end SoC
    wear_cost: float  # CNY/kW^2h on charge^2 + discharge^2
    usage_cost: float = 0.0  # CNY/kWh on charge + discharge (storage10's linear usage price)


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
class SiteSpec:
    date: str
    timezone: str
    latitude: float
    longitude: float
    altitude: float
    pv_tilt: float
    pv_azimuth: float
    performance_ratio: float
    wind_turbine: str
    hub_height: float
    wind_measurement_height: float
    wind_mean_speed: float
    wind_weibull_k: float
    wind_autocorrelation: float
    hellman_exponent: float


@dataclass(frozen=True)
class TariffSpec:
    retail: tuple[float, ...]
    feed_in: tuple[float, ...]


@dataclass(frozen=True)
class UncertaintySpec:
    scenarios: int
    load_error_std: float
    pv_error_std: float
    wind_error_std: float
    error_autocorrelation: float
    load_diversity: float


@dataclass(frozen=True)
class RiskSpec:
    cvar_alpha: float
    cvar_beta: float


@dataclass(frozen=True)
class SharingSpec:
    trade_cost: float
    trade_limit_kw: float


@dataclass(frozen=True)
class MechanismSpec:
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
class Scenario:
    name: str
    description: str
    seed: int
    site: SiteSpec
    tariff: TariffSpec
    uncertainty: UncertaintySpec
    risk: RiskSpec
    sharing: SharingSpec
    mechanism: MechanismSpec
    prosumers: tuple[ProsumerSpec, ...]
    source: str = field(default="")

    @property
    def hours(self) -> int:
        return HOURS

    @property
    def market(self) -> Market:
        return Market(
            retail=np.array(self.tariff.retail),
            feed_in=np.array(self.tariff.feed_in),
            cvar_alpha=self.risk.cvar_alpha,
            cvar_beta=self.risk.cvar_beta,
        )

    def safe_step(self) -> float:
        """1 / sum_i 1/(2 q_i): CNY/kWh per kW; a gradient step this size cannot overshoot.

        Each prosumer's trade-cost rate q_i bounds its response: |dx_i/dlambda| <= 1/(2 q_i).
        """
        return 1.0 / sum(1.0 / (2.0 * p.trade_cost) for p in self.prosumers)

    def initial_tariff(self) -> np.ndarray:
        lo, hi = np.array(self.tariff.feed_in), np.array(self.tariff.retail)
        return lo + self.mechanism.initial_position * (hi - lo)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (for run.json)."""
        d = asdict(self)
        d["tariff"] = {k: list(v) for k, v in d["tariff"].items()}
        d["prosumers"] = [dict(p) for p in d["prosumers"]]
        d["n_prosumers"] = len(self.prosumers)
        return d


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------
def _fail(path: str, msg: str) -> None:
    raise ScenarioError(f"{path}: {msg}")


def _table(parent: dict, key: str, path: str) -> dict:
    if key not in parent:
        _fail(path, "missing table")
    val = parent[key]
    if not isinstance(val, dict):
        _fail(path, f"must be a table, got {type(val).__name__}")
    return val


def _no_unknown(table: dict, allowed: set[str], path: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{path}." if path else ""
        _fail(f"{where}{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


class _Reader:
    """Reads typed fields out of one TOML table, remembering which keys were used."""

    def __init__(self, table: dict, path: str):
        self.table, self.path, self.used = table, path, set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                _fail(self._p(key), "missing")
            return default
        return self.table[key]

    def num(self, key: str, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False, default: Any = ...) -> float:
        v = self.raw(key, default)
        p = self._p(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            _fail(p, f"must be a number, got {type(v).__name__} {v!r}")
        v = float(v)
        if not math.isfinite(v):
            _fail(p, f"must be finite, got {v}")
        _check_range(p, v, lo, hi, lo_open, hi_open)
        return v

    def int_(self, key: str, *, lo: int | None = None, hi: int | None = None, default: Any = ...) -> int:
        v = self.raw(key, default)
        p = self._p(key)
        if isinstance(v, bool) or not isinstance(v, int):
            _fail(p, f"must be an integer, got {type(v).__name__} {v!r}")
        _check_range(p, v, lo, hi, False, False)
        return int(v)

    def str_(self, key: str, *, choices: tuple[str, ...] | None = None, default: Any = ...) -> str:
        v = self.raw(key, default)
        p = self._p(key)
        if not isinstance(v, str):
            _fail(p, f"must be a string, got {type(v).__name__} {v!r}")
        if not v.strip():
            _fail(p, "must not be empty")
        if choices is not None and v not in choices:
            _fail(p, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def vec(self, key: str, n: int, *, lo: float | None = None) -> tuple[float, ...]:
        v = self.raw(key)
        p = self._p(key)
        if not isinstance(v, list):
            _fail(p, f"must be an array of {n} numbers, got {type(v).__name__}")
        if len(v) != n:
            _fail(p, f"must have {n} values (one per hour), got {len(v)}")
        out = []
        for i, x in enumerate(v):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
                _fail(f"{p}[{i}]", f"must be a finite number, got {x!r}")
            _check_range(f"{p}[{i}]", float(x), lo, None, False, False)
            out.append(float(x))
        return tuple(out)

    def done(self) -> None:
        _no_unknown(self.table, self.used, self.path)


def _check_range(p: str, v: float, lo, hi, lo_open: bool, hi_open: bool) -> None:
    bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (
        hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        if lo is not None and hi is not None:
            rng = f"in {left}{_fmt(lo)}, {_fmt(hi)}{right}"
        elif lo is not None:
            rng = f"{'>' if lo_open else '>='} {_fmt(lo)}"
        else:
            rng = f"{'<' if hi_open else '<='} {_fmt(hi)}"
        _fail(p, f"must be {rng}, got {_fmt(v)}")


def _fmt(v: float) -> str:
    return f"{v:g}"


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------
def _site(t: dict) -> SiteSpec:
    r = _Reader(t, "site")
    date = r.str_("date")
    try:
        _dt.date.fromisoformat(date)
    except ValueError:
        _fail("site.date", f"must be an ISO date YYYY-MM-DD, got {date!r}")
    tz = r.str_("timezone")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(tz)
    except Exception:
        _fail("site.timezone", f"unknown IANA time zone {tz!r}")
    turbine = r.str_("wind_turbine")
    from .profiles import turbine_types  # local import: keeps module import light

    if turbine not in turbine_types():
        _fail("site.wind_turbine", f"not in windpowerlib's shipped power curves, got {turbine!r}")
    s = SiteSpec(
        date=date,
        timezone=tz,
        latitude=r.num("latitude", lo=-90, hi=90),
        longitude=r.num("longitude", lo=-180, hi=180),
        altitude=r.num("altitude", lo=-500, hi=9000, default=0.0),
        pv_tilt=r.num("pv_tilt", lo=0, hi=90),
        pv_azimuth=r.num("pv_azimuth", lo=0, hi=360),
        performance_ratio=r.num("performance_ratio", lo=0, hi=1, lo_open=True),
        wind_turbine=turbine,
        hub_height=r.num("hub_height", lo=0, hi=300, lo_open=True),
        wind_measurement_height=r.num("wind_measurement_height", lo=0, hi=300, lo_open=True),
        wind_mean_speed=r.num("wind_mean_speed", lo=0, hi=30, lo_open=True),
        wind_weibull_k=r.num("wind_weibull_k", lo=0, hi=10, lo_open=True),
        wind_autocorrelation=r.num("wind_autocorrelation", lo=0, hi=1, hi_open=True),
        hellman_exponent=r.num("hellman_exponent", lo=0, hi=1, lo_open=True),
    )
    r.done()
    return s


def _tariff(t: dict) -> TariffSpec:
    r = _Reader(t, "tariff")
    retail = r.vec("retail", HOURS, lo=0.0)
    feed_in = r.vec("feed_in", HOURS, lo=0.0)
    r.done()
    for h, (c, f) in enumerate(zip(retail, feed_in)):
        if not f < c:
            _fail(f"tariff.feed_in[{h}]", f"must be below tariff.retail[{h}] = {_fmt(c)}, got {_fmt(f)}")
    return TariffSpec(retail=retail, feed_in=feed_in)


def _uncertainty(t: dict) -> UncertaintySpec:
    r = _Reader(t, "uncertainty")
    u = UncertaintySpec(
        scenarios=r.int_("scenarios", lo=1, hi=1000),
        load_error_std=r.num("load_error_std", lo=0, hi=1),
        pv_error_std=r.num("pv_error_std", lo=0, hi=1),
        wind_error_std=r.num("wind_error_std", lo=0, hi=1),
        error_autocorrelation=r.num("error_autocorrelation", lo=0, hi=1, hi_open=True),
        load_diversity=r.num("load_diversity", lo=0, hi=0.5, default=0.0),
    )
    r.done()
    return u


def _risk(t: dict) -> RiskSpec:
    r = _Reader(t, "risk")
    k = RiskSpec(
        cvar_alpha=r.num("cvar_alpha", lo=0, hi=1, lo_open=True, hi_open=True),
        cvar_beta=r.num("cvar_beta", lo=0, hi=1),
    )
    r.done()
    return k


def _sharing(t: dict) -> SharingSpec:
    r = _Reader(t, "sharing")
    s = SharingSpec(
        trade_cost=r.num("trade_cost", lo=0, hi=10, lo_open=True),
        trade_limit_kw=r.num("trade_limit_kw", lo=0, lo_open=True),
    )
    r.done()
    return s


def _mechanism(t: dict) -> MechanismSpec:
    r = _Reader(t, "mechanism")
    m = MechanismSpec(
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
        _fail("mechanism.step_max", f"must be >= mechanism.step_min = {_fmt(m.step_min)}, got {_fmt(m.step_max)}")
    if not m.step_min <= m.step <= m.step_max:
        _fail("mechanism.step", f"must be in [step_min, step_max] = [{_fmt(m.step_min)}, {_fmt(m.step_max)}], got {_fmt(m.step)}")
    return m


def _battery(t: Any, path: str, usage: bool = False) -> BatterySpec:
    """A battery table; ``usage=True`` (storage10) also reads ``usage_cost`` and defaults wear to 0."""
    if not isinstance(t, dict):
        _fail(path, f"must be a table, got {type(t).__name__}")
    r = _Reader(t, path)
    extra = {"usage_cost": r.num("usage_cost", lo=0, hi=10, default=0.0)} if usage else {}
    b = BatterySpec(
        capacity_kwh=r.num("capacity_kwh", lo=0, lo_open=True),
        power_kw=r.num("power_kw", lo=0, lo_open=True),
        efficiency=r.num("efficiency", lo=0, hi=1, lo_open=True),
        soc_min=r.num("soc_min", lo=0, hi=1),
        soc_max=r.num("soc_max", lo=0, hi=1),
        soc_initial=r.num("soc_initial", lo=0, hi=1),
        wear_cost=r.num("wear_cost", lo=0, **({"default": 0.0} if usage else {})),
        **extra,
    )
    r.done()
    if b.soc_max <= b.soc_min:
        _fail(f"{path}.soc_max", f"must be > soc_min = {_fmt(b.soc_min)}, got {_fmt(b.soc_max)}")
    if not b.soc_min <= b.soc_initial <= b.soc_max:
        _fail(f"{path}.soc_initial",
              f"must be in [soc_min, soc_max] = [{_fmt(b.soc_min)}, {_fmt(b.soc_max)}], got {_fmt(b.soc_initial)}")
    return b


def _prosumer(t: Any, i: int, sharing: SharingSpec) -> ProsumerSpec:
    path = f"prosumer[{i}]"
    if not isinstance(t, dict):
        _fail(path, f"must be a table, got {type(t).__name__}")
    r = _Reader(t, path)
    name = r.str_("name")
    battery = None
    if "battery" in t:
        battery = _battery(r.raw("battery"), f"{path}.battery")
    p = ProsumerSpec(
        name=name,
        load_profile=r.str_("load_profile", choices=LOAD_PROFILES),
        annual_demand_kwh=r.num("annual_demand_kwh", lo=0, lo_open=True, hi=1e9),
        pv_kwp=r.num("pv_kwp", lo=0, hi=1e6, default=0.0),
        wind_kw=r.num("wind_kw", lo=0, hi=1e6, default=0.0),
        shiftable_share=r.num("shiftable_share", lo=0, hi=1, hi_open=True, default=0.0),
        shift_peak_factor=r.num("shift_peak_factor", lo=1, hi=24, default=2.0),
        shift_cost=r.num("shift_cost", lo=0, default=0.0),
        trade_cost=r.num("trade_cost", lo=0, hi=10, lo_open=True, default=sharing.trade_cost),
        trade_limit_kw=r.num("trade_limit_kw", lo=0, lo_open=True, default=sharing.trade_limit_kw),
        battery=battery,
        template=name,
        index=i,
    )
    r.done()
    return p


# --------------------------------------------------------------------------------------------
# scaling
# --------------------------------------------------------------------------------------------
def _scale(templates: tuple[ProsumerSpec, ...], n: int, seed: int) -> tuple[ProsumerSpec, ...]:
    k = len(templates)
    out: list[ProsumerSpec] = []
    names = {p.name for p in templates}
    for i in range(n):
        tpl = templates[i % k]
        cycle = i // k
        if cycle == 0:
            out.append(_replace(tpl, index=i))
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
        out.append(_replace(tpl, name=name, index=i, battery=bat,
                            annual_demand_kwh=float(tpl.annual_demand_kwh * f[0]),
                            pv_kwp=float(tpl.pv_kwp * f[1]), wind_kw=float(tpl.wind_kw * f[2])))
    return tuple(out)


def _replace(p: ProsumerSpec, **kw: Any) -> ProsumerSpec:
    from dataclasses import replace

    return replace(p, **kw)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def parse_scenario(data: dict, prosumers: int | None = None, seed: int | None = None,
                   source: str = "") -> Scenario:
    """Validate an already-parsed TOML document (see :func:`load_scenario`)."""
    if not isinstance(data, dict):
        _fail("scenario", "must be a table")
    top = {"name", "description", "seed", "site", "tariff", "uncertainty", "risk", "sharing",
           "mechanism", "prosumer"}
    _no_unknown(data, top, "")
    r = _Reader(data, "")
    name = r.str_("name")
    description = r.raw("description", "")
    if not isinstance(description, str):
        _fail("description", f"must be a string, got {type(description).__name__}")
    file_seed = r.int_("seed", lo=0, hi=2**63 - 1)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            _fail("seed", f"must be a non-negative integer, got {seed!r}")
        file_seed = int(seed)
    site = _site(_table(data, "site", "site"))
    tariff = _tariff(_table(data, "tariff", "tariff"))
    unc = _uncertainty(_table(data, "uncertainty", "uncertainty"))
    risk = _risk(_table(data, "risk", "risk"))
    sharing = _sharing(_table(data, "sharing", "sharing"))
    mech = _mechanism(_table(data, "mechanism", "mechanism"))
    plist = data.get("prosumer")
    if not isinstance(plist, list) or not plist:
        _fail("prosumer", "must be a non-empty array of tables ([[prosumer]])")
    templates = tuple(_prosumer(t, i, sharing) for i, t in enumerate(plist))
    seen: dict[str, int] = {}
    for p in templates:
        if p.name in seen:
            _fail(f"prosumer[{p.index}].name", f"duplicate of prosumer[{seen[p.name]}].name {p.name!r}")
        seen[p.name] = p.index
    if prosumers is not None:
        if isinstance(prosumers, bool) or not isinstance(prosumers, (int, np.integer)):
            _fail("prosumers", f"must be an integer, got {type(prosumers).__name__} {prosumers!r}")
        if prosumers < 2:
            _fail("prosumers", f"must be >= 2, got {prosumers}")
        if prosumers > MAX_PROSUMERS:
            _fail("prosumers", f"must be <= {MAX_PROSUMERS}, got {prosumers}")
        members = _scale(templates, int(prosumers), file_seed)
    else:
        if len(templates) < 2:
            _fail("prosumer", f"a community needs at least 2 prosumers, got {len(templates)}")
        members = templates
    return Scenario(name=name, description=description, seed=file_seed, site=site, tariff=tariff,
                    uncertainty=unc, risk=risk, sharing=sharing, mechanism=mech,
                    prosumers=members, source=source)


def load_scenario(path: str | Path, prosumers: int | None = None, seed: int | None = None) -> Scenario:
    """Read and validate a scenario TOML file.

    ``prosumers``: scale the community to N >= 2 members by cycling the file's templates with
    seeded size variation (None keeps the file's prosumers). ``seed`` overrides the file's seed.
    Raises :class:`ScenarioError` naming the field on any invalid input.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(f"{p}: scenario file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: invalid TOML: {e}") from None
    return parse_scenario(data, prosumers=prosumers, seed=seed, source=str(p))
