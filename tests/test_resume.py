"""Crash and resume: a run on a node killed (SIGKILL) at any step is finished by `gridshare resume
RUN_DIR` from chain state and its key store, with no transaction sent twice and no payment lost;
`gridshare refund` gets the deposits back from a round that cannot finish; no child process
outlives a killed run; the run's accounts come from a secret seed in its key store."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from offchain.audit.command import run_audit
from offchain.chain.backends import TxJournal, connect, dev_account, start_anvil
from offchain.chain.market import Market
from offchain.cli import main
from offchain.keystore import KeyStore

from .conftest import ROOT, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="anvil (npm ci) not installed")
GRIDSHARE = [sys.executable, "-m", "offchain.cli"]


def _start_run(url: str, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*GRIDSHARE, "demo", "--chain", url, "--out", str(out), "--prosumers", "4", *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_after(proc: subprocess.Popen, out: Path, sent: int) -> list[int]:
    """SIGKILLs the run once it has journaled ``sent`` transactions; its children's pids."""
    journal = out / "transactions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= sent:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return children


def _alive(pids: list[int], wait: float = 3.0) -> list[int]:
    """Those of ``pids`` still running after ``wait`` seconds (a zombie has ended: not counted)."""
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if running(p)]


def _chain_transactions(chain) -> list:
    out = []
    for b in range(chain.block_number + 1):
        for tx in chain.w3.eth.get_block(b, True).transactions:
            out.append((tx, chain.w3.eth.get_transaction_receipt(tx.hash)))
    return out


@pytest.mark.parametrize("sent", [12, 70, 126], ids=["during registration", "mid-iteration", "near the end"])
def test_a_killed_run_resumes_from_chain_state_and_its_key_store(tmp_path, sent, capsys):
    out = tmp_path / "run"
    with start_anvil(accounts=4) as node:
        children = _kill_after(_start_run(node.url, out), out, sent)
        assert not _alive(children), "a child process outlived its parent"
        keys = out / "keys"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in keys.iterdir())
        assert not (out / "run.json").exists()

        assert main(["resume", str(out)]) == 0
        printed = capsys.readouterr().out
        record = json.loads((out / "run.json").read_text())
        market = record["chain"]["contracts"]["market"]
        assert market in printed and record["convergence"]["converged"]

        chain = connect(node.url)
        txs = _chain_transactions(chain)
        assert all(r.status == 1 for _, r in txs), "a resumed run sent a transaction the chain refused"
        hashes = [t["hash"] for t in record["transactions"]]
        assert len(hashes) == len(set(hashes))
        assert {h for h in hashes} <= {tx.hash.to_0x_hex() for tx, _ in txs}
        submits = Counter((t["party"], t["iteration"]) for t in record["transactions"] if t["kind"] == "submit")
        assert set(submits.values()) == {1}  # no double submission
        m = Market(chain, market)
        assert m.contract.functions.roundCount().call() == 1 and m.round_info(1)["phase"] == "Settled"
        for party in record["parties"]:  # every payment made, every deposit withdrawn
            if party["address"]:
                assert m.balance(1, party["address"]) == 0
        findings, _ = run_audit(chain, market)
        assert [f for f in findings if not f.ok] == []

        # the run's accounts are its key store's secret seed's, not the public constant's
        seed = KeyStore(keys).account_seed()
        addresses = {p["address"] for p in record["parties"] if p["address"]}
        assert addresses <= {dev_account(i, seed).address for i in range(10)}
        assert not addresses & {dev_account(i).address for i in range(10)}


