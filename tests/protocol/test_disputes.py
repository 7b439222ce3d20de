"""Submissions whose masks do not cancel are caught in the iteration they happen: the decrypted
check slot is not zero, the coordinator opens a dispute, every submitter opens its submission and
its check values, whoever's claim a neighbour's proof contradicts is named and forfeits, whoever
cannot open is dropped, and the iteration is tried again without them; the round never goes on
with sums whose masks did not cancel, and it settles everyone else as an honest round would."""
from __future__ import annotations

import pytest

from offchain.audit.command import run_audit
from offchain.chain.backends import connect
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport, PlainTransport
from offchain.registry import load_scenario

from ..conftest import SCENARIO

PROSUMERS = 5
HOSTILE = "H02"


def _setup():
    mechanism, scenario = load_scenario(SCENARIO, prosumers=PROSUMERS)
    return mechanism.prepare(scenario, {}).rounds[-1]()


def _run(behaviour: str, **kw):
    chain = connect(None)
    transport = ChainTransport(chain, key_bits=2048, behaviours={HOSTILE: behaviour}, **kw)
    return chain, transport, run_round(_setup(), transport)


def _honest_payments(out) -> dict[str, int]:
    names = [p.name for p in out.setup.participants]
    return {n: a for n, a in zip(names, out.settlement.amounts) if n != HOSTILE}


@pytest.fixture(scope="module")
def plain_without_hostile():
    """The plaintext round in which the hostile participant left in iteration 0 (a copier) or 1."""
    return {k: run_round(_setup(), PlainTransport({k: [HOSTILE]})) for k in (0, 1)}


@pytest.mark.parametrize("behaviour, iteration, fault", [
    ("copy", 0, None),  # a re-randomised copy: it cannot open, it is dropped
    ("garble", 0, "FalseCheck"),  # made-up masks, then false check claims: a neighbour proves them false
    ("bad-point", 1, "FalseCheck"),  # a false next mask point: its pairs of iteration 1 disagree
], ids=["copy", "garble", "bad point"])
def test_masks_that_do_not_cancel_are_caught_in_their_iteration_and_the_culprit_named(
        behaviour, iteration, fault, plain_without_hostile):
    chain, t, out = _run(behaviour)
    assert out.converged and out.settled
    assert t.attempts[iteration] == 2 and all(n == 1 for k, n in t.attempts.items() if k != iteration)
    assert t.dropped_at == {1: iteration}  # the hostile one (position 1), in the iteration of its submission
    kinds = [x.kind for x in t.transactions]
    assert kinds.count("dispute") == 1 and kinds.count("open check") == PROSUMERS - (behaviour == "copy")
    if fault:
        forfeited, named = t.blamed[HOSTILE]
        assert named == fault and forfeited > 0 and kinds.count("accuse") == 1
    else:
        assert HOSTILE not in t.blamed
    # every published sum is the honest participants' (the same trajectory as without the hostile one)
    plain = plain_without_hostile[iteration]
    assert [it.prices for it in out.iterations] == [it.prices for it in plain.iterations]
    assert _honest_payments(out) == _honest_payments(plain)
    findings, _ = run_audit(chain, t.market.address)
    failed = [f for f in findings if not f.ok]
    address = t.addresses[HOSTILE]
    assert all(address in f.detail for f in failed), [f.detail for f in failed]
    named = [f for f in findings if address in f.detail and f.tx]
    assert named, "the audit names the hostile participant at a transaction"


def test_a_false_dispute_opening_is_disproved_and_its_author_forfeits(monkeypatch):
    """A participant opens its submission in a dispute with a plaintext that fits its claims and a
    randomness that does not: every other participant's check of the opening fails, one challenges
    it on chain, and the author is a culprit (FalseOpening), dropped with the garbler."""
    from offchain.protocol.keys import MemberKeys

    honest = MemberKeys.check_opening

    def forged(self, sealed, points, active):
        opened = honest(self, sealed, points, active)
        if opened is None or self.position != 0:
            return opened
        commitment, data, checks = opened
        return commitment, data[:-1] + bytes([data[-1] ^ 1]), checks  # another rho

    monkeypatch.setattr(MemberKeys, "check_opening", forged)
    chain, t, out = _run("garble")
    first = out.setup.participants[0].name
    assert out.settled and t.blamed[first][1] == "FalseOpening" and t.blamed[HOSTILE][1] == "FalseCheck"
    assert set(t.dropped_at) == {0, 1}
    assert "challenge" in {x.kind for x in t.transactions}


def test_a_front_run_of_anyones_calls_is_taken_not_fatal(monkeypatch):
    """An outsider aggregates each attempt, advances past the deadline and settles before the
    coordinator's client: the client takes the chain's state and goes on."""
    outsider = {}
    aggregate, advance, settle = ChainTransport._aggregate, ChainTransport._advance, ChainTransport._settle_once

    def first_aggregate(self, k, sealed):
        account = outsider.setdefault("account", self.chain.accounts(1, offset=250)[0])
        self.market.aggregate(account, self.round_id, [s.ciphertext for s in sealed.values()],
                              [s.commitment for s in sealed.values()])
        return aggregate(self, k, sealed)

    def first_advance(self, k, attempt, missing):
        info = self._info()
        self.chain.mine_until(int(info["deadline"]) + 1)
        self.market.advance(outsider["account"], self.round_id, [self._account(i).address for i in missing])
        return advance(self, k, attempt, missing)

    def first_settle(self, reveals):
        self.market.settle(outsider["account"], self.round_id, reveals)
        return settle(self, reveals)

    monkeypatch.setattr(ChainTransport, "_aggregate", first_aggregate)
    monkeypatch.setattr(ChainTransport, "_advance", first_advance)
    monkeypatch.setattr(ChainTransport, "_settle_once", first_settle)
    chain = connect(None)
    t = ChainTransport(chain, key_bits=2048, drops={1: [HOSTILE]})
    out = run_round(_setup(), t)
    assert out.settled and t.dropped_at == {1: 1}
    kinds = [x.kind for x in t.transactions]
    assert not {"aggregate", "advance", "settle"} & set(kinds)  # the outsider's calls did it
    assert out.settlement.amounts == t.mirror(out.final_prices).amounts and any(out.settlement.amounts)
