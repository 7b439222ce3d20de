"""The brownie workflow of the README: `brownie compile` with the project's solc (the
~/.solcx/solc-v0.8.30 shim), `brownie run scripts/deploy.py --network gridshare-anvil` against an
anvil started here, then `gridshare run SCENARIO --deployment FILE` settling a round on those contracts.

brownie runs in .venv-brownie (`make brownie`, which `make test` runs first) with HOME set to a
temporary folder: scripts/brownie-setup puts the compiler shim and the networks there, as `make
brownie` does in the real home, and the test points gridshare-anvil at its own anvil's port without
touching the user's ~/.brownie.

The second test runs the deploy from a copy of the brownie project in a folder whose name has a dot
(as a clone under `mktemp -d` is), which brownie 1.22.2 cannot import a script from by itself (see
scripts/brownie_script_names.py)."""
import json
import os
import shutil
import subprocess

import pytest
from web3.logs import DISCARD

from offchain import cli
from offchain.chain.backends import connect, start_anvil
from offchain.chain.deployment import operator_address
from offchain.chain.compiler import compile_contracts
from offchain.chain.deployment import abi_hash
from tests.conftest import ROOT

VENV = ROOT / ".venv-brownie" / "bin"
CONTRACTS = ("PrivateRounds", "SettlementToken", "TariffRule")  # what deploy.py deploys for the tariff mechanism

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.skipif(not (VENV / "brownie").exists(),
                       reason=".venv-brownie is missing: `make brownie` creates it (`make test` runs it first)"),
]


def run(*cmd: str, env: dict, cwd=ROOT) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_brownie_compile_deploy_then_a_round_settles_on_the_deployed_contracts(tmp_path, capsys):
    deployment, out, home = tmp_path / "deployment.json", tmp_path / "run", tmp_path / "home"
    home.mkdir()
    operator = operator_address(deployment)  # the secret seed kept beside the deployment file
    env = {k: v for k, v in os.environ.items() if k != "SOLCX_BINARY_PATH"}
    env.update(HOME=str(home), GRIDSHARE_DEPLOYMENT=str(deployment))
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
        assert record["schema"] == "gridshare.deployment/2" and record["tool"] == "brownie"
        assert record["chain_id"] == 31337 and record["mechanism"] == "tariff"
        assert record["abi_sha256"] == {n: abi_hash(artifacts[n].abi) for n in CONTRACTS}
        market = record["contracts"]["PrivateRounds"]
        chain = connect(node.url)
        assert chain.contract("SettlementToken", record["contracts"]["SettlementToken"]).functions.owner().call() == operator

        status = cli.main(["run", str(ROOT / "scenarios" / "community10.toml"), "--chain", node.url, "--deployment",
                           str(deployment), "--prosumers", "3", "--no-verify-openings", "--out", str(out)])
        capsys.readouterr()
        assert status == 0
        result = json.loads((out / "run.json").read_text())
        assert result["chain"]["contracts"]["market"] == market
        assert result["chain"]["contracts"]["rule"] == record["contracts"]["TariffRule"]
        assert result["convergence"]["converged"] is True
        assert sum(int(p["payment"]["base_units"]) for p in result["parties"]) == 0

        # on chain: the settlement is a transaction to the deployed market whose payments sum to zero
        (settle,) = [t["hash"] for t in result["transactions"] if t["kind"] == "settle"]
        receipt = chain.w3.eth.get_transaction_receipt(settle)
        assert receipt.status == 1 and receipt.to == market
        payments = chain.contract("PrivateRounds", market).events.Payment().process_receipt(receipt, errors=DISCARD)
        assert len(payments) == 4  # three prosumers and the grid account
        assert sum(p.args.amount for p in payments) == 0


def test_brownie_deploys_from_a_checkout_whose_path_has_a_dot(tmp_path):
    # brownie imports scripts/deploy.py as "<folders of its absolute path>.scripts.deploy": with the
    # folder "clone.d" that name has a part "clone" with no folder behind it unless
    # scripts/brownie-setup has put scripts/brownie_script_names.py into .venv-brownie.
    project, home, deployment = tmp_path / "clone.d" / "gridshare", tmp_path / "home", tmp_path / "deployment.json"
    project.mkdir(parents=True)
    home.mkdir()
    # the working tree's brownie project (what a clone of it has), with no build/ (a fresh clone has
    # none), its node packages and environment those of this checkout
    for name in ("brownie-config.yaml", "brownie-networks.yaml"):
        shutil.copy2(ROOT / name, project / name)
    for name in ("contracts", "scripts"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "node_modules").symlink_to(ROOT / "node_modules")
    (project / ".venv").symlink_to(ROOT / ".venv")  # deploy.py asks the main environment for the rule
    assert "." in project.relative_to(tmp_path).parts[0] and not (project / "build").exists()

    operator = operator_address(deployment)  # the secret seed kept beside the deployment file
    env = {k: v for k, v in os.environ.items() if k != "SOLCX_BINARY_PATH"}
    env.update(HOME=str(home), GRIDSHARE_DEPLOYMENT=str(deployment))
    brownie = str(VENV / "brownie")
    anvil_link = os.readlink(VENV / "anvil") if (VENV / "anvil").is_symlink() else None
    run(str(VENV / "python"), "scripts/brownie-setup", env=env, cwd=project)  # the copy's, as `make brownie`
    assert f'exec "{project}/scripts/solc"' in (home / ".solcx" / "solc-v0.8.30").read_text()
    assert (os.readlink(VENV / "anvil") if (VENV / "anvil").is_symlink() else None) == anvil_link  # this checkout's

    with start_anvil() as node:
        run(brownie, "networks", "modify", "gridshare-anvil", f"port={node.port}", env=env, cwd=project)
        deployed = run(brownie, "run", "scripts/deploy.py", "--network", "gridshare-anvil", env=env, cwd=project)
        assert f"written: {deployment}" in deployed, deployed
        assert "Terminating local RPC client" not in deployed

        record = json.loads(deployment.read_text())
        assert record["tool"] == "brownie" and record["chain_id"] == 31337
        artifacts = compile_contracts()
        assert record["abi_sha256"] == {n: abi_hash(artifacts[n].abi) for n in CONTRACTS}
        chain = connect(node.url)
        token = chain.contract("SettlementToken", record["contracts"]["SettlementToken"])
        assert token.functions.owner().call() == operator
        assert chain.w3.eth.get_code(record["contracts"]["PrivateRounds"]) not in (b"", None)
    assert (project / "build" / "brownie" / "contracts" / "PrivateRounds.json").exists()  # compiled in the copy
