"""The command line: --help everywhere, one-line errors that leave nothing behind, a full demo."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from offchain.cli import build_parser, main

from .conftest import ROOT, SCENARIO

COMMANDS = [[], ["demo"], ["deploy"], ["audit"], ["chain"], ["chain", "up"], ["bench"], ["bench", "round"], ["bench", "audit"], ["bench", "admm"], ["run"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "gridshare")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: gridshare" in capsys.readouterr().out


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        code = main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gridshare: error: ") and "\n" not in err
    return err


def test_fewer_than_two_prosumers_is_refused(capsys, tmp_path):
    assert "--prosumers" in _fails(["demo", "--prosumers", "1", "--out", str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()


def test_a_scenario_field_of_the_wrong_type_is_named(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.read_text().replace("cvar_alpha = 0.90", 'cvar_alpha = "high"'))
    assert "risk.cvar_alpha" in _fails(["demo", "--scenario", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()


def test_a_scenario_field_out_of_range_is_named(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.read_text().replace("efficiency = 0.95", "efficiency = 1.5", 1))
    assert "battery.efficiency" in _fails(["demo", "--scenario", str(bad), "--out", str(tmp_path / "o")], capsys)


def test_an_unreachable_rpc_url_is_refused(capsys, tmp_path):
    err = _fails(["demo", "--chain", "http://127.0.0.1:9", "--out", str(tmp_path / "o")], capsys)
    assert "127.0.0.1:9" in err
    assert not (tmp_path / "o").exists()


def test_a_url_that_is_not_an_ethereum_node_is_refused(capsys, tmp_path):
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


def test_an_output_folder_holding_another_run_is_refused_and_kept(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    assert "another run" in _fails(["demo", "--out", str(out)], capsys)
    assert (out / "run.json").read_text() == "{}"


def test_the_demo_writes_run_json_and_a_self_contained_report(capsys, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--prosumers", "3", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    run = json.loads((out / "run.json").read_text())
    assert run["converged"] and summary["chain"]["market"] == run["chain"]["market"]
    assert len(run["prosumers"]) == 3 and len(run["final_tariff"]) == 24
    assert run["gas"]["submission_mean"] <= 60_000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "http://" not in html.replace("http://127", "")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]


def test_the_parser_knows_every_command():
    parser = build_parser()
    assert parser.parse_args(["chain", "up", "--port", "0"]).port == 0


def test_bench_round_reports_phases_gas_and_the_privacy_overhead(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "round", "--prosumers", "2", "--no-verify-openings", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    run = result["private"]["embedded"]
    assert {"solve", "encrypt", "chain", "decrypt"} <= set(run["phases"])
    assert 0 < run["gas_per_submission"] <= 60_000
    assert run["private_over_plaintext"] > 1 and run["tariff_gap_vs_plaintext"] <= 1e-6


def test_a_demo_runs_on_the_market_of_a_deployment_file(tmp_path, capsys):
    from offchain.chain.backends import start_anvil
    from .conftest import node_available
    if not node_available():
        pytest.skip("node or node_modules/.bin/anvil missing: run `make install`")
    with start_anvil() as node:
        file = tmp_path / "deployment.json"
        assert main(["deploy", "--chain", node.url, "--out", str(file)]) == 0
        market = json.loads(file.read_text())["contracts"]["TariffMarket"]
        out = tmp_path / "demo"
        assert main(["demo", "--prosumers", "2", "--chain", node.url, "--deployment", str(file),
                     "--out", str(out), "--no-verify-openings"]) == 0
        assert json.loads((out / "run.json").read_text())["chain"]["market"] == market
        other = tmp_path / "other.json"
        other.write_text(file.read_text().replace('"chain_id": 31337', '"chain_id": 1'))
        assert main(["demo", "--chain", node.url, "--deployment", str(other), "--out", str(tmp_path / "o2")]) == 2
    assert "chain id 1" in capsys.readouterr().err


def test_run_prints_the_case_table_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "storage"
    assert main(["run", str(ROOT / "scenarios" / "storage10.toml"), "--case", "4", "--method", "qp",
                 "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["mechanism"] == "storage-p2p" and list(run["cases"]) == ["4"]
    assert len(run["rented_energy"]["4"]) == len(run["names"])
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 3
    assert "case 4" in capsys.readouterr().out


def test_run_through_the_chain_settles_in_tokens(tmp_path, capsys):
    out = tmp_path / "chain"
    assert main(["run", str(ROOT / "scenarios" / "storage10.toml"), "--case", "3", "--prosumers", "3",
                 "--method", "chain", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    st = run["settlement"]["3"]
    assert run["method"] == "chain" and st["matches_offchain_mirror"]
    assert sum(st["payments"].values()) == 0 and len(st["bills"]) == 3
    assert run["cases"]["3"]["admm"]["converged"] and abs(run["reference_gap_pct"]["3"]) < 0.1
    assert "On-chain settlement" in (out / "report.html").read_text()
    assert "settled on chain" in capsys.readouterr().out


def test_run_rejects_chain_with_another_method(tmp_path, capsys):
    err = _fails(["run", str(ROOT / "scenarios" / "storage10.toml"), "--method", "qp", "--chain",
                  "http://127.0.0.1:1", "--out", str(tmp_path / "o")], capsys)
    assert "--method chain" in err and not (tmp_path / "o").exists()


def test_run_names_a_bad_storage_scenario_field(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    text = (ROOT / "scenarios" / "storage10.toml").read_text()
    bad.write_text(text.replace("[storage]", "[storage]\nbogus = 1", 1))
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bogus" in capsys.readouterr().err and not (tmp_path / "o").exists()
