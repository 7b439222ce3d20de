"""The audit rebuilds rounds from chain data alone and flags each kind of tampering."""
from __future__ import annotations

import json

import pytest
from eth_utils import keccak

from offchain.audit.command import run_audit
from offchain.chain.backends import ContractRevert, connect
from offchain.chain.market import Reveal, RoundParams, commitment, deploy_rule
from offchain.privacy import secagg
from offchain.cli import main
from offchain.framework import Answer, MirrorSettlement
from offchain.mechanisms.tariff.market import TariffCoordinator
from offchain.privacy.paillier import generate_keypair
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport
from offchain.registry import load_scenario
from offchain.units import price_to_fixed

from ..conftest import SCENARIO

TAMPERED_ITERATION = 2


class WrongPrices(TariffCoordinator):
    """Publishes a tariff the rule did not give (inside the band, so the contract accepts it)."""

    def answer(self, k, sums):
        a = super().answer(k, sums)
        if k == TAMPERED_ITERATION and a.prices is not None:
            rule = self.iteration.rule
            cap = price_to_fixed(rule.cap)
            return Answer(prices=[min(p + 10_000, c) for p, c in zip(a.prices, cap)], reason=a.reason)
        return a


class WrongDecryptions(ChainTransport):
    """A coordinator that publishes another plaintext at one iteration and another opening at the next."""

    shifts = {TAMPERED_ITERATION: (1, 0), TAMPERED_ITERATION + 1: (0, 1)}  # iteration: (plaintext, opening)

    def exchange(self, k, contributions):
        self._k = k
        return super().exchange(k, contributions)

    def _decrypt(self, aggregate):
        sums, check, m, rho = super()._decrypt(aggregate)
        if self._k in self.shifts:
            m, rho = m + self.shifts[self._k][0], rho + self.shifts[self._k][1]
            sums, check = self.layout.unpack(m)
        return sums, check, m, rho


class Unsettled(ChainTransport):
    """Stops after the conclusion: the test reveals and settles by hand."""

    def settle(self, prices):
        return MirrorSettlement([], {})

    def finish(self):
        self._leave()


