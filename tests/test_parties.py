"""Every party its own process: a round whose prosumers, coordinator and payee each run as
`gridshare party` processes on anvil, one prosumer and then the coordinator killed mid-round and
restarted, settles with the payments of the same round run in one process; each party's folder
holds its secrets only."""
from __future__ import annotations

import json

import pytest

from offchain.chain.backends import connect, start_anvil
from offchain.chain.market import Market, deploy_rule
from offchain.protocol import spawn
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport
from offchain.registry import load_scenario

from .conftest import SCENARIO, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="anvil not installed (npm ci)")


def _setup(prosumers: int = 4):
    mechanism, scenario = load_scenario(SCENARIO, prosumers=prosumers, seed=3)
    job = mechanism.prepare(scenario, {})
    return mechanism, scenario, job.rounds[-1]


def _submits(folder, k: int) -> int:
    path = folder / "transactions.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return sum(1 for x in lines if x["kind"] == "submit" and x["iteration"] == k)


def test_party_processes_settle_as_one_process_does_after_a_prosumer_is_killed_and_restarted(tmp_path):
    mechanism, scenario, factory = _setup()
    with start_anvil() as node:
        chain = connect(node.url)
        operator = chain.accounts(1)[0]
        market = Market.deploy(chain, operator)
        rule = deploy_rule(chain, mechanism.rule_contract, operator)
        alone = run_round(factory(), ChainTransport(chain, market=market, rules={mechanism.rule_contract: rule}))
        setup = factory()
        victim = setup.participants[1].name
        events = []

        def chaos(parties, info):
            folder = parties.root / victim
            if not events and info["phase"] == "Iterating" and _submits(folder, 1):
                parties.kill(victim)  # SIGKILL after its submission of iteration 1
                events.append((victim, info["iteration"]))
                parties.spawn(victim)  # resumes from its folder and the chain
            elif len(events) == 1 and info["phase"] == "Iterating" and info["iteration"] >= 3:
                parties.kill("coordinator")  # and the coordinator, in iteration 3 or later
                events.append(("coordinator", info["iteration"]))
                parties.spawn("coordinator")  # replays its answers from the sums on chain

        out = spawn.run(setup, chain, market, rule, tmp_path / "parties", key_bits=2048, verify_openings=True,
                        windows={}, settle_unconverged=False, watch=chaos)
    assert [who for who, _ in events] == [victim, "coordinator"], events
    assert out.settled and alone.settled
    assert out.settlement.amounts == alone.settlement.amounts
    assert out.settlement.payees == alone.settlement.payees
    assert len(out.iterations) == len(alone.iterations)
    assert out.transport.dropped_at == {}  # the restart came before the deadline: nobody dropped
    # the restarted party sent nothing twice: one submission per iteration, one reveal
    folder = tmp_path / "parties" / victim
    assert all(_submits(folder, k) == 1 for k in range(len(out.iterations)))
    kinds = [json.loads(x)["kind"] for x in (folder / "transactions.jsonl").read_text().splitlines()]
    assert kinds.count("reveal") == 1 and kinds.count("register") == 1
    # each party's folder holds its own account key and no other party's
    keys = {}
    for party in (tmp_path / "parties").iterdir():
        first = json.loads((party / "secrets.jsonl").read_text().splitlines()[0])
        assert first["k"] == "account"
        keys[party.name] = first["v"]
        assert oct((party / "secrets.jsonl").stat().st_mode)[-3:] == "600"
    for name, key in keys.items():
        for other in (tmp_path / "parties").iterdir():
            if other.name != name:
                assert key not in (other / "secrets.jsonl").read_text()
    # only the coordinator's folder holds the Paillier key
    holders = [p.name for p in (tmp_path / "parties").iterdir() if '"paillier"' in (p / "secrets.jsonl").read_text()]
    assert holders == ["coordinator"]


def test_run_processes_refuses_what_it_cannot_do_before_any_work(tmp_path):
    from offchain.cli import main

    for argv, says in [(["--mode", "private"], "on a node"), (["--chain", "embedded"], "on a node"),
                       (["--drop", "1"], "stop a party's process")]:
        code = main(["run", str(SCENARIO), "--processes", *argv, "--out", str(tmp_path / "x")])
        assert code == 2, argv
        assert not (tmp_path / "x").exists()
    code = main(["run", str(SCENARIO.parent / "storage10.toml"), "--processes", "--out", str(tmp_path / "x")])
    assert code == 2 and not (tmp_path / "x").exists()


def test_party_command_checks_its_folder(tmp_path, capsys):
    from offchain.cli import main

    code = main(["party", "--chain", "http://127.0.0.1:1", "--market", "0x" + "1" * 40, "--round", "1",
                 "--name", "H01", "--keys", str(tmp_path)])
    assert code == 2
    assert "not a party's folder" in capsys.readouterr().err


