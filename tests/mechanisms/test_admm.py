"""Shared-storage + P2P market (the storage-p2p mechanism): the QP reference, the two-block ADMM run as a round
(offchain/mechanisms/storage: solve_admm over the round driver), its private transport, the
case table and the privacy experiment (offchain/mechanisms/storage/, offchain/models/storage_p2p.py)."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from offchain import registry
from offchain.errors import ScenarioError, UsageError
from offchain.mechanisms.storage import admm_result, admm_setup, solve_admm
from offchain.mechanisms.storage.experiment import privacy_experiment
from offchain.mechanisms.storage.market import (
    AdmmProsumer,
    AdmmSettings,
    CaseResult,
    CaseTable,
    StorageOperatorAgent,
    centralized_qp,
    consensus_entries,
    reported_residuals,
)
from offchain.mechanisms.storage.scenario import parse as parse_storage_scenario
from offchain.mechanisms.storage.settlement import ITEMS
from offchain.models.profiles import build_profiles
from offchain.models.scenario import read_toml
from offchain.models.storage_p2p import CASES, build_market
from offchain.privacy.masks import PAD_BITS
from offchain.privacy.packing import PackingError, SlotLayout
from offchain.protocol.driver import run_round
from offchain.protocol.transport import PlainTransport, PrivateTransport
from offchain.units import price_to_fixed

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "storage10.toml"
MECHANISM = registry.get("storage-p2p")
GAP = 1e-3  # ADMM objective within 0.1% of the QP
TOKEN = 1e18  # token base units per CNY


@pytest.fixture(scope="module")
def sc():
    mechanism, scenario = registry.load_scenario(SCENARIO)
    assert mechanism is MECHANISM
    return scenario


@pytest.fixture(scope="module")
def settings(sc):
    return AdmmSettings.from_scenario(sc)


@pytest.fixture(scope="module")
def profiles(sc):
    return build_profiles(sc)


@pytest.fixture(scope="module")
def full_case4(sc, settings, profiles):
    models, data = build_market(sc, 4, profiles=profiles)
    q = centralized_qp(models, data)
    r, outcome = solve_admm(models, data, settings)
    return models, data, q, r, outcome


@pytest.fixture(scope="module")
def qp_cases(sc, profiles, full_case4):
    """The centralised QP of every case (case 4 from the full-case fixture)."""
    out = {c: centralized_qp(*build_market(sc, c, profiles=profiles)) for c in (1, 2, 3)}
    return {**out, 4: full_case4[2]}


def _qp_case(c, q):
    return CaseResult(c, CASES[c].label, q.allocation, q.objective, "qp", qp=q)


@pytest.fixture(scope="module")
def table(sc, qp_cases):
    return CaseTable([p.name for p in sc.prosumers], {c: _qp_case(c, q) for c, q in qp_cases.items()})


def _admm_vs_qp(scenario, case, settings, hours=None, **kw):
    models, data = build_market(scenario, case, hours=hours)
    q = centralized_qp(models, data)
    r, outcome = solve_admm(models, data, settings, **kw)
    return data, q, r, outcome


def _assert_matches(q, r, settings, total_gap=5e-3):
    """Converged below the stated tolerances, the QP's objective (Phi) within 0.1%; the market
    total (which excludes the capacity terms of Phi, so a tiny shift between capacity and local
    costs shows up relatively larger on small cases) within ``total_gap``."""
    assert r.converged
    assert r.primal_residuals[-1] <= settings.primal_tol and r.dual_residuals[-1] <= settings.dual_tol
    assert abs(r.objective - q.objective) <= GAP * abs(q.objective)
    assert abs(r.allocation.total - q.allocation.total) <= total_gap * abs(q.allocation.total)


def _balanced(settlement) -> bool:
    return sum(settlement.amounts) + sum(settlement.payees.values()) == 0


# ---- scenario ------------------------------------------------------------------------------
def test_storage10_is_the_papers_case(sc):
    assert len(sc.prosumers) == 10
    p = sc.prosumers
    assert p[0].wind_kw > 0 and p[0].pv_kwp == 0 and all(q.pv_kwp > 0 and q.wind_kw == 0 for q in p[1:])
    assert [(q.battery.power_kw, q.battery.capacity_kwh) for q in p if q.battery] == [(10, 20), (20, 40)]
    assert p[1].battery and p[2].battery
    assert all(q.battery.efficiency == 0.95 and q.battery.usage_cost == 0.11
               and (q.battery.soc_min, q.battery.soc_max) == (0.1, 0.9) for q in p[1:3])
    assert all(q.shiftable_share == 0.10 for q in p)
    s = sc.storage
    assert (s.power_kw, s.energy_kwh, s.efficiency, s.soc_min, s.soc_max) == (150, 450, 0.95, 0.1, 0.9)
    assert (s.usage_cost, s.power_price, s.energy_price_empty, s.energy_price_full) == (0.08, 0.3, 0.22, 0.4)
    assert len(set(sc.tariff.retail)) == 5  # five TOU periods
    assert sc.fee(0, 9) > sc.fee(0, 8)  # fee grows with electrical distance
    assert sc.mechanism == "storage-p2p" and sc.privacy.key_bits == 2048


def test_bad_storage_field_is_named():
    raw = read_toml(SCENARIO)
    bad = copy.deepcopy(raw)
    bad["storage"]["soc_max"] = 0.05
    with pytest.raises(ScenarioError, match=r"^storage\.soc_max: must be > soc_min"):
        parse_storage_scenario(bad)
    bad = copy.deepcopy(raw)
    bad["prosumer"][1]["battery"]["usage_cost"] = -1
    with pytest.raises(ScenarioError, match=r"^prosumer\[1\]\.battery\.usage_cost: must be in"):
        parse_storage_scenario(bad)
    bad = copy.deepcopy(raw)
    bad["admm"]["max_iterations"] = 0
    with pytest.raises(ScenarioError, match=r"^admm\.max_iterations: must be in \[1, 100000\], got 0"):
        parse_storage_scenario(bad)


def test_settings_come_from_the_admm_table_and_the_seed(sc):
    s = AdmmSettings.from_scenario(sc, max_iterations=7)
    assert (s.rho_trade, s.rho_capacity, s.primal_tol, s.dual_tol) == (0.02, 0.004, 0.003, 0.0006)
    assert s.max_iterations == 7 and s.seed == sc.seed
    assert AdmmSettings(**s.to_dict()) == s


def test_the_cli_case_option_is_checked(sc):
    for case in ("1", "4", "all"):
        MECHANISM.check_options(sc, {"case": case})
    with pytest.raises(UsageError, match=r"--case must be one of 1, 2, 3, 4, all, got '5'"):
        MECHANISM.check_options(sc, {"case": "5"})


# ---- the round a case runs ---------------------------------------------------------------------
def test_a_case_is_one_round_with_the_operator_as_coordinator(sc, settings, full_case4):
    models, data, *_ = full_case4
    setup = admm_setup(models, data, settings, label="case 4")
    assert [type(p) for p in setup.participants] == [AdmmProsumer] * 10
    assert isinstance(setup.coordinator, StorageOperatorAgent) and setup.coordinator_role == "operator"
    assert (setup.slots, setup.slot_bits, setup.pair_lanes) == (3 + 24, 48, 24)
    assert setup.payees == ["centre", "grid"] and setup.allow_list
    assert setup.max_iterations == settings.max_iterations + 1  # the closing iteration
    assert MECHANISM.layout(sc) == (27, 48, 10)
    rule = json.loads(json.dumps(setup.public_rule))
    assert rule["mechanism"] == "storage-p2p" and rule["case"] == 4
    assert rule["consensus_entries"] == consensus_entries(data) == 2 * 45 * 24 + 2 * 10
    assert "seed" not in rule["settings"]  # each prosumer's private proximal draws stay private
    assert setup.collateral(data.names[0]) == setup.collateral("grid") > 0 == setup.collateral("centre")
    # without P2P there are no pair lanes
    _, data3 = build_market(sc.subset([0, 1]), 3, hours=range(0, 4))
    assert admm_setup(build_market(sc.subset([0, 1]), 3, hours=range(0, 4))[0], data3, settings).pair_lanes == 0


def test_the_storage_key_must_fit_27_slots_of_52_bits(full_case4, settings):
    models, data, *_ = full_case4
    SlotLayout.for_round(27, 10, 1536, slot_bits=48)  # fits
    setup = admm_setup(models, data, settings)
    with pytest.raises(PackingError, match="27 slots and the check slot of 52 bits do not fit a 1024-bit key"):
        run_round(setup, PrivateTransport(1024))
    assert all(p.last is None for p in setup.participants)  # refused before any x-update


def test_reported_residuals_are_the_rms_of_the_summed_slots():
    sums = [0, 0, 4e3 * 10, 1e3 * 40, 0]  # r^2 sum 4 * 10 entries, s^2 sum 1 * 40, in units of 1e-9
    r, s = reported_residuals(sums, entries=10)
    assert r == pytest.approx(2.0) and s == pytest.approx(2.0)
    assert reported_residuals([0, 0, -5, 0], entries=3) == (0.0, 0.0)  # never negative


# ---- ADMM = QP -------------------------------------------------------------------------------
@pytest.mark.parametrize("members,hours,case", [
    ([0, 1, 8], range(10, 16), 4),
    ([0, 8], range(16, 22), 2),
    ([1, 2, 8], range(9, 15), 3),
    ([0, 2, 5], range(0, 24), 4),
])
def test_admm_equals_qp_on_small_cases(sc, settings, members, hours, case):
    _, q, r, outcome = _admm_vs_qp(sc.subset(members), case, settings, hours=hours)
    _assert_matches(q, r, settings)
    if case in (3, 4):
        assert np.allclose(r.rents, q.rents, atol=5e-3)
    assert outcome.converged and outcome.settled and _balanced(outcome.settlement)


def test_admm_equals_qp_on_the_full_case4(full_case4, settings):
    _, data, q, r, _ = full_case4
    _assert_matches(q, r, settings, total_gap=GAP)
    assert np.allclose(r.rents, q.rents, atol=2e-3)
    assert r.capacities[:, 0].sum() <= data.storage.energy_kwh + 0.5  # kWh: the consensus residual
    # the bills: consensus trades balance per pair, the closing aggregate sums the billed slots
    assert np.array_equal(r.trades, -r.trades.transpose(1, 0, 2))
    assert np.allclose(r.closing_sums, np.sum([b.slots() for b in r.bills], axis=0), atol=1e-5)
    assert r.exchange == {"mode": "plaintext"}


def test_the_full_case4_round_settles_its_bills_at_the_last_rents(full_case4):
    _, data, _, r, out = full_case4
    assert out.converged and "converged" in out.reason and out.settled
    assert len(out.iterations) == r.iterations + 1  # plus the closing iteration
    assert out.iterations[-2].answer.closing and out.iterations[-1].answer.final
    assert out.final_prices == price_to_fixed(r.rents)  # the operator's last broadcast
    assert out.reveals == [b.vector() for b in r.bills]
    s = out.settlement
    assert _balanced(s) and set(s.payees) == {"operator", "centre", "grid"}
    bills = np.array(s.bills)  # per prosumer: rent, usage, transmission, grid, p2p (positive = paid)
    assert bills.shape == (10, len(ITEMS)) and bills.sum(axis=1).tolist() == s.amounts
    rent, usage, p2p = (bills[:, ITEMS.index(k)] for k in ("rent", "usage", "p2p"))
    assert s.payees["operator"] == -int(rent.sum() + usage.sum()) < 0  # the operator receives
    assert p2p.sum() == 0  # P2P payments only move money between prosumers
    # the tokens are the allocation's CNY up to the fixed point
    assert np.allclose(rent / TOKEN, r.allocation.rent, atol=1e-3)
    assert np.allclose(usage / TOKEN, r.allocation.usage, atol=1e-3)
    assert np.allclose(p2p / TOKEN, r.allocation.p2p, atol=1e-3)


def test_qp_multipliers_are_balanced_pair_prices_and_scarcity_rents(full_case4):
    _, data, q, _, _ = full_case4
    assert np.allclose(q.trades, -q.trades.transpose(1, 0, 2), atol=1e-6)
    assert np.allclose(q.pair_prices, q.pair_prices.transpose(1, 0, 2))
    assert abs(q.allocation.p2p.sum()) < 1e-3  # P2P payments only move money between prosumers
    traded = np.abs(q.trades) > 1e-3  # a traded pair's price lies inside the grid band
    band = np.broadcast_to(data.retail, q.pair_prices.shape)
    assert np.all(q.pair_prices[traded] <= band[traded] + 1e-6)
    assert np.all(q.pair_prices[traded] >= data.feed_in.min() - 1e-6)
    # the energy capacity is scarce: the rent exceeds the affine price at the total
    assert q.capacities[:, 0].sum() == pytest.approx(data.storage.energy_kwh, abs=1e-4)
    assert q.scarcity[0] > 0 and q.rents[0] == pytest.approx(data.storage.energy_price_full + q.scarcity[0])


# ---- the four cases ----------------------------------------------------------------------------
def test_case4_is_cheapest_and_nobody_pays_more_than_grid_only(table):
    tot = {c: r.allocation.total for c, r in table.results.items()}
    assert tot[4] < min(tot[2], tot[3]) and max(tot[2], tot[3]) < tot[1]
    c1 = table.results[1].allocation.cost
    for c in (2, 3, 4):
        assert np.all(table.results[c].allocation.cost <= c1 + 1e-3)
    sv = table.savings()
    assert 0 < sv[2] < sv[4] and 0 < sv[3] < sv[4]
    # adding P2P to storage (4 vs 3) helps everyone; adding storage to P2P can cost a little
    assert not [v for v in table.violations() if "P2P added" in v]


def test_a_case_table_with_the_admm_case4_keeps_the_ordering_and_serialises(sc, qp_cases, full_case4, table):
    *_, r, _ = full_case4
    results = {c: _qp_case(c, q) for c, q in qp_cases.items() if c != 4}
    results[4] = CaseResult(4, CASES[4].label, r.allocation, r.objective, "admm", admm=r)
    mixed = CaseTable([p.name for p in sc.prosumers], results)
    assert not [v for v in mixed.violations() if "P2P added" in v or "not the cheapest" in v]
    assert mixed.savings()[4] == pytest.approx(table.savings()[4], abs=0.1)  # percentage points
    d = json.loads(json.dumps(mixed.to_dict()))
    assert d["cases"]["4"]["method"] == "admm" and d["cases"]["4"]["admm"]["converged"]
    assert d["cases"]["1"]["qp"]["status"] == "optimal" and set(d["savings_pct"]) == {"1", "2", "3", "4"}
    text = mixed.format()
    assert text.splitlines()[0].split()[1:] == ["case", "1", "case", "2", "case", "3", "case", "4"]
    assert all(p.name in text for p in sc.prosumers) and "saving vs 1" in text


def test_the_case4_summary_serialises_for_run_json(sc, qp_cases, full_case4):
    *_, r, out = full_case4
    job = MECHANISM.prepare(sc, {"case": "4"})
    assert job.labels == ["case 4: P2P and shared storage"] and job.state["cases"] == [4]
    summary = MECHANISM.summarise(job, [out], [], {1: qp_cases[1], 4: qp_cases[4]})
    d = json.loads(json.dumps(summary.details))
    assert d["bill_items"] == list(ITEMS) and abs(d["reference_gap_pct"]["4"]) < 100 * GAP
    assert set(d["cases"]) == {"1", "4"} and d["cases"]["1"]["method"] == "qp"
    prosumers = [p for p in summary.parties if p.role == "prosumer"]
    assert [p.name for p in prosumers] == [p.name for p in sc.prosumers]
    assert [p.name for p in summary.parties[10:]] == ["operator", "centre", "grid"]
    for p, amount in zip(prosumers, out.settlement.amounts):
        assert p.cost_shared <= p.cost_alone + 1e-3
        assert sum(p.bill.values()) == pytest.approx(amount / TOKEN, abs=1e-9)
    assert "below grid only" in summary.headline


# ---- degenerate inputs ---------------------------------------------------------------------------
def test_one_prosumer_has_no_p2p_partner_and_case4_reduces_to_case3(sc, settings):
    one = sc.subset([8])
    data, q, r, _ = _admm_vs_qp(one, 4, settings, hours=range(24))
    assert data.pairs == () and np.all(r.trades == 0)
    _assert_matches(q, r, settings)
    q3 = centralized_qp(*build_market(one, 3))
    assert q.objective == pytest.approx(q3.objective, rel=1e-6)


def test_zero_storage_capacity_rents_nothing_and_equals_case2(sc, settings):
    small = sc.subset([0, 3, 8], storage=replace(sc.storage, energy_kwh=0.0, power_kw=0.0))
    data, q, r, _ = _admm_vs_qp(small, 4, settings, hours=range(6, 22))
    _assert_matches(q, r, settings)
    assert np.all(np.abs(r.capacities) <= settings.primal_tol)
    q2 = centralized_qp(*build_market(small, 2, hours=range(6, 22)))
    assert r.allocation.total == pytest.approx(q2.allocation.total, rel=GAP)


def test_all_pv_community_converges_to_the_qp(sc, settings):
    pv = sc.subset([1, 4, 8, 9])
    assert all(p.wind_kw == 0 for p in pv.prosumers)
    _, q, r, _ = _admm_vs_qp(pv, 4, settings, hours=range(5, 21))
    _assert_matches(q, r, settings)


def test_grid_only_case_needs_one_iteration(sc, settings):
    _, q, r, out = _admm_vs_qp(sc.subset([0, 1]), 1, settings)
    assert r.iterations == 1 and r.converged
    assert r.objective == pytest.approx(q.objective, rel=1e-6)
    # the first message is already the bill: one round iteration, settled with the grid only
    assert len(out.iterations) == 1 and out.converged and out.settled and "nothing to coordinate" in out.reason
    bills = np.array(out.settlement.bills)
    grid = ITEMS.index("grid")
    assert np.all(np.delete(bills, grid, axis=1) == 0)
    assert out.settlement.payees["grid"] == -int(bills[:, grid].sum()) and _balanced(out.settlement)


def test_an_admm_that_reaches_the_cap_is_closed_without_settlement(sc, settings):
    models, data = build_market(sc.subset([0, 8]), 4, hours=range(10, 14))
    r, out = solve_admm(models, data, replace(settings, max_iterations=3))
    assert not r.converged and not out.converged and "iteration cap 3 reached" in out.reason
    assert r.iterations == 3 and len(out.iterations) == 4  # 3 x-updates, then the closing iteration
    assert out.settlement is None  # nothing traded, every deposit returned


# ---- private mode --------------------------------------------------------------------------------
class _Recording:
    """A transport that keeps every iteration's delivery (what the operator and partners got)."""

    def exchange(self, k, contributions):
        delivery = super().exchange(k, contributions)
        self.deliveries.append(delivery)
        self.contributions.append(contributions)
        return delivery

    def open(self, setup, parent=None):
        self.deliveries, self.contributions = [], []
        super().open(setup, parent)


