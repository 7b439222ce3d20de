"""The CVaR prosumer: DPP re-solves, device constraints, individual rationality."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offchain import registry
from offchain.errors import SolverError
from offchain.models.prosumer import ProsumerModel, build_models

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "community10.toml"


@pytest.fixture(scope="module")
def scenario():
    mechanism, sc = registry.load_scenario(SCENARIO)
    assert mechanism.name == "tariff"
    return sc


@pytest.fixture(scope="module")
def models(scenario):
    return build_models(scenario)


def _tariffs(scenario):
    m = scenario.market
    rng = np.random.default_rng(3)
    return [m.feed_in, m.retail, 0.5 * (m.feed_in + m.retail),
            m.feed_in + rng.uniform(0, 1, 24) * (m.retail - m.feed_in)]


def test_model_is_dpp_and_resolves_a_new_tariff_without_rebuilding(models):
    m = models[0]
    assert isinstance(m, ProsumerModel) and m.problem.is_dpp()
    problem = m.problem
    r1 = m.respond(np.full(24, 0.4))
    prog = problem._cache.param_prog
    assert prog is not None
    r2 = m.respond(np.full(24, 0.9))
    assert m.problem is problem and problem._cache.param_prog is prog  # same compiled programme
    assert not np.allclose(r1.x, r2.x)  # and the tariff really changed the answer
    assert r2.x.sum() < r1.x.sum()  # dearer internal energy: buys less / sells more


def test_shiftable_load_conserves_its_daily_energy(models, scenario):
    lam = _tariffs(scenario)[3]
    for m in models:
        if m.spec.shiftable_share == 0:
            continue
        r = m.respond(lam)
        d, d_hat = r.schedule["shiftable"], r.schedule["shiftable_forecast"]
        assert d.sum() == pytest.approx(d_hat.sum(), rel=1e-6, abs=1e-6)
        assert (d >= -1e-7).all()
        assert (d <= m.spec.shift_peak_factor * d_hat.mean() + 1e-6).all()


def test_battery_stays_within_soc_and_power_limits_and_ends_where_it_started(models, scenario):
    batteries = [m for m in models if m.spec.battery is not None]
    assert batteries
    for lam in _tariffs(scenario):
        for m in batteries:
            b = m.spec.battery
            r = m.respond(lam)
            soc = r.schedule["battery_soc"]
            tol = 1e-5 * b.capacity_kwh
            assert soc.min() >= b.soc_min * b.capacity_kwh - tol
            assert soc.max() <= b.soc_max * b.capacity_kwh + tol
            assert soc[-1] == pytest.approx(b.soc_initial * b.capacity_kwh, abs=tol)
            for key in ("battery_charge", "battery_discharge"):
                assert r.schedule[key].min() >= -1e-6 and r.schedule[key].max() <= b.power_kw + 1e-6


def test_respond_is_never_worse_than_alone_for_tariffs_in_the_band(models, scenario):
    for m in models:
        alone = m.alone()
        assert np.array_equal(alone.x, np.zeros(24))
        for lam in _tariffs(scenario):
            r = m.respond(lam)
            assert r.objective <= alone.objective
            assert np.abs(r.x).max() <= m.spec.trade_limit_kw + 1e-6


def test_cost_breakdown_adds_up_to_the_objective(models, scenario):
    lam = _tariffs(scenario)[2]
    beta = scenario.risk.cvar_beta
    for m in models[:4]:
        c = m.respond(lam).costs
        first = sum(c.get(k, 0.0) for k in ("trade_cost", "battery_wear", "shift_discomfort"))
        rec = (1 - beta) * c["recourse_expected"] + beta * c["recourse_cvar"]
        assert first + c["internal_payment"] + rec == pytest.approx(c["total"], rel=1e-5, abs=1e-4)
        assert c["recourse_cvar"] >= c["recourse_expected"] - 1e-6


def test_respond_rejects_a_tariff_of_the_wrong_length(models):
    with pytest.raises(ValueError, match="shape"):
        models[0].respond(np.zeros(23))


def test_an_unsolvable_problem_raises_a_one_line_solver_error():
    """Every solver tried (CLARABEL, then SCS) fails on an infeasible problem: a SolverError,
    which the command line reports as one line with exit status 2."""
    import cvxpy as cp

    from offchain.errors import GridshareError
    from offchain.models.prosumer import _solve

    x = cp.Variable()
    with pytest.raises(SolverError, match=r"^prosumer problem not solved \(status infeasible"):
        _solve(cp.Problem(cp.Minimize(x), [x >= 1, x <= 0]))
    assert issubclass(SolverError, GridshareError) and SolverError.exit_code == 2
