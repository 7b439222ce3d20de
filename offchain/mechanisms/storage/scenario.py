"""The storage + P2P mechanism's scenario (``mechanism = "storage-p2p"``), e.g.
``scenarios/storage10.toml``.

Shared blocks (``[site]``, ``[tariff]``, ``[privacy]``, ``[chain]``, batteries, the common prosumer
fields) come from the reader kit :mod:`offchain.models.scenario`; this module reads the
mechanism's own tables (``[profiles]``, ``[storage]``, ``[network]``, ``[admm]``, the feeder
position of each prosumer) and raises the same :class:`ScenarioError` naming the field, e.g.
``storage.soc_max: must be > soc_min = 0.9, got 0.5``. Profiles come from
:func:`offchain.models.profiles.build_profiles` unchanged: a :class:`StorageScenario` offers the
attributes that function reads (``site``, ``seed``, ``uncertainty`` with one error-free scenario,
``prosumers`` with ``index``/``load_profile``/``annual_demand_kwh``/``pv_kwp``/``wind_kw``), so the
model is deterministic (the paper: "the impact of uncertainty is relatively small, so
deterministic models are used").

Electrical distance (a comb-shaped feeder, our choice): every prosumer and the shared store sit at
``position_km`` along the trunk, at the end of a lateral of ``lateral_km``; the distance between two
of them is ``|x_i - x_j| + l_i + l_j``. The transmission fee of a P2P trade or of a storage
exchange is ``fee_base + fee_per_km * distance`` (CNY/kWh), paid by the buyer (the paper's eq. 16,
"the prosumer who buys electricity from P2P energy trading should pay the transmission fee";
the impedance-affine form of its eq. 9 with distance standing in for impedance).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ...models.scenario import (
    HEADER_KEYS,
    BatterySpec,
    Reader,
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
    read_site,
    table,
)


@dataclass(frozen=True)
class StorageProsumerSpec:
    name: str
    load_profile: str
    annual_demand_kwh: float
    pv_kwp: float
    wind_kw: float
    shiftable_share: float  # share of the base load that may move within the day
    shift_peak_factor: float  # per-hour cap of the shifted load, multiple of its daily mean
    shift_cost: float  # CNY/kW^2h, quadratic discomfort of deviating from the forecast shiftable load
    position_km: float
    lateral_km: float
    battery: BatterySpec | None
    index: int


@dataclass(frozen=True)
class SharedStorageSpec:
    power_kw: float  # P^SESS, bound on sum_i C^P_i
    energy_kwh: float  # E^SESS, bound on sum_i C^E_i
    efficiency: float  # one-way, on charge and on discharge
    soc_min: float  # fractions of each prosumer's rented energy capacity
    soc_max: float
    usage_cost: float  # CNY/kWh on rented charge + discharge, paid to the operator
    power_price: float  # CNY/kW per day for rented power capacity (constant, a^P = 0)
    energy_price_empty: float  # CNY/kWh per day at zero total rented energy capacity (b^E)
    energy_price_full: float  # ... when the total reaches energy_kwh (so a^E = (full - empty)/E)
    position_km: float
    lateral_km: float

    @property
    def energy_slope(self) -> float:
        """a^E, CNY/kWh per day per kWh of total demand (0 when the store has no energy)."""
        return (self.energy_price_full - self.energy_price_empty) / self.energy_kwh if self.energy_kwh > 0 else 0.0


@dataclass(frozen=True)
class NetworkSpec:
    fee_base: float  # CNY/kWh, distance-independent part of the transmission fee
    fee_per_km: float  # CNY/kWh per km of electrical distance
    p2p_limit_kw: float  # |p_ij,t| bound per pair


@dataclass(frozen=True)
class AdmmSpec:
    rho_trade: float  # ADMM penalty on P2P consensus, CNY/kWh per kW
    rho_capacity: float  # ADMM penalty on capacity consensus, CNY/kWh per kWh
    proximal: float  # mean private proximal coefficient, multiple of the block's rho
    proximal_spread: float  # relative half-width of its uniform per-iteration draw, [0, 1)
    primal_tol: float  # stop when the RMS of x - z over the consensus entries is <= this (kW, kWh)
    dual_tol: float  # ... and the RMS of rho (z^k - z^(k-1)) is <= this (CNY/kWh)
    max_iterations: int


@dataclass(frozen=True)
class StorageScenario(ScenarioBase):
    site: SiteSpec
    tariff: TariffSpec
    load_diversity: float
    storage: SharedStorageSpec
    network: NetworkSpec
    admm: AdmmSpec
    prosumers: tuple[StorageProsumerSpec, ...]
    source: str = field(default="")
    mechanism: str = "storage-p2p"

    @property
    def uncertainty(self) -> UncertaintySpec:
        """One error-free scenario: what ``profiles.build_profiles`` needs for forecasts only."""
        return UncertaintySpec(scenarios=1, load_error_std=0.0, pv_error_std=0.0, wind_error_std=0.0,
                               error_autocorrelation=0.0, load_diversity=self.load_diversity)

    def distance_km(self, i: int, j: int) -> float:
        """Electrical distance between prosumers i and j (index -1: the shared store)."""
        if i == j:
            return 0.0
        a = self.storage if i < 0 else self.prosumers[i]
        b = self.storage if j < 0 else self.prosumers[j]
        return abs(a.position_km - b.position_km) + a.lateral_km + b.lateral_km

    def fee(self, i: int, j: int) -> float:
        """Transmission fee between i and j (index -1: the shared store), CNY/kWh."""
        return self.network.fee_base + self.network.fee_per_km * self.distance_km(i, j)

    def subset(self, indices, *, storage: SharedStorageSpec | None = None) -> "StorageScenario":
        """The same scenario restricted to some prosumers (in the given order; each keeps its
        ``index``, so its profiles are unchanged); ``storage`` replaces the shared store."""
        members = tuple(self.prosumers[i] for i in indices)
        if not members:
            fail("prosumer", "a market needs at least 1 prosumer")
        return replace(self, prosumers=members, storage=storage or self.storage)



# --------------------------------------------------------------------------------------------
def _storage(t: dict) -> SharedStorageSpec:
    r = Reader(t, "storage")
    s = SharedStorageSpec(
        power_kw=r.num("power_kw", lo=0),
        energy_kwh=r.num("energy_kwh", lo=0),
        efficiency=r.num("efficiency", lo=0, hi=1, lo_open=True),
        soc_min=r.num("soc_min", lo=0, hi=1),
        soc_max=r.num("soc_max", lo=0, hi=1),
        usage_cost=r.num("usage_cost", lo=0, hi=10),
        power_price=r.num("power_price", lo=0, hi=100),
        energy_price_empty=r.num("energy_price_empty", lo=0, hi=100),
        energy_price_full=r.num("energy_price_full", lo=0, hi=100),
        position_km=r.num("position_km", lo=0, hi=1000),
        lateral_km=r.num("lateral_km", lo=0, hi=1000, default=0.0),
    )
    r.done()
    if s.soc_max <= s.soc_min:
        fail("storage.soc_max", f"must be > soc_min = {fmt(s.soc_min)}, got {fmt(s.soc_max)}")
    if s.energy_price_full < s.energy_price_empty:
        fail("storage.energy_price_full",
              f"must be >= energy_price_empty = {fmt(s.energy_price_empty)}, got {fmt(s.energy_price_full)}")
    return s


def _network(t: dict) -> NetworkSpec:
    r = Reader(t, "network")
    n = NetworkSpec(fee_base=r.num("fee_base", lo=0, hi=10), fee_per_km=r.num("fee_per_km", lo=0, hi=10),
                    p2p_limit_kw=r.num("p2p_limit_kw", lo=0, lo_open=True))
    r.done()
    if n.fee_base <= 0 and n.fee_per_km <= 0:
        fail("network.fee_base", "fee_base and fee_per_km must not both be 0 (the |p| linearisation needs a fee > 0)")
    return n


def _admm(t: dict) -> AdmmSpec:
    r = Reader(t, "admm")
    a = AdmmSpec(
        rho_trade=r.num("rho_trade", lo=0, lo_open=True),
        rho_capacity=r.num("rho_capacity", lo=0, lo_open=True),
        proximal=r.num("proximal", lo=0, hi=100),
        proximal_spread=r.num("proximal_spread", lo=0, hi=1, hi_open=True),
        primal_tol=r.num("primal_tol", lo=0, lo_open=True),
        dual_tol=r.num("dual_tol", lo=0, lo_open=True),
        max_iterations=r.int_("max_iterations", lo=1, hi=100_000),
    )
    r.done()
    return a


def _prosumer(t: Any, i: int) -> StorageProsumerSpec:
    path = f"prosumer[{i}]"
    if not isinstance(t, dict):
        fail(path, f"must be a table, got {type(t).__name__}")
    r = Reader(t, path)
    common = read_prosumer_fields(r)
    battery = read_battery(r.raw("battery"), f"{path}.battery", usage=True) if "battery" in t else None
    p = StorageProsumerSpec(
        **common,
        position_km=r.num("position_km", lo=0, hi=1000),
        lateral_km=r.num("lateral_km", lo=0, hi=1000, default=0.0),
        battery=battery,
        index=i,
    )
    r.done()
    return p


def parse(data: dict, source: str = "", prosumers: int | None = None, seed: int | None = None) -> StorageScenario:
    """Validate a storage scenario document (already parsed TOML); ``prosumers=N`` keeps the first N."""
    no_unknown(data, HEADER_KEYS | {"site", "tariff", "profiles", "storage", "network", "admm", "prosumer"}, "")
    header = read_header(data, seed)
    prof = Reader(table(data, "profiles", "profiles"), "profiles")
    diversity = prof.num("load_diversity", lo=0, hi=0.5, default=0.0)
    prof.done()
    members = tuple(_prosumer(t, i) for i, t in enumerate(read_prosumer_list(data)))
    check_unique_names(members)
    scenario = StorageScenario(
        **header, site=read_site(table(data, "site", "site")),
        tariff=read_grid_tariff(table(data, "tariff", "tariff")), load_diversity=diversity,
        storage=_storage(table(data, "storage", "storage")), network=_network(table(data, "network", "network")),
        admm=_admm(table(data, "admm", "admm")), prosumers=members, source=source)
    if prosumers is not None:
        if isinstance(prosumers, bool) or not isinstance(prosumers, int) or not 1 <= prosumers <= len(members):
            fail("prosumers", f"must be in [1, {len(members)}] (the scenario's prosumers), got {prosumers!r}")
        scenario = scenario.subset(range(prosumers))
    return scenario