class RecordingPlain(_Recording, PlainTransport):
    pass


class RecordingPrivate(_Recording, PrivateTransport):
    pass


@pytest.fixture(scope="module")
def private_pair(sc, settings):
    small = sc.subset([0, 2, 8])
    models, data = build_market(small, 4, hours=range(10, 16))
    plain = solve_admm(models, data, settings, transport=RecordingPlain())
    private = solve_admm(models, data, settings, transport=RecordingPrivate(1024))
    return models, data, plain, private


def test_private_mode_reaches_the_plaintext_solution(private_pair):
    _, _, (plain, plain_out), (private, private_out) = private_pair
    assert private.iterations == plain.iterations and private.converged
    # every transport carries the same integers and every x-update is a pure function of them
    np.testing.assert_array_equal(private.primal_residuals, plain.primal_residuals)
    np.testing.assert_array_equal(private.dual_residuals, plain.dual_residuals)
    np.testing.assert_array_equal(private.capacities, plain.capacities)
    np.testing.assert_array_equal(private.trades, plain.trades)
    np.testing.assert_array_equal(private.pair_prices, plain.pair_prices)
    assert private.objective == plain.objective
    assert [it.prices for it in private_out.iterations] == [it.prices for it in plain_out.iterations]
    assert [it.sums for it in private_out.iterations] == [it.sums for it in plain_out.iterations]
    assert private_out.reveals == plain_out.reveals and private_out.settlement == plain_out.settlement
    assert (private.exchange, plain.exchange) == ({"mode": "private"}, {"mode": "plaintext"})
    assert private_out.seconds["encrypt"] > 0 and private_out.seconds["decrypt"] > 0


