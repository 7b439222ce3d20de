"""The audit on storage + P2P rounds: an honest private ADMM round passes every check, from chain
data alone; a dishonest operator (rents off by one unit, a stop too early or too late) is flagged."""
from __future__ import annotations

import dataclasses
import json

import pytest

from offchain.audit.command import run_audit
from offchain.audit.history import MarketHistory
from offchain.audit.reader import read_market_transactions
from offchain.chain.backends import connect
from offchain.framework import Answer
from offchain.mechanisms.storage import admm_result, admm_setup, audit as storage_audit
from offchain.mechanisms.storage.audit import StorageRules
from offchain.mechanisms.storage.market import AdmmSettings, StorageOperatorAgent
from offchain.models.storage_p2p import build_market
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport
from offchain.registry import load_scenario

from ..conftest import ROOT

SCENARIO = ROOT / "scenarios" / "storage10.toml"
TAMPERED_ITERATION = 2
SHORT = 6  # iteration cap of the dishonest rounds (they end at the cap: fast)


@pytest.fixture(scope="module")
def market():
    sc = load_scenario(SCENARIO)[1].subset([0, 1, 5])
    models, data = build_market(sc, 4, hours=range(12, 20))
    return models, data, AdmmSettings.from_scenario(sc)


class DishonestOperator(StorageOperatorAgent):
    """Publishes energy rents one unit (1e-6 token per kWh) above its closed form at one iteration."""

    def answer(self, k, sums):
        a = super().answer(k, sums)
        if k == TAMPERED_ITERATION and a.prices is not None:
            return dataclasses.replace(a, prices=[a.prices[0] + 1, a.prices[1]])
        return a


def _round(market, settings=None, coordinator=None, run_settings=None, public_rule=None):
    """A round on its own chain, optionally with a dishonest operator or a run that uses other
    settings (``run_settings``) than the ones the round publishes (``settings``); its outcome and
    audit findings. Rounds that end at their cap are settled anyway (--settle-unconverged)."""
    models, data, published = market
    settings = settings or dataclasses.replace(published, max_iterations=SHORT)
    setup = admm_setup(models, data, run_settings or settings)
    setup.public_rule = public_rule or admm_setup(models, data, settings).public_rule
    setup.max_iterations = max(settings.max_iterations, (run_settings or settings).max_iterations) + 1
    if coordinator is not None:
        setup.coordinator = coordinator(data, run_settings or settings)
    chain = connect(None)
    out = run_round(setup, ChainTransport(chain, key_bits=1024), settle_unconverged=True)
    return out, run_audit(chain, out.transport.market.address)[0]


def _failed(findings):
    return [(f.check, f.iteration) for f in findings if not f.ok]


def test_an_honest_storage_round_passes_every_check(market):
    """Also: the audit's residuals (from the decrypted sums alone) are the run's, bit for bit. The one
    test of the full, converging round (so that it runs once, however the tests are distributed)."""
    models, data, settings = market
    chain = connect(None)
    out = run_round(admm_setup(models, data, settings), ChainTransport(chain, key_bits=1024))
    res, t = admm_result(out), out.transport
    findings, series = run_audit(chain, t.market.address)
    assert findings and all(f.ok for f in findings), [f for f in findings if not f.ok]
    mine = [f for f in findings if f.round == t.round_id]
    assert {"coordinator key", "participants", "mask keys", "order of events", "rule contract", "update rule",
            "submissions", "aggregate", "opening proof", "check slot", "decoded sums", "operator answer", "stop rule",
            "reveals", "billed as revealed", "payments", "bills", "zero sum", "ledger"} == {f.check for f in mine}
    iterations = res.iterations  # ADMM iterations 1..K are chain iterations 0..K-1; K concludes
    assert res.converged and iterations < settings.max_iterations
    assert [f.iteration for f in mine if f.check == "operator answer"] == list(range(iterations))
    stop = [f for f in mine if f.check == "stop rule"]
    assert [f.iteration for f in stop] == [iterations] and f"one after iteration {iterations - 1}" in stop[0].detail
    assert len(series[t.round_id]["prices"]) == iterations + 1
    assert "each of the 6 payments" in next(f for f in mine if f.check == "payments").detail  # 3 + 3 payees

    history = MarketHistory(t.market.address, read_market_transactions(chain, t.market.address))
    events = history.of_round(t.round_id)
    params = next(e for e in events if e.name == "RoundCreated").args["params"]
    rules = StorageRules(json.loads(params["mechanism"]), params,
                         [e.args["participant"] for e in events if e.name == "Registered"])
    residuals = [rules._residuals(e.args["sums"]) for e in events if e.name == "Published"][1:]  # ADMM k >= 2
    assert [r for r, _ in residuals] == res.primal_residuals.tolist()
    assert [s for _, s in residuals] == res.dual_residuals.tolist()


