"""brownie: deploy a mechanism's contracts (SettlementToken, the round contract PrivateRounds after
its modules PaillierMath, RoundOpenings, RoundSettlement and RoundDisputes, and the mechanism's settlement rule) and
write a gridshare deployment file.

    brownie run scripts/deploy.py --network gridshare-anvil    # the node of `gridshare chain up`
    GRIDSHARE_RPC_URL=http://HOST:PORT brownie run scripts/deploy.py --network gridshare-rpc

then `.venv/bin/gridshare run SCENARIO --chain URL --deployment build/deployment.json` runs a round on
them. Runs in .venv-brownie (brownie cannot share the main environment), so nothing from `offchain`
is imported here; what only the main environment knows is asked from it. Environment variables:

  GRIDSHARE_MECHANISM     the registered mechanism to deploy (default: tariff)
  GRIDSHARE_DEPLOYMENT    file to write (default: build/deployment.json in the project)
  GRIDSHARE_OPERATOR      owner of the token, i.e. the run's coordinator (a run refuses a token its
                          operator does not own); default: account 0 of the secret seed the main
                          environment keeps beside the deployment file (`<file>.keys/`), which
                          `gridshare run --deployment FILE` then acts with
  GRIDSHARE_DEPLOYER_KEY  private key that deploys (default: the node's first unlocked account)
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import warnings
from pathlib import Path

import brownie.network.contract as _contract
from brownie import accounts, network, project, web3

ROOT = Path(__file__).resolve().parents[1]
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"
SCHEMA = "gridshare.deployment/2"  # offchain/chain/deployment.py
MARKET, TOKEN = "PrivateRounds", "SettlementToken"

# brownie's own noise on a development network (its undo buffer snapshots the chain after each transaction)
warnings.filterwarnings("ignore", message="rpc.snapshot should not be called directly")

_record_deployment = _contract._add_deployment


def _record_deployment_tolerant(contract, alias=None):
    # On a live network brownie 1.22.2 records each deployment in ~/.brownie/deployments.db, and its
    # compiled state.py raises "TypeError: dict object expected; got brownie.project.sources.Sources"
    # doing so (in a background thread, after the deployment succeeded). That record is only
    # brownie's cache for `Contract(address)`: skip it rather than print a traceback.
    try:
        _record_deployment(contract, alias)
    except TypeError:
        pass


_contract._add_deployment = _record_deployment_tolerant


def abi_hash(abi: list) -> str:
    """sha256 of the ABI as canonical JSON, as offchain.chain.deployment.abi_hash computes it."""
    return hashlib.sha256(json.dumps(abi, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def compiled_abi(name: str) -> list:
    """The ABI as the compiler wrote it into brownie's artifact. Not ``ContractContainer.abi``: brownie
    adds ``"name": "constructor"`` to the constructor's entry in memory, which changes the hash."""
    build = project.get_loaded_projects()[0]._build_path
    return json.loads((build / "contracts" / f"{name}.json").read_text())["abi"]


def ask_main(code: str, what: str) -> str:
    """One line printed by ``code`` in the main environment (which knows the registry and the dev accounts)."""
    try:
        done = subprocess.run([str(MAIN_PYTHON), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = (getattr(exc, "stderr", "") or str(exc)).strip().splitlines()[-1:] or [str(exc)]
        raise SystemExit(f"deploy.py: {what} (asking {MAIN_PYTHON} failed: {detail[0]}; `make install` creates it)") from None
    return done.stdout.strip()


def rule_contract(mechanism: str) -> str:
    """The settlement rule contract of a registered mechanism."""
    return ask_main(f"from offchain.registry import get; print(get({mechanism!r}).rule_contract)",
                    f"unknown mechanism {mechanism!r}")


def operator_address() -> str:
    address = os.environ.get("GRIDSHARE_OPERATOR")
    if not address:
        address = ask_main("from offchain.chain.deployment import operator_address; "
                           f"print(operator_address({str(deployment_path())!r}))", "set GRIDSHARE_OPERATOR")
    if not web3.is_address(address):
        raise SystemExit(f"deploy.py: GRIDSHARE_OPERATOR is not an address: {address!r}")
    return web3.to_checksum_address(address)


def deployment_path() -> Path:
    return Path(os.environ.get("GRIDSHARE_DEPLOYMENT") or ROOT / "build" / "deployment.json")


def deployer():
    key = os.environ.get("GRIDSHARE_DEPLOYER_KEY")
    if key:
        return accounts.add(key)
    if not len(accounts):
        raise SystemExit("deploy.py: the node has no unlocked account; set GRIDSHARE_DEPLOYER_KEY")
    return accounts[0]


def deploy(path: Path | None = None) -> tuple[dict, Path]:
    """Deploys the contracts, writes the deployment file (atomically) and returns it with its path."""
    path = path or deployment_path()
    mechanism = os.environ.get("GRIDSHARE_MECHANISM") or "tariff"
    rule_name = rule_contract(mechanism)
    sender = deployer()
    owner = operator_address()
    loaded = project.get_loaded_projects()[0]
    token = loaded[TOKEN].deploy(owner, {"from": sender})
    paillier = loaded["PaillierMath"].deploy({"from": sender})
    openings = loaded["RoundOpenings"].deploy(paillier.address, {"from": sender})
    settlement = loaded["RoundSettlement"].deploy({"from": sender})
    disputes = loaded["RoundDisputes"].deploy(paillier.address, {"from": sender})
    market = loaded[MARKET].deploy(token.address, paillier.address, openings.address, settlement.address,
                                   disputes.address, {"from": sender})
    rule = loaded[rule_name].deploy({"from": sender})
    contracts = {MARKET: market.address, TOKEN: token.address, rule_name: rule.address}
    record = {
        "schema": SCHEMA,
        "chain_id": web3.chain_id,
        "tool": "brownie",
        "deployer": web3.to_checksum_address(sender.address),
        "mechanism": mechanism,
        "contracts": {name: web3.to_checksum_address(a) for name, a in contracts.items()},
        "abi_sha256": {name: abi_hash(compiled_abi(name)) for name in contracts},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"mechanism {mechanism}: market {market.address}, token {token.address} (owner {owner}), "
          f"rule {rule_name} {rule.address}; written: {path}")
    return record, path


def main() -> None:
    if network.rpc.is_child():
        raise SystemExit("deploy.py: no node was listening, so brownie started an anvil of its own, which stops "
                         "when this script ends. Start `.venv/bin/gridshare chain up` first (or run "
                         "scripts/round.py, which deploys and runs the round while that anvil lives).")
    deploy()
