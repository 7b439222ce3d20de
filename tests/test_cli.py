"""The command line: --help everywhere, one-line errors caught before any heavy work that leave
nothing behind, `gridshare run` for every mechanism (one record schema), exit 3 when a run does not
converge, deploy any mechanism."""
from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from offchain.cli import build_parser, main
from offchain.record import validate

from .conftest import ROOT, SCENARIO, node_available
from .record_doc import undocumented

STORAGE = ROOT / "scenarios" / "storage10.toml"
COMMANDS = [[], ["run"], ["demo"], ["resume"], ["refund"], ["deploy"], ["audit"], ["chain"], ["chain", "up"], ["bench"], ["bench", "round"],
            ["bench", "audit"], ["bench", "admm"], ["bench", "settle"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "gridshare")
def test_every_command_has_help(command, capsys):
    assert main(command + ["--help"]) == 0
    assert "usage: gridshare" in capsys.readouterr().out


def _fails(argv, capsys, within: float = 10.0) -> str:
    """Exit status 2, one line on stderr, no traceback, before any heavy work."""
    t0 = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t0 < within
    err = capsys.readouterr().err.strip()
    assert err.startswith("gridshare: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, expected", [
    (["demo", "--prosumers", "2"], "--prosumers: must be at least 3"),
    (["demo", "--prosumers", "100001"], "prosumers: must be <= 100000"),
    (["demo", "--drop", "1", "--drop-at", "99"], "--drop-at 99 never comes: the round runs iterations 0..49 at most"),
    (["demo", "--drop-at", "3"], "--drop-at 3 without --drop"),
    (["demo", "--key-bits", "2047"], "--key-bits: must be even"),
    (["demo", "--key-bits", "7"], "--key-bits: must be in [512, 8192]"),
    (["run", "/nonexistent.toml"], "scenario file not found"),
    (["run", str(ROOT / "scenarios")], "is a folder"),
    (["demo", "--mode", "private", "--chain", "http://127.0.0.1:9"], "--chain and --deployment run the chain mode"),
    (["demo", "--case", "3"], "--case is an option of the storage-p2p mechanism"),
    (["run", str(STORAGE), "--case", "5"], "invalid choice"),
    (["run", str(STORAGE), "--key-bits", "1024"], "do not fit a 1024-bit key"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_exits_2_with_one_line_before_heavy_work(argv, expected, capsys, tmp_path):
    err = _fails(argv + ["--out", str(tmp_path / "o")], capsys)
    assert expected in err
    assert not (tmp_path / "o").exists()


def test_output_folders_that_cannot_take_the_run_are_refused_and_kept(capsys, tmp_path):
    holds = tmp_path / "holds"
    holds.mkdir()
    (holds / "run.json").write_text("{}")
    assert "another run" in _fails(["demo", "--out", str(holds)], capsys)
    assert (holds / "run.json").read_text() == "{}"
    assert "is a file" in _fails(["demo", "--out", str(holds / "run.json" / "sub")], capsys)
    assert "is a folder" in _fails(["deploy", "--chain", "http://127.0.0.1:1", "--out", str(holds)], capsys)


def test_a_scenario_field_of_the_wrong_type_or_out_of_range_is_named(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.read_text().replace("cvar_alpha = 0.90", 'cvar_alpha = "high"'))
    assert "risk.cvar_alpha" in _fails(["demo", "--scenario", str(bad), "--out", str(tmp_path / "o")], capsys)
    bad.write_text(SCENARIO.read_text().replace("efficiency = 0.95", "efficiency = 1.5", 1))
    assert "battery.efficiency" in _fails(["run", str(bad), "--out", str(tmp_path / "o")], capsys)
    bad.write_text(STORAGE.read_text().replace("[storage]", "[storage]\nbogus = 1", 1))
    assert "storage.bogus" in _fails(["run", str(bad), "--out", str(tmp_path / "o")], capsys)
    bad.write_text(SCENARIO.read_text().replace('mechanism = "tariff"', 'mechanism = "barter"'))
    assert "mechanism: unknown mechanism 'barter'" in _fails(["run", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()


def test_an_unreachable_or_non_ethereum_url_is_refused(capsys, tmp_path):
    assert "127.0.0.1:9" in _fails(["demo", "--chain", "http://127.0.0.1:9", "--out", str(tmp_path / "o")], capsys)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        err = _fails(["demo", "--chain", f"http://127.0.0.1:{server.server_port}", "--out", str(tmp_path / "o")], capsys)
    finally:
        server.shutdown()
    assert "not an Ethereum JSON-RPC node" in err
    assert "cannot reach" in _fails(["audit", "--chain", "http://127.0.0.1:1", "--market", "0x" + "00" * 19 + "01"],
                                    capsys, within=20)


def test_the_demo_writes_a_valid_record_and_a_self_contained_report(capsys, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--prosumers", "3", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    record = json.loads((out / "run.json").read_text())
    assert validate(record) == [] and undocumented(record) == []
    assert record["mechanism"] == "tariff" and record["convergence"]["converged"]
    assert record["timings"]["wall"] >= record["timings"]["prepare"] + record["timings"]["round total"]
    assert all(isinstance(x, int) for x in record["parameters"]["rule"]["floor"] + record["parameters"]["rule"]["cap"])
    assert summary["chain"]["contracts"]["market"] == record["chain"]["contracts"]["market"]
    prosumers = [p for p in record["parties"] if p["role"] == "prosumer"]
    assert len(prosumers) == 3 and all(p["payment"] and set(p["bill"]) == {"internal", "grid share"} for p in prosumers)
    # main's 48k + the round's set of seen ciphertexts (a new slot, 22k) + the residue check and the next mask point
    assert record["gas"]["submission_mean"] <= 110_000
    kinds = {t["kind"] for t in record["transactions"]}
    assert {"create_round", "register", "submit", "aggregate", "conclude", "settle", "withdraw"} <= kinds
    assert record["software"]["git_commit"] and record["scenario"]["profiles"]["prosumers"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 7 and "http://" not in html.replace("http://127", "")
    assert "Parties" in html and prosumers[0]["name"] in html  # the CLI's per-party table
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]


def test_a_run_that_does_not_converge_says_so_first_exits_3_and_settles_nothing(capsys, tmp_path):
    unconverged = tmp_path / "unconverged.toml"
    unconverged.write_text(SCENARIO.read_text().replace("max_iterations = 50", "max_iterations = 2"))
    out = tmp_path / "run"
    assert main(["run", str(unconverged), "--prosumers", "3", "--out", str(out)]) == 3
    printed = capsys.readouterr().out
    assert printed.lstrip().startswith("NOT CONVERGED: iteration cap 2 reached")
    record = json.loads((out / "run.json").read_text())
    assert validate(record) == [] and record["convergence"]["converged"] is False and undocumented(record) == []
    assert all(p["payment"] is None and p["cost_shared"] is None for p in record["parties"])
    assert "saving" not in printed.replace("no saving", "") and "nothing was traded" in record["summary"][0][1]
    assert {t["kind"] for t in record["transactions"]} >= {"close", "withdraw"}
    assert "settle" not in {t["kind"] for t in record["transactions"]}
    settled = tmp_path / "settled"
    assert main(["run", str(unconverged), "--prosumers", "3", "--settle-unconverged", "--mode", "plaintext",
                 "--out", str(settled)]) == 3
    record = json.loads((settled / "run.json").read_text())
    assert sum(int(p["payment"]["base_units"]) for p in record["parties"]) == 0


def test_run_writes_the_same_record_schema_for_the_storage_mechanism(tmp_path, capsys):
    out = tmp_path / "storage"
    assert main(["run", str(STORAGE), "--case", "3", "--prosumers", "3", "--out", str(out)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert validate(record) == [] and undocumented(record) == []
    assert record["mechanism"] == "storage-p2p" and record["rounds"][0]["matches_mirror"]
    roles = {p["role"] for p in record["parties"]}
    assert roles == {"prosumer", "operator", "centre", "grid"}
    prosumers = [p for p in record["parties"] if p["role"] == "prosumer"]
    assert all(set(p["bill"]) == {"rent", "usage", "transmission", "grid", "p2p"} for p in prosumers)
    assert all(p["cost_shared"] <= p["cost_alone"] + 0.5 for p in prosumers)
    assert record["details"]["cases"]["3"]["admm"]["converged"] and abs(record["details"]["reference_gap_pct"]["3"]) < 0.1
    assert "Rented capacity per prosumer" in (out / "report.html").read_text()
    printed = capsys.readouterr().out
    assert "case 3" in printed
    header = next(line for line in printed.splitlines() if "cost alone" in line)
    assert all(item in header for item in ("rent", "usage", "transmission", "grid", "p2p"))  # a pipe gets every column


def test_bench_round_reports_phases_gas_and_the_privacy_overhead(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "round", "--prosumers", "3", "--no-verify-openings", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    run = result["private"]["embedded"]
    assert {"solve", "encrypt", "chain", "decrypt"} <= set(run["phases"])
    assert 0 < run["gas_per_submission"] <= 110_000
    assert run["private_over_plaintext"] > 1 and run["price_gap_vs_plaintext"] == 0


@pytest.mark.anvil
@pytest.mark.skipif(not node_available(), reason="node or node_modules/.bin/anvil missing: run `make install`")
def test_deploy_any_mechanism_and_run_on_its_deployment_file(tmp_path, capsys):
    from offchain.chain.backends import start_anvil

    with start_anvil() as node:
        file = tmp_path / "storage.json"
        assert main(["deploy", "--chain", node.url, "--mechanism", "storage-p2p", "--out", str(file)]) == 0
        deployment = json.loads(file.read_text())
        assert deployment["mechanism"] == "storage-p2p" and "StorageRule" in deployment["contracts"]
        out = tmp_path / "run"
        assert main(["run", str(STORAGE), "--case", "1", "--prosumers", "3", "--chain", node.url,
                     "--deployment", str(file), "--out", str(out)]) == 0
        record = json.loads((out / "run.json").read_text())
        assert record["chain"]["contracts"] == {"market": deployment["contracts"]["PrivateRounds"],
                                                "token": deployment["contracts"]["SettlementToken"],
                                                "rule": deployment["contracts"]["StorageRule"]}
        capsys.readouterr()
        assert "deploys the 'storage-p2p' mechanism" in _fails(
            ["demo", "--chain", node.url, "--deployment", str(file), "--out", str(tmp_path / "o")], capsys)
        other = tmp_path / "other.json"
        other.write_text(file.read_text().replace('"chain_id": 31337', '"chain_id": 1'))
        assert "chain id 1" in _fails(["run", str(STORAGE), "--chain", node.url, "--deployment", str(other),
                                       "--out", str(tmp_path / "o2")], capsys)


def test_the_parser_knows_every_command():
    parser = build_parser()
    assert parser.parse_args(["chain", "up", "--port", "0"]).port == 0


def test_the_record_document_names_every_kind_of_transaction_the_chain_transport_records():
    import re

    from .record_doc import documented

    source = (ROOT / "offchain" / "protocol" / "transport.py").read_text()
    kinds = set(re.findall(r'self\._record\("([a-z_ ]+)"', source))
    assert len(kinds) >= 15 and kinds <= documented()["gas"], kinds - documented()["gas"]


def test_mechanism_options_live_in_its_own_namespace_and_a_broken_mechanism_breaks_only_itself(tmp_path, capsys):
    """Two mechanisms may declare the same flag; one that does not load leaves every other command
    working; an option shadowing one of `gridshare run`'s is that mechanism's error."""
    from offchain import registry
    from offchain.cli import main, mechanism_parser
    from offchain.errors import MechanismError
    from offchain.framework import Option

    registry.register("broken", "tests.no_such_package")
    try:
        assert main(["chain", "up", "--help"]) == 0
        assert main(["run", "--help"]) == 0
        out = capsys.readouterr().out
        assert "broken:" in out and "not available" in out and "--case" in out
        code = main(["run", "scenarios/community10.toml", "--case", "2", "--out", str(tmp_path / "x")])
        assert code == 2 and "option of the storage-p2p mechanism" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    finally:
        registry.unregister("broken")
    storage = registry.get("storage-p2p")

    class Shadowing:
        name = "shadowing"
        options = (Option("--seed", "a clash with run's own"),)

    class SameFlag:
        name = "same-flag"
        options = storage.options  # the same --case as storage-p2p: fine, each has its own namespace

    assert mechanism_parser(SameFlag()).parse_args(["--case", "2"]).case == "2"
    with pytest.raises(MechanismError, match="shadows"):
        mechanism_parser(Shadowing())


def test_duplicate_prosumer_names_are_named_by_position():
    from types import SimpleNamespace

    from offchain.errors import ScenarioError
    from offchain.models.scenario import check_unique_names

    with pytest.raises(ScenarioError, match=r"prosumer\[2\]\.name.*prosumer\[0\]"):
        check_unique_names([SimpleNamespace(name="A"), SimpleNamespace(name="B"), SimpleNamespace(name="A")])
