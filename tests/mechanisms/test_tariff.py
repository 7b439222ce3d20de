"""Tariff iteration: the coordinator's state machine, its settlement rule, the round on the
community (plaintext and private transports) and the centralised reference."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from offchain import registry
from offchain.mechanisms.tariff.market import (
    TariffCoordinator,
    TariffIteration,
    TariffProsumer,
    TariffRule,
    aggregate,
    centralized_reference,
    quantise,
    settlement,
)
from offchain.privacy.packing import PackingError
from offchain.protocol.driver import run_round
from offchain.protocol.transport import PlainTransport, PrivateTransport
from offchain.units import AMOUNT_PER_PRICE_ENERGY, energy_from_fixed, energy_to_fixed, price_from_fixed
from offchain.units import price_to_fixed as to_fixed

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "community10.toml"
MECHANISM = registry.get("tariff")

# Observed on community10 (seed 20240715): 11 iterations, max |tariff - reference dual| 2.6e-4
# CNY/kWh, community total within 1e-7 (relative) of the centralised optimum. The asserted
# tolerances leave room for solver and platform noise.
TARIFF_GAP_TOL = 2e-3  # CNY/kWh
TOTAL_GAP_TOL = 1e-4  # relative
M = 10**6  # fixed point


# ---------------------------------------------------------------------------------------------
# state machine on synthetic, coupled linear responses (no solver)
# ---------------------------------------------------------------------------------------------
def _rule(T=24, **kw):
    base = dict(floor=np.full(T, 0.3), cap=np.full(T, 1.0), step=1e-3, imbalance_tol=1e-3,
                tariff_tol=1e-5, max_iterations=60)
    base.update(kw)
    return TariffRule(**base)


def _coupled_response(T=24, seed=0):
    """D(lambda) = M (lambda* - lambda) with M symmetric positive definite, coupled hours."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(T, T))
    m = 200 * (a @ a.T) / T + 50 * np.eye(T)
    star = rng.uniform(0.4, 0.9, T)
    return (lambda lam: m @ (star - lam)), star, m


@pytest.mark.parametrize("method", ["bfgs", "secant"])
def test_state_machine_converges_to_the_clearing_tariff_on_coupled_linear_responses(method):
    f, star, m = _coupled_response()
    # the 1e-6 price quantum moves D by up to ||M|| * 1e-6 (~1e-3 kW here): tolerance above that
    safe = 1.0 / np.linalg.eigvalsh(m).max()  # what TariffRule.from_scenario derives from q_i
    rule = _rule(step=safe, step_min=safe, step_max=50 * safe,
                 method=method, max_iterations=300, imbalance_tol=0.02, tariff_tol=1e-4)
    it = TariffIteration(rule, np.full(24, 0.65))
    while True:
        dec = it.observe(f(it.tariff))
        if dec.next_tariff is None:
            break
    assert dec.converged, dec.reason
    # |D| <= 0.02 kW and the smallest eigenvalue of M is 50 kW per CNY/kWh
    assert np.abs(it.tariff - star).max() < 0.02 / 50
    if method == "bfgs":
        assert it.iteration <= 30


def test_tariffs_are_quantised_to_the_on_chain_unit_and_stay_in_the_band():
    f, _, _ = _coupled_response(seed=1)
    rule = _rule(floor=np.full(24, 0.5), cap=np.full(24, 0.7))
    it = TariffIteration(rule, np.full(24, 0.123456789))
    assert np.array_equal(it.tariff, np.full(24, 0.5))  # clipped into the band
    for _ in range(10):
        dec = it.observe(f(it.tariff))
        if dec.next_tariff is None:
            break
        t = dec.next_tariff
        assert np.array_equal(t, quantise(t)) and (t >= 0.5).all() and (t <= 0.7).all()
        assert to_fixed(t) == [int(round(v * 1e6)) for v in t]


