"""The audit of hostile participants (keys.BEHAVIOURS) in tariff rounds of one market: it names each
culprit at the transaction that proved it, notes who did not open in a dispute, and fails nobody else."""
from __future__ import annotations

import pytest

from offchain.audit.command import run_audit
from offchain.chain.backends import ContractRevert, connect
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport
from offchain.registry import load_scenario

from ..conftest import SCENARIO

ROUNDS = {  # name: (prosumers, behaviours)
    "dispute": (5, {"H02": "garble", "H04": "copy"}),
    "cheat": (4, {"H02": "cheat"}),
    "bad point": (4, {"H03": "bad-point"}),  # H03 buys: a fallback bill would outlive its forfeited deposit
}


@pytest.fixture(scope="module")
def hostile_market():
    chain = connect(None)
    shared: dict = {"market": None, "rules": {}}
    transports, errors = {}, {}
    for name, (prosumers, behaviours) in ROUNDS.items():
        mechanism, scenario = load_scenario(SCENARIO, prosumers=prosumers)
        t = ChainTransport(chain, key_bits=2048, behaviours=behaviours, market=shared["market"], rules=shared["rules"])
        try:
            run_round(mechanism.prepare(scenario, {}).rounds[-1](), t, settle_unconverged=True)
        except ContractRevert as exc:
            errors[name] = exc
        shared["market"], shared["rules"] = t.market, t.rules
        transports[name] = t
    findings, _ = run_audit(chain, shared["market"].address)
    return findings, transports, errors


def _round(hostile_market, name):
    findings, transports, _ = hostile_market
    t = transports[name]
    return [f for f in findings if f.round == t.round_id], t


def _txs(t, kind):
    """The hashes of the round's transactions of one kind, in order."""
    return [x.hash for x in t.transactions if x.kind == kind]


def test_a_dispute_names_its_culprit_at_the_accusation_and_fails_nobody_else(hostile_market):
    mine, t = _round(hostile_market, "dispute")
    garbler = t.addresses["H02"]
    assert all(f.ok for f in mine), [f for f in mine if not f.ok]
    bad = [f for f in mine if f.culprit]
    assert len(bad) == 1 and bad[0].check == "culprit", bad
    assert garbler in bad[0].detail and "FalseCheck" in bad[0].detail and bad[0].tx in _txs(t, "accuse")
    checks = {f.check: f for f in mine if f.ok and not f.note}
    assert "proved its pair mask with " + garbler in checks["accusation"].detail
    assert "4 of 5 submitters opened" in checks["dispute openings"].detail
    assert set(t.blamed) == {"H02"}
    assert all(f.ok for f in mine if f.check in ("dispute outcome", "check slot", "payments", "ledger"))


def test_a_participant_that_did_not_open_in_a_dispute_is_noted_at_the_advance(hostile_market):
    mine, t = _round(hostile_market, "dispute")
    copier = t.addresses["H04"]
    notes = [f for f in mine if f.note and copier in f.detail]
    assert len(notes) == 1 and "did not open in the dispute of iteration 0" in notes[0].detail
    assert notes[0].tx in _txs(t, "advance")
    outcome = next(f for f in mine if f.check == "dispute outcome")
    assert f"those that did not open ({copier})" in outcome.detail


def test_a_sum_cheat_is_named_at_the_settlement_and_nobody_else(hostile_market):
    mine, t = _round(hostile_market, "cheat")
    assert all(f.ok for f in mine), [f for f in mine if not f.ok]
    bad = [f for f in mine if f.culprit]
    assert len(bad) == 1 and bad[0].check == "culprit", bad
    assert t.addresses["H02"] in bad[0].detail and "SumCheated" in bad[0].detail
    assert bad[0].tx == _txs(t, "settle")[-1]  # the second settle, after the blame step
    checks = [f for f in mine if f.check in ("blame step", "blame opening", "blame outcome")]
    assert [f.check for f in checks] == ["blame step"] + ["blame opening"] * 3 + ["blame outcome"]
    assert all(f.ok for f in checks), checks


def test_a_false_mask_point_is_named_at_the_accusation_and_its_reveal_does_not_count(hostile_market):
    """The participant that posted a mask point other than a H_{k+1} is proven a culprit in the
    next iteration's dispute; it reveals its last commitment (a purchase) at the end, which does not
    count: it forfeited its deposit, so a fallback bill could not be paid. The round settles."""
    _, _, errors = hostile_market
    assert "bad point" not in errors, errors.get("bad point")
    mine, t = _round(hostile_market, "bad point")
    assert all(f.ok for f in mine), [f for f in mine if not f.ok]
    bad = [f for f in mine if f.culprit]
    assert len(bad) == 1 and bad[0].check == "culprit", bad
    assert t.addresses["H03"] in bad[0].detail and bad[0].tx in _txs(t, "accuse")
    assert next(f for f in mine if f.check == "accusation").iteration == 1
    assert t.market.round_info(t.round_id)["phase"] == "Settled"