def test_the_operator_decrypts_only_sums_and_pair_messages_are_sealed(private_pair):
    _, data, (_, plain_out), (_, private_out) = private_pair
    plain, private = plain_out.transport, private_out.transport
    # plain ADMM: the operator sees every prosumer's vector (the leak of the paper's appendix B)
    assert all(len(d.individual) == data.n for d in plain.deliveries)
    # the private protocol: the operator gets sums only, each partner exactly its w_ij
    assert all(d.individual is None and len(d.sums) == 3 + data.T for d in private.deliveries)
    assert [d.received for d in private.deliveries] == [d.received for d in plain.deliveries]
    assert all(set(d.received[j]) == set(range(data.n)) - {j} for d in private.deliveries for j in range(data.n))
    # one masked message decrypts to noise, not to its vector (the closing one: a prosumer's bill slots)
    sealed = private.sealed[0]
    single, _, _, _ = private.coordinator_keys.open(int.from_bytes(sealed.ciphertext, "big"), private.layout)
    vec = private.contributions[-1][0].sums
    assert np.abs(np.array(single) - np.array(vec)).max() > 10**6  # more than 1 kWh off
    # every pad-sealed 64-bit word differs from the word it hides
    clear = [w for j in sorted(private.contributions[-1][0].pairs) for w in private.contributions[-1][0].pairs[j]]
    words = [int.from_bytes(sealed.pairs[8 * i:8 * i + 8], "big") for i in range(len(sealed.pairs) // 8)]
    assert len(words) == len(clear) == (data.n - 1) * data.T
    assert all(w != v % (1 << PAD_BITS) for w, v in zip(words, clear))


def test_a_finished_round_can_be_reassembled_from_its_outcome(private_pair):
    _, _, (plain, plain_out), _ = private_pair
    again = admm_result(plain_out)
    np.testing.assert_array_equal(again.trades, plain.trades)
    assert again.iterations == plain.iterations and again.objective == plain.objective
    assert json.loads(json.dumps(plain.to_dict()))["converged"]


# ---- privacy experiment ---------------------------------------------------------------------------
def test_operator_infers_the_gradient_in_plain_admm_but_not_in_the_private_protocol(sc, settings):
    models, data = build_market(sc.subset([0, 1, 8]), 4, hours=range(8, 20))
    res = privacy_experiment(models, data, settings, target=1, key_bits=1024)
    s = res.summary()
    assert s["plain"]["mean"] < 1e-3  # the leak: exact up to the fixed point
    assert s["private"]["median"] > 0.5 and s["private"]["share_above_20pct"] > 0.8
    assert res.plain_iterations > 0 and res.private_iterations > 0
    assert json.loads(json.dumps(res.to_dict()))["target"] == 1


def test_the_privacy_experiment_needs_the_shared_store(sc, settings):
    models, data = build_market(sc.subset([0, 1]), 2, hours=range(8, 10))
    with pytest.raises(ValueError, match="needs the shared store"):
        privacy_experiment(models, data, settings)


# ---- parallel x-updates ------------------------------------------------------------------------------
def test_prosumer_solves_on_a_dask_cluster_follow_the_serial_trajectory(private_pair, settings):
    from offchain.protocol.executors import DaskExecutor

    models, data, (serial, serial_out), _ = private_pair
    executor = DaskExecutor(2)
    try:
        assert executor.workers == 2
        dask, dask_out = solve_admm(models, data, settings, executor=executor)
    finally:
        executor.close()
    assert dask.iterations == serial.iterations
    np.testing.assert_array_equal(dask.trades, serial.trades)
    np.testing.assert_array_equal(dask.capacities, serial.capacities)
    assert [it.prices for it in dask_out.iterations] == [it.prices for it in serial_out.iterations]
    assert dask_out.settlement == serial_out.settlement


def test_a_dask_executor_reused_for_another_market_solves_with_that_markets_models(sc, settings):
    from offchain.protocol.executors import DaskExecutor

    first = build_market(sc.subset([0, 8]), 4, hours=range(16, 19))
    second = build_market(sc.subset([0, 8]), 4, hours=range(10, 13))  # same shapes, other hours
    serial, _ = solve_admm(*second, settings)
    executor = DaskExecutor(2)
    try:
        solve_admm(*first, settings, executor=executor)
        reused, _ = solve_admm(*second, settings, executor=executor)
    finally:
        executor.close()
    assert reused.iterations == serial.iterations
    np.testing.assert_array_equal(reused.trades, serial.trades)
