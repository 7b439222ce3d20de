"""The audit rebuilds rounds from chain data alone and flags each kind of tampering."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from offchain.audit.command import run_audit
from offchain.chain.backends import ContractRevert, connect
from offchain.chain.market import Market, Reveal, RoundParams, commitment
from offchain.cli import main
from offchain.mechanisms.tariff import TariffRule
from offchain.models.prosumer import build_models
from offchain.models.scenario import load_scenario
from offchain.privacy.paillier import generate_keypair
from offchain.protocol.agents import Coordinator
from offchain.protocol.round import run_private_round

from ..conftest import SCENARIO

TAMPERED_ITERATION = 2


class WrongTariff(Coordinator):
    """Publishes a tariff the rule did not give (inside the band, so the contract accepts it)."""

    def decide(self, aggregate, layout):
        decision, plaintext, opening = super().decide(aggregate, layout)
        if decision.iteration == TAMPERED_ITERATION and decision.next_tariff is not None:
            rule = self.iteration.rule
            decision = dataclasses.replace(
                decision, next_tariff=np.clip(decision.next_tariff + 0.01, rule.floor, rule.cap))
        return decision, plaintext, opening


class WrongPlaintext(Coordinator):
    def decide(self, aggregate, layout):
        decision, plaintext, opening = super().decide(aggregate, layout)
        return decision, plaintext + (decision.iteration == TAMPERED_ITERATION), opening


class WrongOpening(Coordinator):
    def decide(self, aggregate, layout):
        decision, plaintext, opening = super().decide(aggregate, layout)
        return decision, plaintext, opening + (decision.iteration == TAMPERED_ITERATION)


@pytest.fixture(scope="module")
def market_history():
    """One market, one round per kind of behaviour, audited once from chain data alone."""
    chain = connect(None)
    scenario = load_scenario(SCENARIO, prosumers=3)
    rule = TariffRule.from_scenario(scenario)
    operator = chain.accounts(1)[0]
    market = Market.deploy(chain, operator)

    def round_(cls=Coordinator, settle=True):
        return run_private_round(chain, build_models(scenario), rule, scenario.initial_tariff(), market=market,
                                 verify_openings=False, coordinator_class=cls, settle=settle)

    rounds = {"honest": round_(), "wrong tariff": round_(WrongTariff), "wrong plaintext": round_(WrongPlaintext),
              "wrong opening": round_(WrongOpening)}

    # a coordinator tries to bill two prosumers for schedules they did not commit (the sums still
    # add up, so only the commitments catch it); the contract refuses, then the honest bills pass
    misbilled = round_(settle=False)
    reveals = [a.reveal() for a in misbilled.agents]
    shifted = [list(r.values) for r in reveals]
    shifted[0][12] += 1_000_000
    shifted[1][12] -= 1_000_000
    forged = [Reveal(v, r.salt, r.ciphertext_hash) for v, r in zip(shifted, reveals)]
    with pytest.raises(ContractRevert, match="CommitmentMismatch"):
        market.settle(operator, misbilled.round_id, forged)
    market.settle(operator, misbilled.round_id, reveals)
    rounds["misbilled"] = misbilled

    # a prosumer's submission reverts (its ciphertext is not below n^2): its event is missing
    public, _ = generate_keypair(2048)
    coord, grid, p1, p2 = chain.accounts(4, offset=10)
    params = RoundParams(n=public.n, periods=24, slot_bits=64, slot_width=66, max_iterations=5,
                         price_floor=[1] * 24, price_cap=[10] * 24, grid_account=grid.address,
                         verify_openings=False, mechanism=json.dumps({"mechanism": "tariff", "rule": rule.to_dict()}))
    stalled, _ = market.create_round(coord, params)
    market.register_many([(p1, stalled, b"\1" * 32), (p2, stalled, b"\2" * 32)])
    market.start(coord, stalled, [5] * 24)
    market.submit(p1, stalled, 0, public.to_bytes(public.encrypt(7)), commitment(stalled, 0, p1.address, [0] * 24, b"\0" * 32))
    with pytest.raises(ContractRevert, match="CiphertextOutOfRange"):
        market.submit(p2, stalled, 0, public.to_bytes(public.n_sq), b"\0" * 32)
    findings, series = run_audit(chain, market.address)
    ids = {name: r.round_id for name, r in rounds.items()} | {"stalled": stalled}
    return chain, market, findings, series, ids


def _failed(findings, round_id):
    return [f for f in findings if f.round == round_id and not f.ok]


def test_an_honest_round_passes_every_check(market_history):
    _, _, findings, series, ids = market_history
    mine = [f for f in findings if f.round == ids["honest"]]
    assert mine and all(f.ok for f in mine), [f for f in mine if not f.ok]
    checks = {f.check for f in mine}
    assert {"coordinator key", "participants", "order of events", "submissions", "aggregate", "opening proof",
            "decoded sums", "tariff update", "stop rule", "billed as committed", "payments", "zero sum",
            "ledger"} <= checks
    assert len(series[ids["honest"]]["tariff"]) == len(series[ids["honest"]]["imbalance"]) > 1


def test_a_tariff_other_than_the_rule_gives_is_flagged_with_its_transaction(market_history):
    _, _, findings, _, ids = market_history
    bad = _failed(findings, ids["wrong tariff"])
    assert [(f.check, f.iteration) for f in bad] == [("tariff update", TAMPERED_ITERATION)]
    assert bad[0].tx and bad[0].block


def test_a_wrong_decrypted_aggregate_is_flagged(market_history):
    _, _, findings, _, ids = market_history
    bad = _failed(findings, ids["wrong plaintext"])
    assert ("opening proof", TAMPERED_ITERATION) in [(f.check, f.iteration) for f in bad]
    assert all(f.tx for f in bad)


def test_a_wrong_opening_proof_is_flagged(market_history):
    _, _, findings, _, ids = market_history
    bad = _failed(findings, ids["wrong opening"])
    assert [(f.check, f.iteration) for f in bad] == [("opening proof", TAMPERED_ITERATION)]


def test_billing_a_schedule_other_than_the_committed_one_is_flagged(market_history):
    _, _, findings, _, ids = market_history
    bad = _failed(findings, ids["misbilled"])
    assert len(bad) == 1 and bad[0].check == "transactions"
    assert "other than the one committed" in bad[0].detail and bad[0].tx


def test_an_event_missing_because_its_transaction_reverted_is_flagged(market_history):
    _, _, findings, _, ids = market_history
    bad = {f.check: f for f in _failed(findings, ids["stalled"])}
    assert "reverted" in bad["submissions"].detail and bad["submissions"].tx == bad["transactions"].tx
    assert "aggregate" in bad


def test_tokens_are_conserved_across_rounds(market_history):
    _, _, findings, _, _ = market_history
    assert [f.ok for f in findings if f.check == "token conservation"] == [True]


def test_auditing_one_round_reads_only_that_round(market_history):
    chain, market, _, _, ids = market_history
    findings, _ = run_audit(chain, market.address, round_id=ids["honest"])
    assert {f.round for f in findings} - {None} == {ids["honest"]}
    findings, _ = run_audit(chain, market.address, round_id=999)
    assert not findings[0].ok and "no round 999" in findings[0].detail


def test_the_audit_command_needs_a_node_and_a_market(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "--market", "0x0"])
    assert exit_info.value.code == 2
    assert main(["audit", "--chain", "http://127.0.0.1:9", "--market", "0x" + "11" * 20]) == 2
    assert "cannot reach" in capsys.readouterr().err