def test_a_killed_processes_run_resumes_and_its_round_audits(tmp_path):
    """SIGKILL the whole `gridshare run --processes` (its party processes die with it) in the middle
    of the round; `gridshare resume` restarts every party from its folder and the round settles."""
    import signal
    import subprocess
    import sys
    import time

    from offchain.audit.command import run_audit

    out = tmp_path / "run"
    with start_anvil() as node:
        run = subprocess.Popen([sys.executable, "-m", "offchain.cli", "run", str(SCENARIO), "--prosumers", "3",
                                "--chain", node.url, "--processes", "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = out / "parties" / "round0" / "coordinator" / "iterations.jsonl"
        deadline = time.monotonic() + 240
        while not (log.exists() and len(log.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
            assert run.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        run.send_signal(signal.SIGKILL)
        run.wait()
        done = subprocess.run([sys.executable, "-m", "offchain.cli", "resume", str(out)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-500:]
        record = json.loads((out / "run.json").read_text())
        assert record["parameters"]["processes"] and record["convergence"]["converged"]
        assert all(p["payment"] is not None for p in record["parties"])
        findings, _ = run_audit(connect(node.url), record["chain"]["contracts"]["market"])
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]


def test_a_prosumer_process_that_never_comes_back_is_dropped_and_the_round_settles(tmp_path):
    """A prosumer killed for good: once the coordinator's patience is up it mines to the deadline and
    drops it, the others submit that iteration again and the round settles; started again after
    the end, the party withdraws what the round left it."""
    mechanism, scenario, factory = _setup(prosumers=5)
    with start_anvil() as node:
        chain = connect(node.url)
        operator = chain.accounts(1)[0]
        market = Market.deploy(chain, operator)
        rule = deploy_rule(chain, mechanism.rule_contract, operator)
        setup = factory()
        victim = setup.participants[2].name
        gone = []

        def crash(parties, info):
            if not gone and info["phase"] == "Iterating" and info["iteration"] >= 1:
                parties.kill(victim)
                gone.append(info["iteration"])

        out = spawn.run(setup, chain, market, rule, tmp_path / "parties", key_bits=2048, verify_openings=True,
                        windows={}, settle_unconverged=False, patience=3.0, watch=crash)
        assert gone and out.settled
        k = out.transport.dropped_at[2]  # the iteration it was killed in, or the next if it had submitted
        assert list(out.transport.dropped_at) == [2] and k in (gone[0], gone[0] + 1)
        assert out.transport.attempts[k] == 2  # that iteration was submitted again without it
        account = out.transport.addresses[victim]
        left = market.balance(out.transport.chain_info.round_id, account)
        assert left > 0  # its collateral, less what the fallback settled
        from offchain.cli import main

        assert main(["party", "--chain", node.url, "--market", market.address, "--round",
                     str(out.transport.chain_info.round_id), "--name", victim,
                     "--keys", str(tmp_path / "parties" / victim)]) == 0
        assert market.balance(out.transport.chain_info.round_id, account) == 0


def test_when_the_coordinator_process_dies_for_good_the_others_cancel_and_withdraw(tmp_path):
    """Every round ends: a coordinator that never comes back misses its deadline; once their
    patience for it is up the other parties cancel the round (its bond forfeited to them) and
    withdraw; the run says the coordinator's process failed."""
    from offchain.errors import ProtocolViolation

    mechanism, scenario, factory = _setup()
    with start_anvil() as node:
        chain = connect(node.url)
        operator = chain.accounts(1)[0]
        market = Market.deploy(chain, operator)
        rule = deploy_rule(chain, mechanism.rule_contract, operator)
        setup = factory()
        killed = []

        def crash(parties, info):
            if not killed and info["phase"] == "Iterating" and info["iteration"] >= 1:
                parties.kill("coordinator")
                killed.append(parties.round_id)

        with pytest.raises(ProtocolViolation, match="coordinator"):
            spawn.run(setup, chain, market, rule, tmp_path / "parties", key_bits=2048, verify_openings=True,
                      windows={}, settle_unconverged=False, patience=2.0, watch=crash)
        rid = killed[0]
        assert market.round_info(rid)["phase"] == "Closed"
        from eth_account import Account

        for party in (tmp_path / "parties").iterdir():
            if party.name == "coordinator":
                continue
            key = json.loads((party / "secrets.jsonl").read_text().splitlines()[0])["v"]
            assert market.balance(rid, Account.from_key(bytes.fromhex(key)).address) == 0, party.name


def test_when_the_coordinator_dies_after_concluding_the_prosumers_settle_the_round(tmp_path):
    """Anyone may settle: a coordinator that dies once it concluded leaves the prosumers to move the
    chain past the challenge window, reveal and settle themselves, with the in-process payments."""
    mechanism, scenario, factory = _setup()
    with start_anvil() as node:
        chain = connect(node.url)
        operator = chain.accounts(1)[0]
        market = Market.deploy(chain, operator)
        rule = deploy_rule(chain, mechanism.rule_contract, operator)
        alone = run_round(factory(), ChainTransport(chain, market=market, rules={mechanism.rule_contract: rule}))
        killed = []

        def crash(parties, info):
            if not killed and info["phase"] == "Concluded":
                parties.kill("coordinator")
                killed.append(info["iteration"])

        from offchain.errors import ProtocolViolation

        with pytest.raises(ProtocolViolation, match="coordinator"):  # its process failed: the run says so
            spawn.run(factory(), chain, market, rule, tmp_path / "parties", key_bits=2048, verify_openings=True,
                      windows={}, settle_unconverged=False, patience=2.0, watch=crash)
        rid = max(e["args"]["roundId"] for e in market.contract.events.RoundCreated.get_logs(from_block=0))
        assert killed and market.round_info(rid)["phase"] == "Settled"
        settled = market.settlement_of(rid).payments
        assert sorted(settled.values()) == sorted(alone.transport.market.settlement_of(alone.transport.round_id).payments.values())
