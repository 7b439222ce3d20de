"""Participants crash in the middle of a round, for the tariff and the storage mechanisms: 1 and
n/3 of them go silent; the round goes on without them (past the deadline on chain), the
survivors recover the masks, the private modes follow the plaintext mode's trajectory exactly,
and the round settles with the dropped settled by the mechanism's fallback; on chain the audit
passes and names every dropout."""
from __future__ import annotations

import pytest

from offchain.audit.command import run_audit
from offchain.runner import RunOptions, execute, prepare

from ..conftest import ROOT, node_available

TARIFF, STORAGE = ROOT / "scenarios" / "community10.toml", ROOT / "scenarios" / "storage10.toml"


def _run(scenario, mode: str, drop: int, drop_at: int = 2, chain_url: str | None = None, **kw) -> tuple:
    p = prepare(scenario, RunOptions(mode=mode, drop=drop, drop_at=drop_at, key_bits=2048, chain_url=chain_url, **kw))
    record = execute(p).to_dict()
    return p, record


def _main(record: dict) -> dict:
    return [r for r in record["rounds"] if r["transport"] == record["parameters"]["mode"]][-1]


def _paid(record: dict) -> dict:
    return {q["name"]: int(q["payment"]["base_units"]) for q in record["parties"] if q["payment"]}


@pytest.mark.parametrize("scenario", [TARIFF, STORAGE], ids=["tariff", "storage"])
@pytest.mark.parametrize("drop", [1, 3], ids=["one drops", "n/3 drop"])
def test_private_round_with_dropouts_follows_the_plaintext_round_and_settles(scenario, drop):
    _, plain = _run(scenario, "plaintext", drop)
    _, private = _run(scenario, "private", drop)
    main = _main(private)
    assert len(main["dropped"]) == drop and set(main["dropped"].values()) == {2}
    assert main["dropped"] == _main(plain)["dropped"]
    assert private["convergence"]["converged"] and main["settled"]
    assert [it["prices"] for it in private["iterations"]] == [it["prices"] for it in plain["iterations"]]
    assert _paid(private) == _paid(plain)
    assert sum(_paid(private).values()) == 0


@pytest.mark.skipif(not node_available(), reason="anvil (npm ci) not installed")
@pytest.mark.parametrize("scenario, drop", [(TARIFF, 3), (STORAGE, 1)], ids=["tariff, n/3 drop", "storage, one drops"])
def test_chain_round_with_dropouts_settles_and_the_audit_names_them(scenario, drop):
    from offchain.chain.backends import start_anvil

    with start_anvil(accounts=4) as node:
        p, record = _run(scenario, "chain", drop, chain_url=node.url)
        main = _main(record)
        assert main["settled"] and main["matches_mirror"] and len(main["dropped"]) == drop
        kinds = {t["kind"] for t in record["transactions"]}
        assert {"advance", "recover"} <= kinds
        _, plain = _run(scenario, "plaintext", drop)
        assert _paid(record) == _paid(plain)
        findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
        assert [f for f in findings if not f.ok] == []
        named = " ".join(f.detail for f in findings if "drop" in (f.check + f.detail).lower())
        addresses = {q["name"]: q["address"] for q in record["parties"]}
        assert all(addresses[name] in named for name in main["dropped"]), named


@pytest.mark.skipif(not node_available(), reason="anvil (npm ci) not installed")
def test_a_survivors_false_recovery_partial_is_left_out_and_the_audit_names_it(monkeypatch):
    """The first survivor of every iteration posts a false partial (another point, its proof
    unchanged): the proven partials still recover the masks, the round settles as in the
    plaintext mode, and the audit flags the liar's recovery transactions, nothing else."""
    from offchain.chain.backends import start_anvil
    from offchain.privacy import secagg
    from offchain.protocol.keys import MemberKeys

    honest = MemberKeys.partials
    liars = set()

    def lie(self, k, points, active, submitted):
        post = honest(self, k, points, active, submitted)
        if self.position != min(submitted):
            return post
        liars.add(self.address.lower())
        return secagg.multiply(secagg.hash_to_point(b"elsewhere"), k + 2) + post[secagg.POINT_BYTES:]

    monkeypatch.setattr(MemberKeys, "partials", lie)
    with start_anvil(accounts=4) as node:
        p, record = _run(TARIFF, "chain", 1, chain_url=node.url)
        main = _main(record)
        assert main["settled"] and main["matches_mirror"]
        assert main["false_partials"] and all(main["false_partials"].values())
        findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
    _, plain = _run(TARIFF, "plaintext", 1)
    assert _paid(record) == _paid(plain)
    failed = [f for f in findings if not f.ok]
    assert failed and {f.check for f in failed} == {"recovery partials"}, failed
    assert {f.detail.split(": ")[1].split()[0].lower() for f in failed} == liars
    assert all(f.tx for f in failed)
