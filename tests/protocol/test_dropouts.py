"""Participants crash in the middle of a round, for the tariff and the storage mechanisms: 1 and
n/3 of them go silent; past the deadline the round goes on without them: the others submit the
iteration again, masked among themselves only (nobody's masks are ever removed, so a dropped
participant's values stay hidden); the private modes follow the plaintext mode's trajectory
exactly, and the round settles with the dropped settled by the mechanism's fallback; on chain
the audit passes and names every dropout."""
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
        kinds = [t["kind"] for t in record["transactions"]]
        assert kinds.count("advance") == 1 and "recover" not in kinds
        assert main["attempts"] == {"2": 2}  # the iteration of the dropout was tried twice
        k2 = [t for t in record["transactions"] if t["kind"] == "submit" and t["iteration"] == 2]
        names = {q["name"] for q in record["parties"] if q["role"] == "prosumer"}
        assert len(k2) == 2 * (len(names) - drop)  # the survivors submit in the first attempt and again
        _, plain = _run(scenario, "plaintext", drop)
        assert _paid(record) == _paid(plain)
        findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
        assert [f for f in findings if not f.ok] == []
        named = " ".join(f.detail for f in findings if "drop" in (f.check + f.detail).lower())
        addresses = {q["name"]: q["address"] for q in record["parties"]}
        assert all(addresses[name] in named for name in main["dropped"]), named
