"""Deterministic hourly profiles for a scenario: forecasts and seeded forecast-error scenarios.

* Base load: BDEW standard load profiles (demandlib ``ElecSlp``: h0, g0..g6, l0..l2) for the
  scenario's date, hourly means of the quarter-hour values, scaled to each prosumer's annual
  demand, then distorted by a seeded AR(1) factor of std ``load_diversity`` (renormalised to the
  same daily energy) so that prosumers of one class differ.
* PV: pvlib Ineichen clear-sky irradiance at the site (Linke turbidity from pvlib's shipped
  table), transposed to the plane of array (isotropic sky), averaged over four quarter-hour
  samples per hour; AC kW = kWp * POA / 1000 W/m2 * performance ratio.
* Wind: a seeded hourly wind-speed series at measurement height (Gaussian AR(1) mapped to a
  Weibull marginal with the configured mean and shape), extrapolated to hub height with
  windpowerlib's Hellman law, through the power curve of a turbine from windpowerlib's shipped
  oedb data (no download), normalised by its nominal power and scaled to each prosumer's wind kW.
  One site series for the whole community (wind is spatially correlated at community scale).
* Scenarios: S equiprobable multiplicative forecast errors per prosumer, AR(1) in time with
  lag-1 correlation ``error_autocorrelation`` and std per resource, factors clipped at 0.

Randomness: ``numpy.random.default_rng([seed, stream, prosumer_index])``. This is data synthesis,
not cryptography. Each library's base curve is computed once per process (``lru_cache`` keyed on
the site and year) and scaled per prosumer, so 200 prosumers take well under a second after the
first call (demandlib builds a whole year once, ~0.6 s).
"""
from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

HOURS = 24
_LOAD_PROFILES = ("h0", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2")

# RNG stream identifiers (the second element of the seed sequence)
_STREAM_WIND = 0x3D1
_STREAM_DIVERSITY = 0xD1F
_STREAM_ERRORS = 0xE770


@dataclass(frozen=True, eq=False)
class ProsumerProfiles:
    """One prosumer's data in kW per hour. Forecasts are (T,), scenarios (S, T)."""

    load_forecast: np.ndarray
    pv_forecast: np.ndarray
    wind_forecast: np.ndarray
    load: np.ndarray
    pv: np.ndarray
    wind: np.ndarray
    probabilities: np.ndarray  # (S,), sums to 1

    @property
    def scenarios(self) -> int:
        return int(self.load.shape[0])

    @property
    def hours(self) -> int:
        return int(self.load.shape[1])

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in
                ("load_forecast", "pv_forecast", "wind_forecast", "probabilities")}


@dataclass(frozen=True, eq=False)
class CommunityProfiles:
    hours: pd.DatetimeIndex  # start of each hourly period, local time
    pv_per_kwp: np.ndarray  # (T,) kW per kWp (forecast)
    wind_per_kw: np.ndarray  # (T,) kW per kW rated (forecast)
    wind_speed_hub: np.ndarray  # (T,) m/s
    prosumers: tuple[ProsumerProfiles, ...]

    def __len__(self) -> int:
        return len(self.prosumers)

    def __getitem__(self, i: int) -> ProsumerProfiles:
        return self.prosumers[i]

    def to_dict(self, names=None) -> dict:
        """The generated forecasts (kW per hour), for the run record; error scenarios are
        reproducible from the scenario's seed."""
        keys = ("load_forecast", "pv_forecast", "wind_forecast")
        names = names or [f"prosumer-{i}" for i in range(len(self.prosumers))]
        return {"hours": [str(h) for h in self.hours], "pv_per_kwp": self.pv_per_kwp.tolist(),
                "wind_per_kw": self.wind_per_kw.tolist(), "wind_speed_hub": self.wind_speed_hub.tolist(),
                "prosumers": {n: {k: getattr(p, k).tolist() for k in keys} for n, p in zip(names, self.prosumers)}}


# --------------------------------------------------------------------------------------------
# base curves (computed once per process)
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def turbine_types() -> frozenset[str]:
    """Turbine types with a power curve in windpowerlib's shipped (offline) oedb data."""
    from windpowerlib import data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = data.get_turbine_types(turbine_library="local", print_out=False, filter_=True)
    if "has_power_curve" in df:
        df = df[df["has_power_curve"].astype(bool)]
    return frozenset(str(t) for t in df["turbine_type"])


@lru_cache(maxsize=4)
def _bdew_year(year: int) -> pd.DataFrame:
    """kW per (kWh/a) at quarter-hour resolution for every BDEW profile of ``year``."""
    from demandlib import bdew

    # demandlib's ElecSlp calls warnings.simplefilter("error") globally; contain it.
    with warnings.catch_warnings():
        slp = bdew.ElecSlp(year)
        frame = slp.get_scaled_power_profiles({p: 1.0 for p in _LOAD_PROFILES})
    return frame


@lru_cache(maxsize=64)
def bdew_day(date: str) -> dict[str, np.ndarray]:
    """Hourly mean load, kW per kWh of annual demand, for every BDEW profile on ``date``."""
    d = _dt.date.fromisoformat(date)
    frame = _bdew_year(d.year)
    day = frame.loc[str(d)]
    out = {}
    for p in _LOAD_PROFILES:
        v = day[p].to_numpy(dtype=float).reshape(HOURS, 4).mean(axis=1)
        v.setflags(write=False)
        out[p] = v
    return out


def _hour_index(site) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(site.date), periods=HOURS, freq="h", tz=site.timezone)


