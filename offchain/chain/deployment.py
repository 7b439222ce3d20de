"""Deployment files: where a mechanism's contracts were deployed, so that `gridshare run
--deployment FILE` (and `gridshare demo --deployment FILE`) reuses them.

Written by `gridshare deploy --mechanism NAME` and by `brownie run scripts/deploy.py`; both record
the chain id, the mechanism, the addresses of the round contract, the token and the mechanism's
rule contract, and a hash of each contract's ABI, which must match the compiled contracts.

The token's owner (the operator, who mints the rounds' collateral and coordinates them) is account
0 of a secret seed kept beside the file, in ``<file>.keys/`` (:mod:`offchain.keystore`); a run on
the deployment acts with that seed's accounts.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from eth_utils import is_address, to_checksum_address

from ..errors import ChainError, OutputError
from .backends import Chain
from .compiler import compile_contracts
from .market import MARKET_CONTRACT, TOKEN_CONTRACT, Market

SCHEMA = "gridshare.deployment/2"


def abi_hash(abi: list) -> str:
    """sha256 of the ABI as canonical JSON (sorted keys, no spaces): the same in every toolchain."""
    return hashlib.sha256(json.dumps(abi, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def operator_keys(path: Path, existing: bool = False):
    """The key store beside a deployment file (made, with a fresh seed, if missing; with
    ``existing``, a missing one is an error and nothing is made)."""
    from ..keystore import KeyStore

    path = Path(path)
    folder = path.with_name(path.stem + ".keys")
    if existing and not (folder / "accounts.jsonl").exists():
        raise ChainError(f"{path}: no operator key store beside it ({folder}); a run on a deployment acts with "
                         "the key of the operator that deployed it")
    return KeyStore(folder)


def operator_address(path: Path) -> str:
    """The address of a deployment's operator (account 0 of its key store's seed)."""
    from .backends import dev_account

    return dev_account(0, operator_keys(path).account_seed()).address


def check_deployment_path(path: Path) -> None:
    """A deployment file may be written there (checked before anything is deployed)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; --out names the deployment file to write")
    OutputError.check_parent(path, "deployment file")


def deployment_record(chain_id: int, mechanism: str, contracts: dict[str, str], deployer: str, tool: str) -> dict:
    artifacts = compile_contracts()
    return {"schema": SCHEMA, "chain_id": chain_id, "tool": tool, "deployer": to_checksum_address(deployer),
            "mechanism": mechanism, "contracts": {k: to_checksum_address(v) for k, v in contracts.items()},
            "abi_sha256": {name: abi_hash(artifacts[name].abi) for name in contracts}}


def write_deployment(path: Path, chain: Chain, mechanism, market: Market, rule: str, deployer: str) -> dict:
    contracts = {MARKET_CONTRACT: market.address, TOKEN_CONTRACT: market.token.address, mechanism.rule_contract: rule}
    record = deployment_record(chain.chain_id, mechanism.name, contracts, deployer, "gridshare")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_deployment(path: Path, chain: Chain, mechanism) -> tuple[Market, dict[str, str]]:
    """The market and the rule contracts of a deployment file, after checking that it belongs to
    this chain, this mechanism and these contracts."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ChainError(f"{path}: deployment file not found") from None
    except (OSError, ValueError) as exc:
        raise ChainError(f"{path}: not a deployment file ({exc})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise ChainError(f"{path}: not a gridshare deployment file (schema {SCHEMA} expected)")
    if record.get("chain_id") != chain.chain_id:
        raise ChainError(f"{path}: deployed on chain id {record.get('chain_id')}, but the node is chain id {chain.chain_id}")
    if record.get("mechanism") != mechanism.name:
        raise ChainError(f"{path}: deploys the {record.get('mechanism')!r} mechanism, the scenario runs {mechanism.name!r}")
    artifacts = compile_contracts()
    contracts = record.get("contracts", {})
    for name in (MARKET_CONTRACT, TOKEN_CONTRACT, mechanism.rule_contract):
        if name not in artifacts or record.get("abi_sha256", {}).get(name) != abi_hash(artifacts[name].abi):
            raise ChainError(f"{path}: its {name} was compiled from other sources than this checkout's")
        address = contracts.get(name, "")
        if not is_address(address) or not chain.w3.eth.get_code(to_checksum_address(address)):
            raise ChainError(f"{path}: no {name} contract at {address!r} on this chain")
    market = Market(chain, contracts[MARKET_CONTRACT], contracts[TOKEN_CONTRACT])
    return market, {mechanism.rule_contract: to_checksum_address(contracts[mechanism.rule_contract])}