@pytest.fixture(scope="module")
def market_history():
    """One market, one round per kind of behaviour, audited once from chain data alone."""
    chain = connect(None)
    mechanism, scenario = load_scenario(SCENARIO, prosumers=3)
    job = mechanism.prepare(scenario, {})
    shared = {"market": None, "rules": {}}

    def round_(transport=ChainTransport, coordinator=None):
        setup = job.rounds[-1]()
        if coordinator is not None:
            setup.coordinator = coordinator(setup.coordinator.iteration.rule, scenario.initial_tariff())
        t = transport(chain, verify_openings=False, market=shared["market"], rules=shared["rules"])
        out = run_round(setup, t)
        shared["market"], shared["rules"] = t.market, t.rules
        return out

    outs = {"honest": round_(), "wrong prices": round_(coordinator=WrongPrices),
            "wrong decryptions": round_(WrongDecryptions)}
    market, rule = shared["market"], shared["rules"]["TariffRule"]
    operator = chain.accounts(1)[0]

    # a coordinator tries to bill two prosumers for schedules they did not reveal (the sums still
    # add up, so only the reveals catch it); the contract refuses, then the honest bills pass
    misbilled = round_(Unsettled)
    t = misbilled.transport
    reveals = [Reveal(s.reveal, s.salt, keccak(s.ciphertext)) for _, s in sorted(t.sealed.items())]
    market.reveal_many([(t.accounts[p.name], t.round_id, r) for p, r in zip(t.setup.participants, reveals)])
    shifted = [list(r.values) for r in reveals]
    shifted[0][12] += 1_000_000
    shifted[1][12] -= 1_000_000
    forged = [Reveal(v, r.salt, r.ciphertext_hash) for v, r in zip(shifted, reveals)]
    with pytest.raises(ContractRevert, match="RevealMismatch"):
        market.settle(operator, t.round_id, forged)
    market.settle(operator, t.round_id, reveals)
    outs["misbilled"] = misbilled

    # an unconverged round: closed, nothing traded, every deposit returned
    setup = job.rounds[-1]()
    capped = type(setup.coordinator.iteration.rule).from_dict({**setup.coordinator.iteration.rule.to_dict(),
                                                               "max_iterations": 2})
    setup.coordinator.iteration.rule = capped
    setup.public_rule = {**setup.public_rule, "rule": capped.to_dict()}
    setup.max_iterations = 2
    outs["closed"] = run_round(setup, ChainTransport(chain, verify_openings=False, market=market,
                                                     rules=shared["rules"]))

    # hostile submissions, each rejected on chain: a ciphertext not below n^2, the ciphertext 1, the
    # ciphertext n, a next mask point whose x is not below the group order, a second submission in
    # the attempt, a submission for another iteration; an outsider's withdraw
    public, _ = generate_keypair(2048)
    coord, grid, p1, p2, p3, outsider = chain.accounts(6, offset=10)
    point = secagg.multiply(secagg.GENERATOR, 7)
    published = {"mechanism": "tariff", "rule": job.state["rule"].to_dict()}

    def params(**change):
        base = dict(rule=rule, n=public.n, slots=24, slot_bits=64, slot_width=66, max_iterations=5,
                    price_floor=[1] * 24, price_cap=[10] * 24, grid_account=grid.address,
                    mechanism=json.dumps(published))
        return RoundParams(**{**base, **change})

    stalled, _ = market.create_round(coord, params())
    market.register_many([(p, stalled, point + point) for p in (p1, p2, p3)])
    market.start(coord, stalled, [5] * 24)
    first = public.to_bytes(public.encrypt(7))
    market.submit(p1, stalled, 0, first, commitment(stalled, 0, p1.address, [0] * 24, b"\0" * 32), b"", point)
    for who, k, ct, next_point, error in (
            (p2, 0, public.to_bytes(public.n_sq), point, "CiphertextOutOfRange"),
            (p3, 0, public.to_bytes(1), point, "CiphertextIsOne"),
            (p3, 0, public.to_bytes(public.n), point, "CiphertextMultipleOfN"),
            (p2, 0, first, _point_beyond_the_group_order(), "MaskPointInvalid"),
            (p1, 0, first, point, "AlreadySubmitted"),
            (p2, 1, first, point, "WrongIteration")):
        with pytest.raises(ContractRevert, match=error):
            market.submit(who, stalled, k, ct, b"\0" * 32, b"", next_point)
    with pytest.raises(ContractRevert, match="WrongPhase"):  # mid-round
        market.withdraw(outsider, stalled)
    # rounds an outsider makes up: an unknown mechanism, a malformed one, a rule that is not the mechanism's
    unknown, _ = market.create_round(coord, params(mechanism=json.dumps({"mechanism": "nope"})))
    malformed, _ = market.create_round(coord, params(mechanism="null"))
    impostor, _ = market.create_round(coord, params(rule=deploy_rule(chain, "TariffRule", coord),
                                                    mechanism=json.dumps({"mechanism": "storage-p2p"})))
    findings, series = run_audit(chain, market.address)
    ids = {name: o.transport.round_id for name, o in outs.items()} | {
        "stalled": stalled, "unknown": unknown, "malformed": malformed, "impostor": impostor}
    return chain, market, findings, series, ids


