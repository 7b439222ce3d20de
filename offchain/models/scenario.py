"""The scenario reader kit: one schema for every mechanism's scenario TOML.

Every scenario file names its ``mechanism`` (a registry name); :func:`offchain.registry.load_scenario`
reads the file and hands the document to that mechanism's ``parse``, which reads its own tables
with the kit below and the shared blocks with the ``read_*`` functions:

* ``name``, ``description``, ``seed``, ``mechanism`` (:func:`read_header`);
* ``[site]`` (:func:`read_site`), ``[tariff]`` grid prices (:func:`read_grid_tariff`),
  ``[uncertainty]`` (:func:`read_uncertainty`), ``[risk]`` (:func:`read_risk`);
* devices: a ``[prosumer.battery]`` table (:func:`read_battery`) and the common prosumer fields
  (:func:`read_prosumer_fields`);
* ``[privacy]`` (:func:`read_privacy`: key size, on-chain opening checks) and ``[chain]``
  (:func:`read_chain`: which chain runs the round).

Every field is type- and range-checked and every unknown key rejected; :class:`ScenarioError`
names the field, e.g. ``prosumer[3].battery.efficiency: must be in (0, 1], got 1.5``.
"""
from __future__ import annotations

import datetime as _dt
import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ScenarioError

HOURS = 24
LOAD_PROFILES = ("h0", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2")
MIN_KEY_BITS = 512
MAX_KEY_BITS = 8192

__all__ = ["HOURS", "LOAD_PROFILES", "BatterySpec", "ChainSpec", "PrivacySpec", "Reader", "RiskSpec",
           "ScenarioBase", "ScenarioError", "SiteSpec", "TariffSpec", "UncertaintySpec", "check_key_bits",
           "check_unique_names", "fail", "fmt", "no_unknown", "read_battery", "read_chain", "read_grid_tariff",
           "read_header", "read_privacy", "read_prosumer_fields", "read_prosumer_list", "read_risk", "read_site",
           "read_toml", "read_uncertainty", "table"]


# --------------------------------------------------------------------------------------------
# shared blocks
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
    usage_cost: float = 0.0  # CNY/kWh on charge + discharge


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
    """The grid's prices per hour: what a prosumer pays to import and earns to export."""
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
class PrivacySpec:
    key_bits: int = 2048  # Paillier modulus size of the round's coordinator
    verify_openings: bool = True  # participants check every opening and may challenge it on chain


@dataclass(frozen=True)
class ChainSpec:
    url: str = "anvil"  # "anvil" (a local node the run starts and stops), "embedded" (in process) or a JSON-RPC URL
    # the round's deadlines, in blocks (docs/protocol.md, "Deadlines"); None: sized to the round
    registration_blocks: int | None = None
    submission_blocks: int | None = None
    coordinator_blocks: int | None = None
    challenge_blocks: int | None = None

    @property
    def windows(self) -> dict[str, int | None]:
        """The deadlines the scenario fixes ({window: blocks or None})."""
        return {"registration": self.registration_blocks, "submission": self.submission_blocks,
                "coordinator": self.coordinator_blocks, "challenge": self.challenge_blocks}


@dataclass(frozen=True)
class ScenarioBase:
    """The fields every mechanism's scenario starts with (:func:`read_header`); a mechanism's
    scenario dataclass adds its own, then ``source`` and ``mechanism`` (with defaults)."""
    name: str
    description: str
    seed: int
    privacy: PrivacySpec
    chain: ChainSpec

    @property
    def hours(self) -> int:
        return HOURS

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (for run.json)."""
        d = asdict(self)
        if "tariff" in d:
            d["tariff"] = {k: list(v) for k, v in d["tariff"].items()}
        d["n_prosumers"] = len(getattr(self, "prosumers", ()))
        return d


# --------------------------------------------------------------------------------------------
# the kit
# --------------------------------------------------------------------------------------------
def fail(path: str, msg: str) -> None:
    raise ScenarioError(f"{path}: {msg}")


def table(parent: dict, key: str, path: str, required: bool = True) -> dict:
    if key not in parent:
        if not required:
            return {}
        fail(path, "missing table")
    val = parent[key]
    if not isinstance(val, dict):
        fail(path, f"must be a table, got {type(val).__name__}")
    return val


def no_unknown(table: dict, allowed: set[str], path: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{path}." if path else ""
        fail(f"{where}{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


class Reader:
    """Reads typed fields out of one TOML table, remembering which keys were used."""

    def __init__(self, table: dict, path: str):
        self.table, self.path, self.used = table, path, set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                fail(self._p(key), "missing")
            return default
        return self.table[key]

    def num(self, key: str, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False, default: Any = ...) -> float:
        v = self.raw(key, default)
        p = self._p(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            fail(p, f"must be a number, got {type(v).__name__} {v!r}")
        v = float(v)
        if not math.isfinite(v):
            fail(p, f"must be finite, got {v}")
        _check_range(p, v, lo, hi, lo_open, hi_open)
        return v

    def int_(self, key: str, *, lo: int | None = None, hi: int | None = None, default: Any = ...) -> int:
        v = self.raw(key, default)
        p = self._p(key)
        if isinstance(v, bool) or not isinstance(v, int):
            fail(p, f"must be an integer, got {type(v).__name__} {v!r}")
        _check_range(p, v, lo, hi, False, False)
        return int(v)

    def bool_(self, key: str, *, default: Any = ...) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            fail(self._p(key), f"must be true or false, got {type(v).__name__} {v!r}")
        return v

    def str_(self, key: str, *, choices: tuple[str, ...] | None = None, default: Any = ...) -> str:
        v = self.raw(key, default)
        p = self._p(key)
        if not isinstance(v, str):
            fail(p, f"must be a string, got {type(v).__name__} {v!r}")
        if not v.strip():
            fail(p, "must not be empty")
        if choices is not None and v not in choices:
            fail(p, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def vec(self, key: str, n: int, *, lo: float | None = None) -> tuple[float, ...]:
        v = self.raw(key)
        p = self._p(key)
        if not isinstance(v, list):
            fail(p, f"must be an array of {n} numbers, got {type(v).__name__}")
        if len(v) != n:
            fail(p, f"must have {n} values (one per hour), got {len(v)}")
        out = []
        for i, x in enumerate(v):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
                fail(f"{p}[{i}]", f"must be a finite number, got {x!r}")
            _check_range(f"{p}[{i}]", float(x), lo, None, False, False)
            out.append(float(x))
        return tuple(out)

    def done(self) -> None:
        no_unknown(self.table, self.used, self.path)


def _check_range(p: str, v: float, lo, hi, lo_open: bool, hi_open: bool) -> None:
    bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (
        hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        if lo is not None and hi is not None:
            rng = f"in {left}{fmt(lo)}, {fmt(hi)}{right}"
        elif lo is not None:
            rng = f"{'>' if lo_open else '>='} {fmt(lo)}"
        else:
            rng = f"{'<' if hi_open else '<='} {fmt(hi)}"
        fail(p, f"must be {rng}, got {fmt(v)}")


def fmt(v: float) -> str:
    return f"{v:g}"


def read_toml(path: str | Path) -> dict:
    """The TOML document of a scenario file."""
    p = Path(path)
    if p.is_dir():
        raise ScenarioError(f"{p}: is a folder, not a scenario file")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(f"{p}: scenario file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{p}: cannot read the scenario file ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: invalid TOML: {e}") from None


# --------------------------------------------------------------------------------------------
# shared block readers
# --------------------------------------------------------------------------------------------
HEADER_KEYS = {"mechanism", "name", "description", "seed", "privacy", "chain"}


def read_header(data: dict, seed: int | None = None) -> dict[str, Any]:
    """``name``, ``description``, ``seed`` (``seed`` argument overrides the file's), ``[privacy]``,
    ``[chain]``: the fields every scenario dataclass starts with."""
    if not isinstance(data, dict):
        fail("scenario", "must be a table")
    r = Reader(data, "")
    name = r.str_("name")
    description = r.raw("description", "")
    if not isinstance(description, str):
        fail("description", f"must be a string, got {type(description).__name__}")
    file_seed = r.int_("seed", lo=0, hi=2**63 - 1)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            fail("seed", f"must be a non-negative integer, got {seed!r}")
        file_seed = int(seed)
    return {"name": name, "description": description, "seed": file_seed,
            "privacy": read_privacy(table(data, "privacy", "privacy", required=False)),
            "chain": read_chain(table(data, "chain", "chain", required=False))}


def check_key_bits(bits: int, path: str = "privacy.key_bits") -> int:
    """A Paillier modulus size: even (two primes of equal size), in [512, 8192]."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        fail(path, f"must be an integer, got {bits!r}")
    if not MIN_KEY_BITS <= bits <= MAX_KEY_BITS:
        fail(path, f"must be in [{MIN_KEY_BITS}, {MAX_KEY_BITS}], got {bits}")
    if bits % 2:
        fail(path, f"must be even (the modulus is the product of two primes of {bits}/2 bits), got {bits}")
    return bits


def read_privacy(t: dict) -> PrivacySpec:
    r = Reader(t, "privacy")
    p = PrivacySpec(key_bits=check_key_bits(r.int_("key_bits", default=PrivacySpec.key_bits)),
                    verify_openings=r.bool_("verify_openings", default=PrivacySpec.verify_openings))
    r.done()
    return p


def read_chain(t: dict) -> ChainSpec:
    r = Reader(t, "chain")
    url = r.str_("url", default=ChainSpec.url)
    if url not in ("anvil", "embedded") and not url.startswith(("http://", "https://")):
        fail("chain.url", f"must be \"anvil\", \"embedded\" or an http(s):// JSON-RPC URL, got {url!r}")
    blocks = {}
    for key in ("registration_blocks", "submission_blocks", "coordinator_blocks", "challenge_blocks"):
        if t.get("chain", {}).get(key) is None:
            continue
        blocks[key] = r.int_(key)
        if not 0 <= blocks[key] < 2**32 or (blocks[key] == 0 and key != "challenge_blocks"):
            fail(f"chain.{key}", f"must be a whole number of blocks in [{0 if key == 'challenge_blocks' else 1}, 2^32), "
                 f"got {blocks[key]}")
    r.done()
    return ChainSpec(url=url, **blocks)


def read_site(t: dict) -> SiteSpec:
    r = Reader(t, "site")
    date = r.str_("date")
    try:
        _dt.date.fromisoformat(date)
    except ValueError:
        fail("site.date", f"must be an ISO date YYYY-MM-DD, got {date!r}")
    tz = r.str_("timezone")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(tz)
    except Exception:
        fail("site.timezone", f"unknown IANA time zone {tz!r}")
    turbine = r.str_("wind_turbine")
    from .profiles import turbine_types  # local import: keeps module import light

    if turbine not in turbine_types():
        fail("site.wind_turbine", f"not in windpowerlib's shipped power curves, got {turbine!r}")
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


def read_grid_tariff(t: dict) -> TariffSpec:
    r = Reader(t, "tariff")
    retail = r.vec("retail", HOURS, lo=0.0)
    feed_in = r.vec("feed_in", HOURS, lo=0.0)
    r.done()
    for h, (c, f) in enumerate(zip(retail, feed_in)):
        if not f < c:
            fail(f"tariff.feed_in[{h}]", f"must be below tariff.retail[{h}] = {fmt(c)}, got {fmt(f)}")
    return TariffSpec(retail=retail, feed_in=feed_in)


def read_uncertainty(t: dict) -> UncertaintySpec:
    r = Reader(t, "uncertainty")
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


def read_risk(t: dict) -> RiskSpec:
    r = Reader(t, "risk")
    k = RiskSpec(
        cvar_alpha=r.num("cvar_alpha", lo=0, hi=1, lo_open=True, hi_open=True),
        cvar_beta=r.num("cvar_beta", lo=0, hi=1),
    )
    r.done()
    return k


def read_battery(t: Any, path: str, usage: bool = False) -> BatterySpec:
    """A battery table; ``usage=True`` also reads ``usage_cost`` and defaults wear to 0."""
    if not isinstance(t, dict):
        fail(path, f"must be a table, got {type(t).__name__}")
    r = Reader(t, path)
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
        fail(f"{path}.soc_max", f"must be > soc_min = {fmt(b.soc_min)}, got {fmt(b.soc_max)}")
    if not b.soc_min <= b.soc_initial <= b.soc_max:
        fail(f"{path}.soc_initial",
             f"must be in [soc_min, soc_max] = [{fmt(b.soc_min)}, {fmt(b.soc_max)}], got {fmt(b.soc_initial)}")
    return b


def read_prosumer_fields(r: Reader) -> dict[str, Any]:
    """The fields every prosumer table has: name, load profile and demand, PV and wind sizes,
    shiftable load; mechanisms add their own and the battery."""
    return {
        "name": r.str_("name"),
        "load_profile": r.str_("load_profile", choices=LOAD_PROFILES),
        "annual_demand_kwh": r.num("annual_demand_kwh", lo=0, lo_open=True, hi=1e9),
        "pv_kwp": r.num("pv_kwp", lo=0, hi=1e6, default=0.0),
        "wind_kw": r.num("wind_kw", lo=0, hi=1e6, default=0.0),
        "shiftable_share": r.num("shiftable_share", lo=0, hi=1, hi_open=True, default=0.0),
        "shift_peak_factor": r.num("shift_peak_factor", lo=1, hi=24, default=2.0),
        "shift_cost": r.num("shift_cost", lo=0, default=0.0),
    }


def read_prosumer_list(data: dict) -> list:
    """The ``[[prosumer]]`` array of tables (non-empty)."""
    plist = data.get("prosumer")
    if not isinstance(plist, list) or not plist:
        fail("prosumer", "must be a non-empty array of tables ([[prosumer]])")
    return plist


def check_unique_names(members) -> None:
    """``members``: anything with a ``name``, in the order of the file's ``[[prosumer]]`` tables."""
    seen: dict[str, int] = {}
    for i, p in enumerate(members):
        if p.name in seen:
            fail(f"prosumer[{i}].name", f"duplicate of prosumer[{seen[p.name]}].name {p.name!r}")
        seen[p.name] = i
