"""The reveals do not add up to the decrypted sums (a participant encrypted other values than it
committed to, a valid encryption no check of a submission can see, or withheld its reveal): the
blame step begins, every participant that revealed opens its final ciphertext and proves its
masks of the final attempt, and the round always ends in a settlement: the proven cheat forfeits
its deposit to the others, a false opening is disproved and its author forfeits, and those that
did not open while the chain cannot tell who cheated are settled by the fallback, not slashed."""
from __future__ import annotations

import pytest

from offchain.audit.command import run_audit
from offchain.chain.backends import connect
from offchain.errors import ProtocolViolation
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport
from offchain.registry import load_scenario

from ..conftest import SCENARIO, node_available

PROSUMERS = 5


def _setup():
    mechanism, scenario = load_scenario(SCENARIO, prosumers=PROSUMERS)
    return mechanism.prepare(scenario, {}).rounds[-1]()


def _run(behaviours: dict[str, str], url: str | None = None, **kw):
    chain = connect(url)
    t = ChainTransport(chain, key_bits=2048, behaviours=behaviours, **kw)
    out = run_round(_setup(), t, settle_unconverged=True)
    return chain, t, out


def _compensated(t) -> dict[str, int]:
    names = {a.lower(): n for n, a in t.addresses.items() if n != "coordinator"}
    events = t.market.contract.events.Compensated().get_logs(from_block=0)
    return {names[e["args"]["account"].lower()]: int(e["args"]["amount"]) for e in events}


@pytest.mark.skipif(not node_available(), reason="anvil (npm ci) not installed")
def test_a_cheat_is_proven_forfeits_and_everyone_else_settles_on_anvil():
    from offchain.chain.backends import start_anvil

    with start_anvil(accounts=4) as node:
        chain, t, out = _run({"H02": "cheat"}, node.url)
        findings, _ = run_audit(chain, t.market.address)
        shares = _compensated(t)
    assert out.settled and t.blamed == {"H02": (t.blamed["H02"][0], "SumCheated")} and t.blamed["H02"][0] > 0
    kinds = [x.kind for x in t.transactions]
    assert kinds.count("open blame") == PROSUMERS - 1 and kinds.count("settle") == 2
    assert set(shares) == {p.name for p in out.setup.participants} - {"H02"}
    assert sum(shares.values()) == t.blamed["H02"][0]
    assert all(f.ok for f in findings), [f.detail for f in findings if not f.ok]  # the market did as its rules say
    named = [f for f in findings if f.culprit]
    assert named and all(t.addresses["H02"] in f.detail for f in named), [f.detail for f in named]


def test_a_forged_blame_opening_is_disproved_and_its_author_forfeits():
    """The cheat opens with a plaintext that fits its reveal and its masks, and a randomness that
    cannot open its ciphertext: the contract takes it (openings are optimistic), every other
    participant's check of it fails, one challenges it, and the forger forfeits."""
    chain, t, out = _run({"H02": "forge"})
    assert out.settled and t.blamed["H02"][1] == "FalseOpening" and t.blamed["H02"][0] > 0
    assert [x.kind for x in t.transactions].count("challenge") >= 1
    assert "coordinator" not in t.blamed  # the forger explains the mismatch


def test_two_that_do_not_open_are_settled_by_the_fallback_and_forfeit_nothing():
    """Two cheats: neither opens, and the chain cannot tell which of them cheated (one could be an
    honest participant that was offline): both are named (NotOpened), settled by the mechanism's
    fallback, and keep their deposits; everyone else settles."""
    chain, t, out = _run({"H02": "cheat", "C01": "cheat"})
    assert out.settled
    assert {n: f for n, (_, f) in t.blamed.items()} == {"H02": "NotOpened", "C01": "NotOpened"}
    assert all(v == 0 for v, _ in t.blamed.values())
    names = [p.name for p in out.setup.participants]
    assert {names[i] for i in set(range(PROSUMERS)) - t.active} == {"H02", "C01"}


def test_a_withheld_reveal_forfeits_and_the_blame_step_clears_the_others(monkeypatch):
    """A participant stays to the end and keeps its reveal: it forfeits its deposit, the sums cannot
    be checked without it, so the others open their ciphertexts (the blame step) and settle."""
    from offchain.chain.market import Market

    reveal_many = Market.reveal_many
    monkeypatch.setattr(Market, "reveal_many", lambda self, items: reveal_many(self, items[1:]))  # the first keeps it
    chain, t, out = _run({})
    first = out.setup.participants[0].name
    assert out.settled and t.blamed == {first: (t.blamed[first][0], "WithheldReveal")}
    assert [x.kind for x in t.transactions].count("open blame") == PROSUMERS - 1
    assert set(_compensated(t)) == {p.name for p in out.setup.participants} - {first}


def test_a_false_decryption_is_disproved_the_round_closes_and_the_coordinator_forfeits_its_bond(monkeypatch):
    """The coordinator publishes a decryption whose opening is false: every participant's check of
    it fails, one challenges it, the round closes and the coordinator's bond is shared among them."""
    from offchain.protocol.keys import CoordinatorKeys

    honest = CoordinatorKeys.open

    def lying(self, aggregate, layout):
        sums, check, plaintext, opening = honest(self, aggregate, layout)
        return sums, check, plaintext, opening + 1

    monkeypatch.setattr(CoordinatorKeys, "open", lying)
    chain = connect(None)
    t = ChainTransport(chain, key_bits=2048)
    with pytest.raises(ProtocolViolation, match="decryption was false"):
        run_round(_setup(), t)
    info = t.market.round_info(t.round_id)
    assert info["phase"] == "Closed" and t.blamed["coordinator"][1] == "CoordinatorFalseOpening"
    assert t.blamed["coordinator"][0] == t.bond > 0
    assert sum(_compensated(t).values()) == t.bond
    assert t.market.token.balance_of(t.market.address) == 0  # every deposit (and the bond's shares) withdrawn
