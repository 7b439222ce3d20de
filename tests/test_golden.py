"""Behaviour preserved: the framework reproduces the figures recorded on main before it
(tests/fixtures/golden_main.json): the demo's tariffs, costs and payments to the last base unit and
the four storage cases' totals, rents and payments (to the float precision of their QP solves).
Gas moved where the robust rounds moved it (each submission pays for the residue check and its
next mask point; openings are checked only when challenged; each participant reveals with its
own transaction), so that an iteration costs less than on main; the settlement stays within 15%."""
from __future__ import annotations

import json

import pytest

from offchain.chain.backends import connect, start_anvil
from offchain.mechanisms.storage import solve_admm
from offchain.mechanisms.storage.market import AdmmSettings
from offchain.models.profiles import build_profiles
from offchain.models.storage_p2p import build_market
from offchain.protocol.transport import ChainTransport
from offchain.registry import load_scenario
from offchain.runner import Prepared, RunOptions, execute
from offchain.units import price_to_fixed

from .conftest import ROOT, SCENARIO, node_available

GOLDEN = json.loads((ROOT / "tests" / "fixtures" / "golden_main.json").read_text())


def _close(value: float, golden: float, tolerance: float) -> bool:
    return abs(value - golden) <= tolerance * abs(golden)


@pytest.fixture(scope="module")
def demo():
    mechanism, scenario = load_scenario(SCENARIO)
    options = RunOptions(key_bits=2048, verify_openings=True)
    return execute(Prepared(mechanism, scenario, options, chain=connect(None))).to_dict()


def test_the_demo_reproduces_mains_tariffs_costs_and_payments(demo):
    g = GOLDEN["tariff"]
    assert demo["convergence"]["converged"] and demo["convergence"]["iterations"] == g["iterations"]
    assert [it["prices"] for it in demo["iterations"]] == g["tariffs_fixed"]
    parties = {p["name"]: p for p in demo["parties"]}
    for p in g["prosumers"]:
        assert parties[p["name"]]["payment"]["base_units"] == p["payment_base_units"]
        assert parties[p["name"]]["cost_alone"] == pytest.approx(p["cost_alone"], abs=1e-9)
        assert parties[p["name"]]["cost_shared"] == pytest.approx(p["cost_shared"], abs=1e-9)
    assert parties["grid"]["payment"]["base_units"] == g["grid_payment_base_units"]
    assert demo["details"]["community"]["saving_pct"] == pytest.approx(g["saving_pct"], abs=1e-9)


ITERATION_KINDS = ("submit", "aggregate", "publish", "conclude")


def test_the_demo_gas_moved_where_the_robust_rounds_moved_it(demo):
    g, kinds = GOLDEN["tariff"]["gas"], demo["gas"]["per_kind"]
    assert g["submit_mean"] < kinds["submit"]["mean"] <= g["submit_mean"] + 60_000
    assert _close(kinds["aggregate"]["mean"], g["aggregate_mean"], 0.10)
    assert kinds["publish"]["mean"] < g["publish_mean"] / 5  # no opening check unless challenged
    per_iteration = [sum(v for k, v in it["gas"].items() if k in ITERATION_KINDS) for it in demo["iterations"]]
    assert all(a < b for a, b in zip(per_iteration, g["per_iteration"]))
    assert _close(kinds["settle"]["mean"], g["settle"], 0.15)


@pytest.fixture(scope="module")
def storage():
    _, scenario = load_scenario(ROOT / "scenarios" / "storage10.toml")
    return scenario, build_profiles(scenario), AdmmSettings.from_scenario(scenario)


@pytest.mark.parametrize("case", ["1", "2", "3", "4"])
def test_every_storage_case_reproduces_mains_totals_rents_and_payments(storage, case):
    """In plaintext mode (bit-identical to the chain's trajectory, and its Python settlement equal to
    the contract's: both are tested elsewhere), so that all four cases stay cheap. The ADMM's local
    QPs are solved in floating point, whose last bits differ between machines (vector units, BLAS):
    iterations and rents are exact, totals within 0.001 CNY, the closing sums within 0.02 kWh and
    payments and bills within 0.001 token or 1e-5 relative (measured across machines: 4e-4 CNY, 0.011 kWh, 1.5e-4 token)."""
    scenario, profiles, settings = storage
    g = GOLDEN["storage"]["cases"][case]
    models, data = build_market(scenario, int(case), profiles=profiles)
    r, out = solve_admm(models, data, settings)
    assert r.iterations == g["admm_iterations"] and r.converged
    assert r.allocation.total == pytest.approx(g["total"], abs=1e-3)
    assert price_to_fixed(r.rents) == g["rents_fixed"]
    assert out.iterations[-1].sums == pytest.approx(g["closing_sums_fixed"], abs=20_000)
    paid = {**dict(zip(data.names, out.settlement.amounts)), **out.settlement.payees}
    assert paid == pytest.approx({n: int(v) for n, v in g["payments_base_units"].items()}, rel=1e-5, abs=10**15)
    bills = {n: dict(zip(("rent", "usage", "transmission", "grid", "p2p"), b)) for n, b in zip(data.names, out.settlement.bills)}
    expected = {n: {k: -v for k, v in b.items()} for n, b in g["bills"].items()}  # main's bills were credits
    assert bills.keys() == expected.keys()
    assert all(bills[n] == pytest.approx(expected[n], rel=1e-5, abs=10**15) for n in expected)


@pytest.mark.anvil
@pytest.mark.skipif(not node_available(), reason="node or node_modules/.bin/anvil missing: run `make install`")
def test_the_storage_gas_on_chain_moved_where_the_robust_rounds_moved_it(storage):
    """Case 4 through anvil (Prague): the same payments; a submission dearer by the robust rounds' checks,
    aggregation within 10%, publication and conclusion cheaper; the settlement of the typed rule
    within 15% (within 10% is the issue's bar for keeping it: benchmarks/settle-gas.json)."""
    scenario, profiles, settings = storage
    g = GOLDEN["storage"]["cases"]["4"]["gas"]
    models, data = build_market(scenario, 4, profiles=profiles)
    with start_anvil(hardfork="prague") as node:
        _, out = solve_admm(models, data, settings, transport=ChainTransport(connect(node.url), key_bits=2048))
    gas = out.transport.gas
    mean = {k: sum(v) / len(v) for k, v in gas.items()}
    golden = GOLDEN["storage"]["cases"]["4"]["payments_base_units"]
    assert dict(zip(data.names, out.settlement.amounts)) == pytest.approx(
        {n: int(golden[n]) for n in data.names}, rel=1e-5, abs=10**15)  # as in plaintext mode, above
    assert g["submit"] < mean["submit"] <= g["submit"] + 60_000
    assert _close(mean["aggregate"], g["aggregate"], 0.10)
    assert mean["publish"] < g["publish"] and mean["conclude"] < g["conclude"]
    assert _close(mean["settle"], g["settle"], 0.15)
