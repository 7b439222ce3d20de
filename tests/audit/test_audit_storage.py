"""The audit on StorageMarket rounds: an honest private ADMM round passes every check, from chain data
alone; a dishonest operator (rents off by one unit, a stop too early or too late) is flagged."""
from __future__ import annotations

import dataclasses
import json

import pytest

from offchain.audit import verify
from offchain.audit.command import run_audit
from offchain.audit.history import MarketHistory
from offchain.audit.reader import read_market_transactions
from offchain.chain.backends import connect
from offchain.chain.market import StorageMarket
from offchain.mechanisms.admm import AdmmSettings
from offchain.models.storage_p2p import build_market
from offchain.models.storage_scenario import load_storage_scenario
from offchain.protocol import storage_round
from offchain.protocol.storage_round import run_storage_round
from tests.chain import test_storage_market as sm

from ..conftest import ROOT

SCENARIO = ROOT / "scenarios" / "storage10.toml"
TAMPERED_ITERATION = 2
SHORT = 6  # iteration cap of the dishonest rounds (they end at the cap: fast)


@pytest.fixture(scope="module")
def market():
    sc = load_storage_scenario(SCENARIO).subset([0, 1, 5])
    models, data = build_market(sc, 4, hours=range(12, 20))
    return models, data, AdmmSettings.from_scenario(sc)


def _round(market, settings=None, exchange=None, run_settings=None):
    """A round on its own chain, optionally with a dishonest exchange or a run that uses other settings
    (``run_settings``) than the ones the round publishes (``settings``); its audit findings."""
    models, data, published = market
    settings = settings or dataclasses.replace(published, max_iterations=SHORT)
    with pytest.MonkeyPatch.context() as mp:
        if exchange is not None:
            mp.setattr(storage_round, "ChainExchange", exchange)
        if run_settings is not None:
            run = storage_round.run_admm
            mp.setattr(storage_round, "run_admm", lambda models, data, _, **kw: run(models, data, run_settings, **kw))
        chain = connect(None)
        res = run_storage_round(chain, models, data, settings, key_bits=1024)
    return res, run_audit(chain, res.market.address)[0]


def _failed(findings):
    return [(f.check, f.iteration) for f in findings if not f.ok]


def test_an_honest_storage_round_passes_every_check(market):
    """Also: the audit's residuals (from the decrypted sums alone) are the run's, bit for bit. The one
    test of the full, converging round (so that it runs once, however the tests are distributed)."""
    models, data, settings = market
    chain = connect(None)
    res = run_storage_round(chain, models, data, settings, key_bits=1024)
    findings, series = run_audit(chain, res.market.address)
    assert findings and all(f.ok for f in findings), [f for f in findings if not f.ok]
    mine = [f for f in findings if f.round == res.round_id]
    assert {"coordinator key", "participants", "order of events", "update rule", "submissions", "aggregate",
            "opening proof", "decoded sums", "operator answer", "stop rule", "billed as committed", "payments",
            "bills", "zero sum", "ledger"} == {f.check for f in mine}
    iterations = res.admm.iterations  # ADMM iterations 1..K are chain iterations 0..K-1; K concludes
    assert res.admm.converged and iterations < settings.max_iterations
    assert [f.iteration for f in mine if f.check == "operator answer"] == list(range(iterations))
    stop = [f for f in mine if f.check == "stop rule"]
    assert [f.iteration for f in stop] == [iterations] and f"one after iteration {iterations - 1}" in stop[0].detail
    assert len(series[res.round_id]["tariff"]) == iterations + 1
    assert "each of the 6 transfers" in next(f for f in mine if f.check == "payments").detail  # 3 + 3 payees

    history = MarketHistory(res.market.address, read_market_transactions(chain, res.market.address))
    events = history.of_round(res.round_id)
    params = next(e for e in events if e.name == "RoundCreated").args["params"]
    rules = verify.StorageRules(json.loads(params["mechanism"]), params,
                                [e.args["participant"] for e in events if e.name == "Registered"])
    residuals = [rules._residuals(e.args["sums"]) for e in events if e.name == "Published"][1:]  # ADMM k >= 2
    assert [r for r, _ in residuals] == res.admm.primal_residuals.tolist()
    assert [s for _, s in residuals] == res.admm.dual_residuals.tolist()


def test_a_settlement_other_than_the_rule_is_flagged(market, monkeypatch):
    rule = verify.settlement_amounts

    def off_by_one(terms, rents, reveals, p2p):
        s = rule(terms, rents, reveals, p2p)
        items = [dict(it) for it in s.items]
        items[1]["rent"] -= 1
        return dataclasses.replace(s, amounts=[a - (i == 1) for i, a in enumerate(s.amounts)],
                                   payees={**s.payees, "operator": s.payees["operator"] + 1}, items=items)

    res, findings = _round(market)  # an honest round, capped: it ends at the cap (a legal stop)
    assert _failed(findings) == []
    monkeypatch.setattr(verify, "settlement_amounts", off_by_one)
    findings, _ = run_audit(res.market.chain, res.market.address)
    bad = [f for f in findings if not f.ok]
    assert [f.check for f in bad] == ["payments", "bills"]
    assert "transfer 2: on chain" in bad[0].detail and bad[0].tx and bad[0].block


class DishonestOperator(storage_round.ChainExchange):
    """Publishes energy rents one unit (1e-6 token per kWh) above its closed form at one iteration."""

    def iterate(self, k, op, pairs, respond):
        if self.k == TAMPERED_ITERATION:
            return super().iterate(k, op, pairs, lambda sums: respond(sums) + [1e-6, 0.0])
        return super().iterate(k, op, pairs, respond)


def test_rents_off_by_one_unit_are_flagged_at_their_iteration(market):
    res, findings = _round(market, exchange=DishonestOperator)
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


def test_a_storage_round_without_its_admm_data_has_only_its_settlement_verified():
    e = sm.Env()
    e.chain = connect(None)
    accts = e.chain.accounts(10)
    e.op, e.coord, e.centre, e.grid, e.outsider = accts[:5]
    e.members = accts[5:8]
    e.public, e.private = sm.generate_keypair(1024)
    e.market = StorageMarket.deploy(e.chain, e.op)
    e.terms = sm.make_terms(e, e.members)
    rid, _ = e.market.create_round(e.coord, sm.params_for(e, e.terms))
    e.rid, e.parts = rid, list(e.members)
    e.market.register_many([(p, rid, bytes([i + 1]) * 32) for i, p in enumerate(e.parts)])
    e.market.token.mint_many(e.op, [(a, 10**30) for a in e.parts + [e.grid]])
    e.market.deposit_many([(a, rid, 10**24) for a in e.parts + [e.grid]])
    e.market.start(e.coord, rid, sm.RENTS)
    subs, _, _ = sm.conclude_with(e, sm.VALUES)
    e.market.settle(e.outsider, rid, sm.reveals(subs))

    findings, _ = run_audit(e.chain, e.market.address)
    mine = [f for f in findings if f.round == rid]
    failed = [(f.check, f.detail) for f in mine if not f.ok]
    assert len(failed) == 1 and failed[0][0] == "update rule"
    assert "does not publish settings.rho_capacity" in failed[0][1] and "not checked" in failed[0][1]
    checks = {f.check for f in mine if f.ok}
    assert {"coordinator key", "participants", "order of events", "submissions", "aggregate", "opening proof",
            "decoded sums", "billed as committed", "payments", "bills", "zero sum", "ledger"} <= checks
    assert all(f.ok for f in findings if f.round is None)  # token conservation