def _point_beyond_the_group_order() -> bytes:
    """A compressed curve point whose x is at least N (the contract's checks use ecrecover, whose
    r must be below N)."""
    x = secagg.Q
    while pow((x ** 3 + 7) % secagg.P, (secagg.P - 1) // 2, secagg.P) != 1:
        x += 1
    return b"\x02" + x.to_bytes(32, "big")


def _failed(findings, round_id):
    return [f for f in findings if f.round == round_id and not f.ok]


def test_an_honest_round_passes_every_check(market_history):
    _, _, findings, series, ids = market_history
    mine = [f for f in findings if f.round == ids["honest"]]
    assert mine and all(f.ok for f in mine), [f for f in mine if not f.ok]
    checks = {f.check for f in mine}
    assert {"coordinator key", "participants", "mask keys", "order of events", "rule contract", "submissions",
            "aggregate", "opening proof", "check slot", "decoded sums", "price update", "stop rule", "reveals",
            "billed as revealed", "payments", "zero sum", "ledger"} <= checks
    assert len(series[ids["honest"]]["prices"]) == len(series[ids["honest"]]["sums"]) > 1


def test_prices_other_than_the_rule_gives_are_flagged_with_their_transaction(market_history):
    _, _, findings, _, ids = market_history
    bad = _failed(findings, ids["wrong prices"])
    assert [(f.check, f.iteration) for f in bad] == [("price update", TAMPERED_ITERATION)]
    assert bad[0].tx and bad[0].block


def test_a_wrong_plaintext_or_opening_is_flagged_naming_the_coordinator(market_history):
    _, _, findings, _, ids = market_history
    bad = _failed(findings, ids["wrong decryptions"])
    assert [(f.check, f.iteration) for f in bad] == [("opening proof", TAMPERED_ITERATION),
                                                      ("opening proof", TAMPERED_ITERATION + 1)]
    assert all(f.tx and f.block and "the coordinator" in f.detail for f in bad)


def test_billing_a_schedule_other_than_the_committed_one_is_flagged(market_history):
    _, _, findings, _, ids = market_history
    bad = _failed(findings, ids["misbilled"])
    assert len(bad) == 1 and bad[0].check == "rejected"
    assert "for values other than it revealed" in bad[0].detail and bad[0].tx


def test_a_closed_round_passes_with_its_deposits_returned(market_history):
    _, _, findings, _, ids = market_history
    mine = [f for f in findings if f.round == ids["closed"]]
    assert mine and all(f.ok for f in mine), [f for f in mine if not f.ok]
    closed = [f for f in mine if f.check == "conclusion"]
    assert len(closed) == 1 and closed[0].note and "without trading (the coordinator closed it)" in closed[0].detail
    assert [f.iteration for f in mine if f.check == "price update"] == [0]  # iteration 1 hit the cap: closed, not decrypted


def test_each_hostile_submission_is_flagged_at_its_own_transaction(market_history):
    _, _, findings, _, ids = market_history
    bad = _failed(findings, ids["stalled"])
    assert [f.check for f in bad] == ["rejected"] * 6 and len({f.tx for f in bad}) == 6
    details = [f.detail for f in bad]
    for detail, why in zip(details, ("out of range", "the ciphertext 1", "a multiple of n",
                                     "x is not below N, the group order", "a second submission in iteration 0",
                                     "for iteration 1 while the round is at iteration 0")):
        assert why in detail, details
    mine = [f for f in findings if f.round == ids["stalled"]]
    assert any(f.check == "in progress" and f.note for f in mine)  # within its deadline: not stalled
    outsider = [f for f in mine if f.check == "outsider"]
    assert len(outsider) == 1 and outsider[0].note and outsider[0].ok and outsider[0].tx


def test_a_round_of_an_unknown_or_malformed_mechanism_is_an_outsiders_noted_not_failed(market_history):
    _, _, findings, _, ids = market_history
    for name, why in (("unknown", "the unknown mechanism 'nope'"), ("malformed", "not gridshare's JSON")):
        mine = [f for f in findings if f.round == ids[name]]
        assert mine and all(f.ok and f.note for f in mine), [f for f in mine if not f.note]
        outsider = next(f for f in mine if f.check == "outsider round")
        assert why in outsider.detail and "not a gridshare mechanism's round" in outsider.detail
        assert any(f.check == "update rule" and f.detail.startswith("not a gridshare mechanism's round") for f in mine)


def test_a_rule_contract_that_is_not_the_mechanisms_is_flagged(market_history):
    _, _, findings, _, ids = market_history
    bad = {f.check: f for f in _failed(findings, ids["impostor"])}
    assert "is not StorageRule's code" in bad["rule contract"].detail


def test_tokens_are_conserved_across_rounds(market_history):
    _, _, findings, _, _ = market_history
    assert [f.ok for f in findings if f.check == "token conservation"] == [True]


def test_auditing_one_round_reads_only_that_round(market_history):
    chain, market, _, _, ids = market_history
    findings, _ = run_audit(chain, market.address, round_id=ids["honest"])
    assert {f.round for f in findings} - {None} == {ids["honest"]}
    findings, _ = run_audit(chain, market.address, round_id=999)
    missing = [f for f in findings if f.check == "round"]
    assert missing and not missing[0].ok and "no round 999" in missing[0].detail


def test_the_audit_command_needs_a_node_and_a_market(capsys):
    assert main(["audit", "--market", "0x0"]) == 2
    assert main(["audit", "--chain", "http://127.0.0.1:9", "--market", "0x" + "11" * 20]) == 2
    assert "cannot reach" in capsys.readouterr().err