@lru_cache(maxsize=64)
def pv_per_kwp(site) -> np.ndarray:
    """(T,) clear-sky AC output per kWp: average of 4 quarter-hour samples in each hour."""
    import pvlib

    start = pd.Timestamp(site.date).tz_localize(site.timezone)
    times = start + pd.to_timedelta(np.arange(HOURS * 4) * 15 + 7.5, unit="min")
    times = pd.DatetimeIndex(times)
    loc = pvlib.location.Location(site.latitude, site.longitude, tz=site.timezone,
                                  altitude=site.altitude)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = loc.get_solarposition(times)
        cs = loc.get_clearsky(times, model="ineichen", solar_position=sp)
        poa = pvlib.irradiance.get_total_irradiance(
            site.pv_tilt, site.pv_azimuth, sp["apparent_zenith"], sp["azimuth"],
            cs["dni"], cs["ghi"], cs["dhi"], model="isotropic")["poa_global"]
    p = np.clip(poa.to_numpy(dtype=float), 0.0, None).reshape(HOURS, 4).mean(axis=1)
    out = p / 1000.0 * site.performance_ratio
    out.setflags(write=False)
    return out


@lru_cache(maxsize=16)
def _power_curve(turbine: str) -> tuple[np.ndarray, np.ndarray]:
    from windpowerlib import WindTurbine

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wt = WindTurbine(turbine_type=turbine, hub_height=1000.0)  # height irrelevant here
    pc = wt.power_curve.sort_values("wind_speed")
    v = pc["wind_speed"].to_numpy(dtype=float)
    p = pc["value"].to_numpy(dtype=float) / float(wt.nominal_power)
    return v, p


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], rho: float, std: float) -> np.ndarray:
    """Gaussian AR(1) along the last axis with stationary std ``std``."""
    w = rng.standard_normal(shape)
    out = np.empty(shape)
    out[..., 0] = w[..., 0]
    k = np.sqrt(1.0 - rho * rho)
    for t in range(1, shape[-1]):
        out[..., t] = rho * out[..., t - 1] + k * w[..., t]
    return std * out


@lru_cache(maxsize=64)
def wind_site(site, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(hub wind speed m/s (T,), kW per kW rated (T,)) for the site's seeded wind series."""
    from scipy.special import gamma, ndtr
    from windpowerlib import power_output
    from windpowerlib import wind_speed as ws

    rng = np.random.default_rng([seed, _STREAM_WIND])
    z = _ar1(rng, (HOURS,), site.wind_autocorrelation, 1.0)
    u = np.clip(ndtr(z), 1e-12, 1 - 1e-12)
    k = site.wind_weibull_k
    scale = site.wind_mean_speed / gamma(1.0 + 1.0 / k)
    v10 = scale * (-np.log1p(-u)) ** (1.0 / k)
    v_hub = ws.hellman(pd.Series(v10), site.wind_measurement_height, site.hub_height,
                       hellman_exponent=site.hellman_exponent)
    v_pc, p_pc = _power_curve(site.wind_turbine)
    p = power_output.power_curve(v_hub, pd.Series(v_pc), pd.Series(p_pc))
    v_hub = np.asarray(v_hub, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    v_hub.setflags(write=False)
    p.setflags(write=False)
    return v_hub, p


# --------------------------------------------------------------------------------------------
# per-prosumer profiles
# --------------------------------------------------------------------------------------------
def prosumer_profiles(spec, scenario) -> ProsumerProfiles:
    """Forecasts and S error scenarios of one prosumer (deterministic in seed and index)."""
    site, unc, seed = scenario.site, scenario.uncertainty, scenario.seed
    i = spec.index
    base = bdew_day(site.date)[spec.load_profile] * spec.annual_demand_kwh
    if unc.load_diversity > 0:
        rng = np.random.default_rng([seed, _STREAM_DIVERSITY, i])
        f = np.clip(1.0 + _ar1(rng, (HOURS,), 0.6, unc.load_diversity), 0.2, None)
        shaped = base * f
        base = shaped * (base.sum() / shaped.sum())
    pv_f = pv_per_kwp(site) * spec.pv_kwp
    wind_f = wind_site(site, seed)[1] * spec.wind_kw
    s = unc.scenarios
    rng = np.random.default_rng([seed, _STREAM_ERRORS, i])
    rho = unc.error_autocorrelation
    e = _ar1(rng, (3, s, HOURS), rho, 1.0)
    load = base * np.clip(1.0 + unc.load_error_std * e[0], 0.0, None)
    pv = pv_f * np.clip(1.0 + unc.pv_error_std * e[1], 0.0, None)
    wind = np.minimum(wind_f * np.clip(1.0 + unc.wind_error_std * e[2], 0.0, None),
                      spec.wind_kw)
    arrays = dict(load_forecast=base, pv_forecast=np.array(pv_f), wind_forecast=np.array(wind_f),
                  load=load, pv=pv, wind=wind, probabilities=np.full(s, 1.0 / s))
    for a in arrays.values():
        a.setflags(write=False)
    return ProsumerProfiles(**arrays)


def build_profiles(scenario) -> CommunityProfiles:
    """Profiles of every prosumer of ``scenario`` (a :class:`~offchain.models.scenario.Scenario`)."""
    site = scenario.site
    v_hub, w = wind_site(site, scenario.seed)
    return CommunityProfiles(
        hours=_hour_index(site),
        pv_per_kwp=pv_per_kwp(site),
        wind_per_kw=w,
        wind_speed_hub=v_hub,
        prosumers=tuple(prosumer_profiles(p, scenario) for p in scenario.prosumers),
    )
