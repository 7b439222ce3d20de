"""After `gridshare demo --chain URL` on anvil, the audit by URL passes and cast decodes the events
(the Bill events of a storage round too)."""
from __future__ import annotations

import json
import subprocess

import pytest

from offchain.chain.backends import start_anvil
from offchain.cli import main

from ..conftest import ROOT, node_available

CAST = ROOT / "node_modules" / ".bin" / "cast"
pytestmark = [pytest.mark.anvil,
              pytest.mark.skipif(not node_available(), reason="node or node_modules/.bin/anvil missing: run `make install`")]


@pytest.fixture(scope="module")
def demo_on_anvil(tmp_path_factory):
    out = tmp_path_factory.mktemp("anvil") / "demo"
    with start_anvil() as node:
        assert main(["demo", "--prosumers", "4", "--chain", node.url, "--out", str(out)]) == 0
        yield node, json.loads((out / "run.json").read_text())


def test_the_audit_by_url_passes_and_writes_its_report(demo_on_anvil, tmp_path, capsys):
    node, run = demo_on_anvil
    out = tmp_path / "audit"
    code = main(["audit", "--chain", node.url, "--market", run["chain"]["contracts"]["market"], "--out", str(out)])
    report = json.loads((out / "audit.json").read_text())
    assert code == 0 and report["passed"], [f"{f['check']}: {f['detail']}" for f in report["findings"] if not f["ok"]]
    assert len(report["findings"]) > 20
    assert (out / "audit.html").read_text().count("data:image/png;base64,") >= 3
    assert "every check passed" in capsys.readouterr().out


@pytest.mark.skipif(not CAST.exists(), reason="node_modules/.bin/cast missing: run `make install`")
def test_cast_decodes_the_published_aggregates(demo_on_anvil):
    node, run = demo_on_anvil
    logs = json.loads(subprocess.run(
        [CAST, "logs", "--json", "--rpc-url", node.url, "--address", run["chain"]["contracts"]["market"], "--from-block", "0",
         "Published(uint256 indexed,uint32 indexed,bytes,bytes,int64[],uint64[])"],
        capture_output=True, text=True, check=True).stdout)
    assert len(logs) == len(run["iterations"]) - 1  # the last iteration concludes instead
    decoded = subprocess.run([CAST, "decode-event", "--json", "--sig", "Published(bytes,bytes,int64[],uint64[])",
                              logs[0]["data"]], capture_output=True, text=True, check=True).stdout
    sums = [int(v) for v in json.loads(decoded)[2]]
    assert sums == run["iterations"][0]["sums"]