def test_an_hour_pinned_at_a_band_edge_with_outward_imbalance_counts_as_settled():
    rule = _rule(T=2, floor=np.array([0.3, 0.3]), cap=np.array([1.0, 1.0]), tariff_tol=1e-3)
    it = TariffIteration(rule, np.array([1.0, 0.5]))
    dec = it.observe(np.array([25.0, 0.0]))  # excess demand at the cap: grid covers it at retail
    assert dec.converged and dec.next_tariff is None
    assert dec.max_imbalance == 0.0
    it2 = TariffIteration(rule, np.array([0.3, 0.5]))
    dec2 = it2.observe(np.array([25.0, 0.0]))  # excess demand at the floor: must rise
    assert not dec2.converged and dec2.next_tariff[0] > 0.3


def test_iteration_cap_stops_without_convergence_and_says_so():
    rule = _rule(T=1, floor=np.array([0.0]), cap=np.array([1.0]), step=1e-6, step_min=1e-6,
                 step_max=1e-6, max_iterations=3, method="secant")
    it = TariffIteration(rule, np.array([0.5]))
    decisions = [it.observe(np.array([10.0])) for _ in range(3)]
    assert [d.converged for d in decisions] == [False] * 3
    assert decisions[-1].next_tariff is None and "cap" in decisions[-1].reason
    with pytest.raises(RuntimeError):
        it.observe(np.array([0.0]))


def test_replay_from_public_aggregates_reproduces_every_published_tariff():
    f, _, _ = _coupled_response(seed=2)
    rule = _rule()
    it = TariffIteration(rule, np.full(24, 0.6))
    published, aggregates = [it.tariff.copy()], []
    while True:
        d = f(it.tariff)
        aggregates.append(d)
        dec = it.observe(d)
        if dec.next_tariff is None:
            break
        published.append(dec.next_tariff)
    audit = TariffIteration.replay(rule, np.full(24, 0.6), aggregates)
    assert [to_fixed(t) for t, _ in audit.history] == [to_fixed(t) for t in published]
    assert audit.decisions[-1].converged == dec.converged


def test_rule_survives_its_published_dict_for_the_auditor():
    rule = _rule(method="secant", step_min=1e-4, step=2e-3)
    back = TariffRule.from_dict(json.loads(json.dumps(rule.to_dict())))
    assert back.to_dict() == rule.to_dict()
    f, _, _ = _coupled_response(seed=3)
    a, b = TariffIteration(rule, np.full(24, 0.6)), TariffIteration(back, np.full(24, 0.6))
    for _ in range(5):
        assert to_fixed(a.observe(f(a.tariff)).next_tariff) == to_fixed(b.observe(f(b.tariff)).next_tariff)


def test_aggregate_is_the_exact_fixed_point_sum():
    xs = [np.array([0.1234567, -2.0]), np.array([1e-7, 2.0000004])]
    assert np.array_equal(aggregate(xs), np.array([0.123457, 0.0]))


# ---------------------------------------------------------------------------------------------
# the settlement rule (positive = paid, token base units)
# ---------------------------------------------------------------------------------------------
def test_settlement_of_a_shortage_charges_buyers_the_residual_at_retail_and_pays_sellers_the_tariff():
    # one period, tariff 0.5, band [0.3, 1.0]: A buys 2 kWh, B sells 1 kWh, the grid covers 1 kWh
    amounts, grid = settlement([[2 * M], [-M]], [500_000], [300_000], [1_000_000])
    assert amounts == [(500_000 * M + 1_000_000 * M) * AMOUNT_PER_PRICE_ENERGY,  # 1 kWh at 0.5, 1 at retail
                       -500_000 * M * AMOUNT_PER_PRICE_ENERGY]  # received: 1 kWh at 0.5
    assert grid == -1_000_000 * M * AMOUNT_PER_PRICE_ENERGY  # the grid account receives retail for 1 kWh
    assert sum(amounts) + grid == 0


def test_settlement_of_a_surplus_pays_sellers_the_residual_at_feed_in_and_charges_buyers_the_tariff():
    # A buys 1 kWh, B sells 3 kWh: 2 kWh go to the grid at the feed-in price 0.3
    amounts, grid = settlement([[M], [-3 * M]], [500_000], [300_000], [1_000_000])
    assert amounts == [500_000 * M * AMOUNT_PER_PRICE_ENERGY,
                       -(500_000 * M + 300_000 * 2 * M) * AMOUNT_PER_PRICE_ENERGY]
    assert grid == 300_000 * 2 * M * AMOUNT_PER_PRICE_ENERGY  # the grid account pays feed-in for 2 kWh
    assert sum(amounts) + grid == 0