def test_a_settlement_other_than_the_rule_is_flagged(market, monkeypatch):
    rule = storage_audit.settlement_amounts

    def off_by_one(terms, rents, reveals, p2p, members=None, standing=None):
        s = rule(terms, rents, reveals, p2p, members, standing)
        items = [dict(it) for it in s.items]
        items[1]["rent"] += 1
        return dataclasses.replace(s, amounts=[a + (i == 1) for i, a in enumerate(s.amounts)],
                                   payees={**s.payees, "operator": s.payees["operator"] - 1}, items=items)

    out, findings = _round(market)  # an honest round, capped: it ends at the cap (a legal stop)
    assert _failed(findings) == []
    monkeypatch.setattr(storage_audit, "settlement_amounts", off_by_one)
    findings, _ = run_audit(out.transport.chain, out.transport.market.address)
    bad = [f for f in findings if not f.ok]
    assert [f.check for f in bad] == ["payments", "bills"]
    assert "payment 2: on chain" in bad[0].detail and bad[0].tx and bad[0].block


def test_rents_off_by_one_unit_are_flagged_at_their_iteration(market):
    _, findings = _round(market, coordinator=DishonestOperator)
    assert _failed(findings) == [("operator answer", TAMPERED_ITERATION)]
    bad = next(f for f in findings if not f.ok)
    assert bad.tx and bad.block and "gives" in bad.detail
    stop = [f for f in findings if f.check == "stop rule"]  # the run ends at its iteration cap: a legal stop
    assert [(f.iteration, f.ok) for f in stop] == [(SHORT, True)] and "cap" in stop[0].detail


def test_a_stop_before_the_rule_allows_it_is_flagged(market):
    _, findings = _round(market, run_settings=dataclasses.replace(market[2], max_iterations=SHORT - 1))
    assert _failed(findings) == [("stop rule", SHORT - 1)]


def test_iterating_past_the_stop_rule_is_flagged(market):
    # the round publishes loose tolerances (met at chain iteration 1: conclude at 2) but keeps iterating
    loose = dataclasses.replace(market[2], max_iterations=SHORT, primal_tol=1e3, dual_tol=1e3)
    _, findings = _round(market, settings=loose, run_settings=dataclasses.replace(loose, primal_tol=0.0, dual_tol=0.0))
    assert _failed(findings) == [("stop rule", 2)]
    assert "had to conclude" in next(f for f in findings if not f.ok).detail


def test_a_storage_round_without_its_admm_data_has_only_its_settlement_verified(market):
    out, findings = _round(market, public_rule={"mechanism": "storage-p2p"})
    mine = [f for f in findings if f.round == out.transport.round_id]
    failed = [(f.check, f.detail) for f in mine if not f.ok]
    assert len(failed) == 1 and failed[0][0] == "update rule"
    assert "does not publish settings.rho_capacity" in failed[0][1] and "not checked" in failed[0][1]
    checks = {f.check for f in mine if f.ok}
    assert {"coordinator key", "participants", "order of events", "submissions", "aggregate", "opening proof",
            "check slot", "decoded sums", "reveals", "billed as revealed", "payments", "bills", "zero sum", "ledger"} <= checks
    assert all(f.ok for f in findings if f.round is None)  # token conservation
    assert isinstance(out.iterations[-1].answer, Answer)
