"""Anyone may create rounds in a market: an outsider's junk round is noted on that round, never a
failure of the market, so an honest market with one still passes `gridshare audit`."""
from __future__ import annotations

import argparse
import json

import pytest
from rich.console import Console

from offchain.audit import command
from offchain.audit.command import run_audit
from offchain.chain.backends import ContractRevert, connect
from offchain.chain.market import RoundParams, Windows
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport
from offchain.registry import load_scenario

from ..conftest import SCENARIO


@pytest.fixture(scope="module")
def market_with_junk():
    chain = connect(None)
    mechanism, scenario = load_scenario(SCENARIO, prosumers=3)
    honest = ChainTransport(chain, verify_openings=False)
    run_round(mechanism.prepare(scenario, {}).rounds[-1](), honest)
    market = honest.market
    outsider, grid, *parts = chain.accounts(5, offset=30)
    # its rule: the honest round's key data contract (code 0x00 || n^2 || n: a call to it stops at once,
    # so `configure` passes), no registered mechanism's rule; its mechanism: not gridshare's JSON
    junk_rule = market.round_info(honest.round_id)["key_data"]
    junk, _ = market.create_round(outsider, RoundParams(
        rule=junk_rule, slots=1, max_iterations=1, price_floor=[1], price_cap=[1], grid_account=grid.address,
        mechanism="junk", windows=Windows(registration=5, submission=3, coordinator=3, challenge=0)))
    market.register_many([(p, junk, b"") for p in parts])
    market.start(outsider, junk, [1])
    market.submit(parts[0], junk, 0, b"", b"\1" * 32)
    with pytest.raises(ContractRevert, match="WrongStep"):  # nothing to conclude while submissions are open
        market.conclude(outsider, junk, b"", None, None)
    chain.mine_until(market.round_info(junk)["deadline"] + 1)  # then it stalls past its deadline
    return chain, market, honest.round_id, junk


def test_an_outsiders_junk_round_is_a_note_and_the_market_passes(market_with_junk):
    chain, market, honest, junk = market_with_junk
    findings, _ = run_audit(chain, market.address)
    assert [f for f in findings if not f.ok] == []
    assert any(f.round == honest and f.check == "payments" and not f.note for f in findings)
    mine = [f for f in findings if f.round == junk]
    assert mine and all(f.note for f in mine)
    outsider = [f for f in mine if f.check == "outsider round"]
    assert len(outsider) == 1 and "runs no registered mechanism's rule" in outsider[0].detail
    labelled = {f.check for f in mine if f.detail.startswith("not a gridshare mechanism's round: ")}
    assert {"update rule", "rejected", "conclusion"} <= labelled, labelled


def test_the_audit_command_exits_0_on_the_market(market_with_junk, tmp_path, monkeypatch):
    chain, market, _, junk = market_with_junk
    monkeypatch.setattr(command, "connect", lambda url: chain)
    args = argparse.Namespace(market=market.address, chain="embedded", round=None, from_block=0, out=tmp_path / "audit")
    assert command.audit_command(args, Console(quiet=True)) == 0
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["passed"] and any(f["round"] == junk and f["note"] for f in report["findings"])