def test_settlement_shares_the_residual_pro_rata_rounding_down_and_still_sums_to_zero():
    values = [[1, 0, 3], [1, 5, -2], [1, -7, 0]]  # micro-kWh: odd shares that cannot split evenly
    amounts, grid = settlement(values, [333_333, 500_001, 400_000], [300_000] * 3, [1_000_001] * 3)
    assert sum(amounts) + grid == 0
    # period 0: three equal buyers share 3 micro-kWh at retail: each pays exactly a third
    p0, _ = settlement([[v[0]] for v in values], [333_333], [300_000], [1_000_001])
    assert p0 == [1_000_001 * AMOUNT_PER_PRICE_ENERGY] * 3
    assert settlement([[0], [0]], [500_000], [300_000], [1_000_000]) == ([0, 0], 0)


# ---------------------------------------------------------------------------------------------
# the 10-prosumer community: one plaintext round through the driver
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def community():
    mechanism, sc = registry.load_scenario(SCENARIO)
    assert mechanism is MECHANISM
    job = MECHANISM.prepare(sc, {})
    setup = job.rounds[-1]()
    outcome = run_round(setup, PlainTransport())
    reference = job.reference()
    return sc, job, outcome, reference


def _costs(job, outcome):
    alone = np.array([m.alone().objective for m in job.state["models"]])
    shared = np.array([p.response.objective for p in outcome.setup.participants])
    return alone, shared


def test_prepare_builds_fresh_rounds_of_the_scenarios_prosumers(community):
    sc, job, outcome, _ = community
    a, b = job.rounds[-1](), job.rounds[-1]()
    assert a.participants is not b.participants and a.coordinator is not b.coordinator
    assert all(isinstance(p, TariffProsumer) and p.response is None for p in a.participants)
    assert isinstance(a.coordinator, TariffCoordinator) and a.coordinator.iteration.iteration == 0
    assert [p.name for p in a.participants] == [p.name for p in sc.prosumers]
    rule = job.state["rule"]
    assert (a.slots, a.max_iterations, a.payees) == (24, rule.max_iterations, ["grid"])
    assert a.price_floor == to_fixed(sc.tariff.feed_in) and a.price_cap == to_fixed(sc.tariff.retail)
    assert a.public_rule == {"mechanism": "tariff", "rule": rule.to_dict()}
    assert a.coordinator.start() == to_fixed(quantise(sc.initial_tariff()))


def test_plaintext_round_converges_on_community10_within_20_iterations(community):
    sc, job, out, _ = community
    rule = job.state["rule"]
    assert out.converged, out.reason
    assert "converged" in out.reason and len(out.iterations) <= 20
    tariff = price_from_fixed(out.final_prices)
    imbalance = energy_from_fixed(out.iterations[-1].sums)
    it = TariffIteration(rule, sc.initial_tariff())
    assert it.settled(tariff, imbalance).all()
    interior = ~it.pinned(tariff, imbalance)
    assert np.abs(imbalance[interior]).max() <= sc.iteration.imbalance_tol
    assert (tariff >= rule.floor).all() and (tariff <= rule.cap).all()
    coordinator = out.setup.coordinator.iteration  # its float tariff lies on the on-chain grid
    assert np.array_equal(coordinator.tariff, quantise(coordinator.tariff))
    assert to_fixed(coordinator.tariff) == out.final_prices == to_fixed(tariff)
    # the final prices are the ones the final schedules respond to: the last iteration's
    assert out.final_prices == out.iterations[-1].prices
    assert [r.iteration for r in out.iterations] == list(range(len(out.iterations)))
    assert out.iterations[-1].answer.final and not any(r.answer.final for r in out.iterations[:-1])