def test_a_run_down_past_its_deadlines_says_so_and_how_to_get_the_deposits_back(tmp_path, capsys):
    out = tmp_path / "run"
    with start_anvil(accounts=4) as node:
        _kill_after(_start_run(node.url, out), out, 60)
        chain = connect(node.url)
        chain.mine_until(chain.block_number + 400)  # every window passes while the run is down
        assert main(["resume", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("gridshare: error: the resumed run cannot go on") and "gridshare refund" in err, err
        assert main(["refund", *err.split("gridshare refund ")[1].split("`")[0].split()]) == 0
        assert "withdrew" in capsys.readouterr().out


def test_refund_cancels_a_round_whose_coordinator_is_gone_and_returns_every_deposit(tmp_path, capsys):
    out = tmp_path / "run"
    with start_anvil(accounts=4) as node:
        _kill_after(_start_run(node.url, out), out, 40)
        chain = connect(node.url)
        seed = KeyStore(out / "keys").account_seed()
        first = json.loads((out / "progress.jsonl").read_text().splitlines()[0])
        market = Market(chain, first["created"]["market"])
        members = market.participants(1)
        deposits = {a: market.balance(1, a) for a in members}
        assert all(deposits.values())
        wallets = {a: market.token.balance_of(a) for a in members}

        assert main(["refund", "--chain", node.url, "--market", market.address, "--round", "1", "--keys", str(out)]) == 1
        assert "still live" in capsys.readouterr().out  # its coordinator is not late yet
        chain.mine_until(chain.block_number + 400)
        assert main(["refund", "--chain", node.url, "--market", market.address, "--round", "1", "--keys", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "cancelled" in printed or "moved on" in printed
        assert market.round_info(1)["phase"] == "Closed"
        shares = {e["args"]["account"]: e["args"]["amount"]  # the late coordinator's bond (if it was in), shared out
                  for e in market.contract.events.Compensated().get_logs(from_block=0)}
        forfeited = [e["args"] for e in market.contract.events.Blamed().get_logs(from_block=0)]
        # cancelled: the coordinator was late (its bond, if it was in, is shared); or moved on: all dropped
        assert {(f["culprit"], f["fault"]) for f in forfeited} <= {(market.round_info(1)["coordinator"], 5)}
        assert sum(shares.values()) == sum(f["forfeited"] for f in forfeited)
        for a in members:
            assert market.balance(1, a) == 0
            assert market.token.balance_of(a) == wallets[a] + deposits[a] + shares.get(a, 0)
        assert {dev_account(i, seed).address for i in range(10)} >= set(members)
        assert "H01 withdrew" in printed and " tokens (tx 0x" in printed  # names and tokens, not base units

        # resuming the refunded run reads the round's end on chain and sends nothing
        before = chain.block_number
        assert main(["resume", str(out)]) == 1
        said = capsys.readouterr().err
        assert f"round 1 of {market.address} was" in said and "every deposit has been withdrawn" in said, said
        assert "Nothing was sent" in said and chain.block_number - before <= 2  # only the node's interval blocks
        assert not [tx for b in range(before + 1, chain.block_number + 1)
                    for tx in chain.w3.eth.get_block(b).transactions]
        findings, _ = run_audit(chain, market.address)
        assert [f for f in findings if not f.ok] == []  # a cancelled round is what it is, not a failure
        assert any(f.note and "have withdrawn (refunded)" in f.detail for f in findings)
        assert not any("settled by the mechanism's fallback" in f.detail for f in findings)  # nothing was settled

        # bad input: an unknown round (decoded by name), a key store of nobody in the round
        bad = ["refund", "--chain", node.url, "--market", market.address]
        assert main(bad + ["--round", "99", "--keys", str(out)]) == 2
        assert "UnknownRound" in capsys.readouterr().err
        stranger = tmp_path / "stranger"
        KeyStore(stranger).account_seed()
        assert main(bad + ["--round", "1", "--keys", str(stranger)]) == 2
        assert "none of its accounts is a member" in capsys.readouterr().err


def test_the_journal_gives_each_call_its_earlier_transaction_once(tmp_path):
    path = tmp_path / "transactions.jsonl"
    first = TxJournal(path)
    call = ("0xAa", "0xBb", b"\x01\x02", 0)
    for h in (b"\x11" * 32, b"\x22" * 32):
        assert first.recall(*call) is None
        first.record([(*call, h)])
    assert not first.waited_before()
    first.record_wait()
    with open(path, "a") as f:
        f.write('{"call": "cut sh')  # a kill in the middle of a line
    again = TxJournal(path)
    assert bytes(again.recall(*call)) == b"\x11" * 32 and bytes(again.recall(*call)) == b"\x22" * 32
    assert again.recall(*call) is None  # a third call was never sent
    assert again.waited_before() and not again.waited_before()


def test_the_key_store_keeps_each_secret_once_in_files_only_its_owner_reads(tmp_path):
    store = KeyStore(tmp_path / "keys")
    party = store.party("round0-0xAbC")
    assert party.keep("x", lambda: 1) == 1 and party.keep("x", lambda: 2) == 1
    assert KeyStore(tmp_path / "keys").party("round0-0xabc").get("x") == 1
    assert store.account_seed() == KeyStore(tmp_path / "keys").account_seed()
    assert oct(os.stat(party.path).st_mode & 0o777) == "0o600"


def test_a_killed_run_on_the_node_it_started_resumes_from_the_chain_it_kept(tmp_path, capsys):
    """The default chain 'anvil': the node dies with the run (SIGKILL), keeping its chain in the run
    folder; resume restarts the node from it and finishes; the kept chain is audited afterwards."""
    out = tmp_path / "run"
    proc = subprocess.Popen([*GRIDSHARE, "demo", "--out", str(out), "--prosumers", "4"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = _kill_after(proc, out, 60)
    assert children and not _alive(children), "the node outlived the run"
    assert (out / "chain-state.json").exists()
    assert main(["resume", str(out)]) == 0
    assert "journaled transaction(s) reused" in capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["chain"]["kind"] == "anvil" and record["convergence"]["converged"]
    assert record["chain"]["state"] == str(out / "chain-state.json")
    with start_anvil(state=out / "chain-state.json") as node:  # `gridshare chain up --state ...`
        findings, _ = run_audit(connect(node.url), record["chain"]["contracts"]["market"])
    assert findings and [f for f in findings if not f.ok] == []
