"""`gridshare bench fuzz | registration | aggregate | blame | load`: --help, one-line errors before
any heavy work, and each at a size that runs in seconds (the full runs are `make bench`'s)."""
from __future__ import annotations

import json

import pytest

from offchain.cli import main

from .conftest import node_available

no_node = pytest.mark.skipif(not node_available(), reason="node or node_modules/.bin/anvil missing: run `make install`")


@pytest.mark.parametrize("bench", ["fuzz", "registration", "aggregate", "blame", "load", "processes"])
def test_every_new_bench_has_help(bench, capsys):
    assert main(["bench", bench, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: gridshare bench" in out and "--json" in out


@pytest.mark.parametrize("argv, expected", [
    (["fuzz", "--examples", "0"], "--examples: must be at least 1"),
    (["fuzz", "--steps", "x"], "expected an integer"),
    (["registration", "--sizes", "10,2"], "at least 3 participants"),
    (["registration", "--sizes", "10,ten"], "comma-separated integers"),
    (["aggregate", "--participants", "2"], "must be at least 3"),
    (["aggregate", "--key-bits", "1024"], "do not fit a 1024-bit key"),
    (["load", "--drop-rate", "1"], "--drop-rate must be in [0, 1)"),
    (["load", "--drop-rate", "many"], "invalid float value"),
    (["load", "--prosumers", "4", "--drop-rate", "0.4"], "leaves 2 of 4 prosumers; a round needs at least 3"),
    (["load", "--drop-at", "3", "--iterations", "3"], "nobody would drop out"),
    (["load", "--json", "{file}/load.json"], "is a file, not a folder"),
    (["aggregate", "--json", "{file}/aggregate.json"], "is a file, not a folder"),
    (["registration", "--json", "{file}/registration.json"], "is a file, not a folder"),
    (["blame", "--what", "recovery"], "invalid choice: 'recovery'"),
    (["blame", "--json", "{file}/blame.json"], "is a file, not a folder"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_exits_2_with_one_line(argv, expected, capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert main(["bench", *(a.replace("{file}", str(tmp_path / "file")) for a in argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gridshare: error: ") and "\n" not in err and expected in err


def test_bench_fuzz_reports_sequences_and_keeps_every_invariant(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    assert main(["bench", "fuzz", "--examples", "3", "--steps", "12", "--seed", "7", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert not report["failed"] and report["examples"] >= 3 and report["transactions"] > 0
    assert "invariants" in capsys.readouterr().out


@pytest.mark.anvil
@no_node
def test_bench_aggregate_fits_the_cap_and_decodes_on_chain(tmp_path):
    out = tmp_path / "aggregate.json"
    assert main(["bench", "aggregate", "--participants", "6", "--chunk", "4", "--hardfork", "prague",
                 "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"]["prague"]
    assert run["transactions"] == 2 and [c["ciphertexts"] for c in run["chunks"]] == [4, 2]
    assert run["fits_cap"] and run["conclude"]["sums_match"] and run["conclude"]["aggregate_is_product"]


@pytest.mark.anvil
@no_node
def test_bench_aggregate_refuses_an_unknown_hardfork(capsys):
    assert main(["bench", "aggregate", "--participants", "3", "--hardfork", "nosuchfork"]) == 2
    assert "--hardfork nosuchfork" in capsys.readouterr().err


@pytest.mark.anvil
@no_node
def test_bench_registration_reports_gas_keys_and_degree(tmp_path):
    out = tmp_path / "registration.json"
    assert main(["bench", "registration", "--sizes", "4", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["sizes"]["4"]
    assert (r["degree"], r["complete_graph"]) == (3, True)
    assert (r["phase_after_start"], r["active_after_start"]) == ("Iterating", 4)
    assert r["register_gas"]["count"] == r["deposit_gas"]["count"] == 4 and r["start_gas"] > 0
    assert r["keys_bytes"] == {"mean": 66.0, "min": 66, "max": 66, "count": 4}  # A || Y(0), compressed points
    assert "threshold" not in r and "share_gas" not in r


@pytest.mark.anvil
@no_node
def test_bench_blame_measures_the_blame_step_at_both_hardforks(tmp_path):
    out = tmp_path / "blame.json"
    assert main(["bench", "blame", "--what", "blame", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["steps"] == ["blame"] and list(report["chains"]) == ["default", "prague"]
    assert [c["osaka_pricing"] for c in report["chains"].values()] == [True, False]
    for chain in report["chains"].values():
        r = chain["blame"]
        assert r["settled"] and r["matches_mirror"] and r["blamed"][r["hostile"]]["fault"] == "SumCheated"
        assert r["open_blame_gas"]["count"] == r["participants"] - 1  # everyone but the cheat clears itself
        assert r["settle_starting_blame_gas"] > 0 and r["settle_after_blame_gas"] > 0


@pytest.mark.anvil
@no_node
def test_bench_blame_measures_the_dispute_step_and_the_rerun(tmp_path):
    out = tmp_path / "blame.json"
    assert main(["bench", "blame", "--what", "dispute", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["steps"] == ["dispute"]
    for chain in report["chains"].values():
        r = chain["dispute"]
        n = r["participants"]
        assert r["disputed"] and list(r["blamed"]) == [r["hostile"]]
        assert r["blamed"][r["hostile"]]["fault"] == "FalseCheck" and int(r["blamed"][r["hostile"]]["forfeited"]) > 0
        assert r["attempts"] == {str(r["iteration"]): 2} and r["challenges"] == 0
        assert r["open_check_gas"]["count"] == n and r["accuse_gas"]["count"] == 1  # every submitter opens
        assert r["dispute_gas"] > 0 and r["advance_gas"] > 0
        assert r["rerun"]["submit_gas"]["count"] == n - 1 and r["rerun"]["aggregate_gas"] > 0  # without the culprit
        assert r["settled"] and r["matches_mirror"]  # the culprit's reveal does not count: it owes nothing


@pytest.mark.anvil
@no_node
def test_bench_load_runs_rounds_with_dropouts_and_loses_nothing(tmp_path):
    out = tmp_path / "load.json"
    assert main(["bench", "load", "--prosumers", "4", "--rounds", "2", "--iterations", "2", "--drop-rate", "0.25",
                 "--key-bits", "2048", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["rounds_completed"] == 2 and all(x["dropped"] == 1 for x in r["rounds"])
    assert all(x["attempts"] == {"1": 2} for x in r["rounds"]) and r["reruns"] == 2  # re-run without the dropped
    assert r["transactions"]["lost"] == r["transactions"]["failed"] == r["transactions"]["unaccounted"] == 0
    assert r["rounds_with_tokens_left"] == [] and all(x["tokens_left"] == 0 for x in r["rounds"])
    assert r["slowest"]["transaction_kind_by_total_time"] in r["chain_calls"]