def test_the_coordinator_saw_only_the_exact_fixed_point_sums_of_the_best_responses(community):
    _, _, out, _ = community
    parts = out.setup.participants
    assert all(p.response.x.shape == (24,) for p in parts)
    reveals = [energy_to_fixed(p.response.x) for p in parts]
    assert out.reveals == reveals  # each prosumer commits to its last contribution
    assert out.iterations[-1].sums == [sum(col) for col in zip(*reveals)]
    # the coordinator's state machine published exactly the prices the round used
    history = out.setup.coordinator.iteration.history
    assert [to_fixed(t) for t, _ in history] == [r.prices for r in out.iterations]
    assert [energy_to_fixed(d) for _, d in history] == [r.sums for r in out.iterations]


def test_the_converged_round_settles_in_tokens_that_sum_to_zero(community):
    sc, job, out, _ = community
    assert out.settled and out.settlement.payees.keys() == {"grid"}
    s = out.settlement
    assert len(s.amounts) == 10 and sum(s.amounts) + s.payees["grid"] == 0
    floor, cap = to_fixed(sc.tariff.feed_in), to_fixed(sc.tariff.retail)
    assert (s.amounts, s.payees["grid"]) == settlement(out.reveals, out.final_prices, floor, cap)
    # positive = paid: the prosumers who net-buy at the tariff pay, those who net-sell receive
    internal = [sum(x * p for x, p in zip(v, out.final_prices)) for v in out.reveals]
    assert all((a > 0) == (i > 0) for a, i in zip(s.amounts, internal) if abs(i) > 10**12)


def test_no_prosumer_is_worse_off_than_alone_and_the_community_saves(community):
    _, job, out, _ = community
    alone, shared = _costs(job, out)
    assert (shared <= alone).all()
    assert shared.sum() < alone.sum() - 1.0  # strictly, by more than 1 CNY a day
    assert 100 * (alone.sum() - shared.sum()) / abs(alone.sum()) > 5.0


def test_converged_tariff_matches_the_centralised_dual_and_total_cost(community):
    _, job, out, ref = community
    rule = job.state["rule"]
    assert (ref.tariff >= rule.floor - 1e-6).all() and (ref.tariff <= rule.cap + 1e-6).all()
    assert np.abs(price_from_fixed(out.final_prices) - ref.tariff).max() <= TARIFF_GAP_TOL
    _, shared = _costs(job, out)
    gap = abs(shared.sum() - ref.total_objective) / abs(ref.total_objective)
    assert gap <= TOTAL_GAP_TOL


def test_the_round_summary_serialises_for_run_json(community):
    _, job, out, ref = community
    summary = MECHANISM.summarise(job, [out], [out], ref)
    d = json.loads(json.dumps(summary.details))
    assert len(d["final_tariff"]) == 24 and len(d["imbalance_kw"]) == len(out.iterations)
    assert d["reference"]["status"] == "optimal" and d["reference"]["max_tariff_gap"] <= TARIFF_GAP_TOL
    assert d["plaintext"]["converged"] and d["plaintext"]["max_tariff_gap_vs_private"] == 0.0
    assert len(d["schedules"]) == 10 and d["community"]["saving_pct"] > 5.0
    assert json.loads(json.dumps(ref.to_dict()))["status"] == "optimal"
    prosumers = [p for p in summary.parties if p.role == "prosumer"]
    assert len(prosumers) == 10 and summary.parties[-1].name == "grid"
    # each bill splits the payment into internal trades and a grid share (tokens, positive = paid)
    for p, amount in zip(prosumers, out.settlement.amounts):
        assert set(p.bill) == {"internal", "grid share"}
        assert sum(p.bill.values()) == pytest.approx(amount / 1e18, abs=1e-9)
    assert "saving" in summary.headline


