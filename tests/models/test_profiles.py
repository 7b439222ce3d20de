"""Profiles: deterministic in the seed, physically plausible, fast for large communities."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from offchain import registry
from offchain.models.profiles import bdew_day, build_profiles

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "community10.toml"
STORAGE = ROOT / "scenarios" / "storage10.toml"


def load_scenario(path=SCENARIO, **kw):
    return registry.load_scenario(path, **kw)[1]


def test_profiles_are_deterministic_in_the_seed_and_change_with_it():
    sc = load_scenario()
    a, b = build_profiles(sc), build_profiles(sc)
    c = build_profiles(load_scenario(seed=1))
    for pa, pb in zip(a.prosumers, b.prosumers):
        assert np.array_equal(pa.load, pb.load) and np.array_equal(pa.wind, pb.wind)
    assert not np.array_equal(a.prosumers[0].load, c.prosumers[0].load)


def test_shapes_signs_and_physics():
    sc = load_scenario()
    prof = build_profiles(sc)
    S = sc.uncertainty.scenarios
    assert prof.pv_per_kwp[:4].max() == 0 and prof.pv_per_kwp[20:].max() == 0  # night
    assert 0.5 < prof.pv_per_kwp.max() <= 1.0  # clear July noon, PR 0.8
    assert (prof.wind_per_kw >= 0).all() and (prof.wind_per_kw <= 1).all()
    for spec, p in zip(sc.prosumers, prof.prosumers):
        assert p.load.shape == (S, 24) and p.pv.shape == (S, 24) and p.wind.shape == (S, 24)
        assert (p.load >= 0).all() and (p.pv >= 0).all() and (p.wind >= 0).all()
        assert (p.wind <= spec.wind_kw + 1e-12).all()
        assert abs(p.probabilities.sum() - 1) < 1e-12
        # BDEW scaling: the day's energy is the annual demand times that day's share
        share = bdew_day(sc.site.date)[spec.load_profile].sum()
        assert np.isclose(p.load_forecast.sum(), spec.annual_demand_kwh * share)
        assert 1 / 800 < share < 1 / 200  # a day is roughly 1/365 of a year


def test_two_hundred_prosumers_take_well_under_a_second_once_base_curves_exist():
    build_profiles(load_scenario())  # warm the per-process base curves
    sc = load_scenario(prosumers=200)
    t0 = time.perf_counter()
    prof = build_profiles(sc)
    assert time.perf_counter() - t0 < 1.0
    assert len(prof) == 200


def test_storage_profiles_are_one_error_free_scenario_with_the_cut_unchanged():
    """A storage scenario offers build_profiles one error-free scenario (deterministic model);
    a prosumer keeps its profile when the market is cut to fewer prosumers (its index is kept)."""
    full = build_profiles(load_scenario(STORAGE))
    cut = build_profiles(load_scenario(STORAGE, prosumers=3))
    assert len(full) == 10 and len(cut) == 3
    for p in full.prosumers:
        assert p.load.shape == (1, 24) and p.probabilities.tolist() == [1.0]
        assert np.array_equal(p.load[0], p.load_forecast) and np.array_equal(p.pv[0], p.pv_forecast)
    for a, b in zip(cut.prosumers, full.prosumers):
        assert np.array_equal(a.load, b.load) and np.array_equal(a.pv, b.pv) and np.array_equal(a.wind, b.wind)


def test_profiles_serialise_for_the_run_record_by_prosumer_name():
    import json

    sc = load_scenario()
    prof = build_profiles(sc)
    names = [p.name for p in sc.prosumers]
    d = json.loads(json.dumps(prof.to_dict(names)))
    assert list(d["prosumers"]) == names and len(d["hours"]) == 24 and len(d["pv_per_kwp"]) == 24
    assert d["prosumers"][names[0]]["load_forecast"] == prof.prosumers[0].load_forecast.tolist()
    assert list(prof.to_dict()["prosumers"])[:2] == ["prosumer-0", "prosumer-1"]  # without names
