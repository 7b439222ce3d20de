"""The brownie workflow of the README: `brownie compile` with the project's solc (the
~/.solcx/solc-v0.8.30 shim), `brownie run scripts/deploy.py --network gridshare-anvil` against an
anvil started here, then `gridshare demo --deployment FILE` settling a round on those contracts.

brownie runs in .venv-brownie (`make brownie`, which `make test` runs first) with HOME set to a
temporary folder: scripts/brownie-setup puts the compiler shim and the networks there, as `make
brownie` does in the real home, and the test points gridshare-anvil at its own anvil's port without
touching the user's ~/.brownie."""
import json
import os
import subprocess

import pytest
from web3.logs import DISCARD

from offchain import cli
from offchain.chain.backends import connect, dev_account, start_anvil
from offchain.chain.compiler import compile_contracts
from offchain.chain.deployment import abi_hash
from tests.conftest import ROOT

VENV = ROOT / ".venv-brownie" / "bin"

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.skipif(not (VENV / "brownie").exists(),
                       reason=".venv-brownie is missing: `make brownie` creates it (`make test` runs it first)"),
]


def run(*cmd: str, env: dict) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_brownie_compile_deploy_then_a_round_settles_on_the_deployed_contracts(tmp_path, capsys):
    deployment, out, home = tmp_path / "deployment.json", tmp_path / "run", tmp_path / "home"
    home.mkdir()
    operator = dev_account(0).address
    env = {k: v for k, v in os.environ.items() if k != "SOLCX_BINARY_PATH"}
    env.update(HOME=str(home), GRIDSHARE_DEPLOYMENT=str(deployment), GRIDSHARE_OPERATOR=operator)
    brownie = str(VENV / "brownie")
    run(str(VENV / "python"), "scripts/brownie-setup", env=env)
    assert (home / ".solcx" / "solc-v0.8.30").exists()

    compiled = run(brownie, "compile", "--all", env=env)  # --all: through the compiler even if built before
    assert "Solc version: 0.8.30" in compiled and "Project has been compiled" in compiled, compiled
    with start_anvil() as node:
        run(brownie, "networks", "modify", "gridshare-anvil", f"port={node.port}", env=env)
        deployed = run(brownie, "run", "scripts/deploy.py", "--network", "gridshare-anvil", env=env)
        assert "Terminating local RPC client" not in deployed  # attached to our anvil, started none

        record = json.loads(deployment.read_text())
        artifacts = compile_contracts()
        assert record["schema"] == "gridshare.deployment/1" and record["tool"] == "brownie"
        assert record["chain_id"] == 31337
        assert record["abi_sha256"] == {n: abi_hash(artifacts[n].abi) for n in ("TariffMarket", "SettlementToken")}
        market = record["contracts"]["TariffMarket"]
        chain = connect(node.url)
        assert chain.contract("SettlementToken", record["contracts"]["SettlementToken"]).functions.owner().call() == operator

        status = cli.main(["demo", "--chain", node.url, "--deployment", str(deployment), "--prosumers", "2",
                           "--no-verify-openings", "--out", str(out)])
        capsys.readouterr()
        assert status == 0
        result = json.loads((out / "run.json").read_text())
        assert result["chain"]["market"] == market
        assert result["converged"] is True
        paid = sum(p["payment_tokens"] for p in result["prosumers"]) + result["community"]["grid_payment_tokens"]
        assert abs(paid) < 1e-9

        # on chain: the settlement is a transaction to the deployed market whose payments sum to zero
        (settle,) = result["transactions"]["settle"]
        receipt = chain.w3.eth.get_transaction_receipt(settle)
        assert receipt.status == 1 and receipt.to == market
        payments = chain.contract("TariffMarket", market).events.Payment().process_receipt(receipt, errors=DISCARD)
        assert len(payments) == 3  # two prosumers and the grid account
        assert sum(p.args.amount for p in payments) == 0