def test_a_round_that_reaches_the_cap_closes_without_trading_unless_told_to_settle(community):
    sc, job, _, _ = community
    rule = replace(job.state["rule"], max_iterations=2)
    outcomes = []
    for settle in (False, True):
        setup = job.rounds[-1]()
        setup.coordinator, setup.max_iterations = TariffCoordinator(rule, sc.initial_tariff()), 2
        outcomes.append(run_round(setup, PlainTransport(), settle_unconverged=settle))
    closed, forced = outcomes
    assert not closed.converged and "cap 2 reached" in closed.reason
    assert len(closed.iterations) == 2 and closed.settlement is None and not closed.settled
    assert not forced.converged and forced.settled  # settled at the last prices anyway
    assert sum(forced.settlement.amounts) + forced.settlement.payees["grid"] == 0
    assert forced.final_prices == closed.final_prices == closed.iterations[-1].prices


def test_progress_and_observer_see_every_iteration_and_plaintext_shows_individual_vectors(community):
    _, job, full, _ = community
    seen, viewed = [], []
    setup = job.rounds[-1]()
    out = run_round(setup, PlainTransport(), progress=lambda k, answer: seen.append((k, answer.final)),
                    observer=lambda k, s, delivery, answer: viewed.append(delivery))
    assert seen == [(k, k == len(full.iterations) - 1) for k in range(len(full.iterations))]
    assert [r.prices for r in out.iterations] == [r.prices for r in full.iterations]  # fresh agents, same round
    # the plaintext transport hands the coordinator every prosumer's vector (the reference mode)
    assert all(len(d.individual) == 10 for d in viewed)
    assert viewed[-1].individual == out.reveals and viewed[-1].received == [{}] * 10


# ---------------------------------------------------------------------------------------------
# private mode: masked + Paillier in process
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def private_round(community):
    _, job, _, _ = community
    deliveries = []
    out = run_round(job.rounds[-1](), PrivateTransport(2048),
                    observer=lambda k, s, delivery, answer: deliveries.append(delivery))
    return out, deliveries


def test_private_and_plaintext_rounds_follow_the_same_trajectory_and_settlement(community, private_round):
    _, _, plain, _ = community
    private, _ = private_round
    assert private.converged and private.reason == plain.reason
    assert [r.prices for r in private.iterations] == [r.prices for r in plain.iterations]
    assert [r.sums for r in private.iterations] == [r.sums for r in plain.iterations]
    assert private.final_prices == plain.final_prices and private.reveals == plain.reveals
    assert private.settlement == plain.settlement
    assert private.transport.kind == "private" and plain.transport.kind == "plaintext"
    assert {"encrypt", "decrypt", "setup", "solve", "total"} <= set(private.seconds)


def test_the_private_coordinator_decrypts_only_the_sum(private_round):
    out, deliveries = private_round
    t = out.transport
    assert all(d.individual is None and len(d.sums) == 24 for d in deliveries)
    assert t.layout.periods == 24 and t.coordinator_keys.public.n.bit_length() == 2048
    # one participant's ciphertext alone decrypts to masked noise, not to its vector
    sealed = t.sealed[0]
    single, _, _, _ = t.coordinator_keys.open(int.from_bytes(sealed.ciphertext, "big"), t.layout)
    assert sealed.reveal == out.reveals[0]
    assert np.abs(np.array(single) - np.array(out.reveals[0])).max() > 10**9


def test_a_key_too_small_for_the_slot_layout_is_refused_before_any_solve(community):
    _, job, _, _ = community
    setup = job.rounds[-1]()
    with pytest.raises(PackingError, match="24 slots and the check slot of 68 bits do not fit a 1024-bit key"):
        run_round(setup, PrivateTransport(1024))
    assert all(p.response is None for p in setup.participants)


# ---------------------------------------------------------------------------------------------
def test_a_scaled_community_of_50_converges_within_the_cap_to_the_reference():
    """Scaling check kept small for CI (200 prosumers: 14 iterations, measured in the report)."""
    _, sc = registry.load_scenario(SCENARIO, prosumers=50)
    job = MECHANISM.prepare(sc, {})
    out = run_round(job.rounds[-1](), PlainTransport())
    assert out.converged, out.reason
    assert len(out.iterations) <= 20
    alone, shared = _costs(job, out)
    assert (shared <= alone).all()
    ref = centralized_reference(job.state["models"], sc.market)
    assert np.abs(price_from_fixed(out.final_prices) - ref.tariff).max() <= TARIFF_GAP_TOL
