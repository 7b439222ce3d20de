"""Deployment files: where a market was deployed, so that `gridshare demo --deployment FILE` reuses it.

Written by `gridshare deploy` and by `brownie run scripts/deploy.py`; both record the chain id,
the addresses and a hash of each contract's ABI, which must match the compiled contracts.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from eth_utils import is_address, to_checksum_address

from .backends import Chain, ChainError
from .compiler import compile_contracts
from .market import Market

SCHEMA = "gridshare.deployment/1"
CONTRACTS = ("TariffMarket", "SettlementToken")


def abi_hash(abi: list) -> str:
    """sha256 of the ABI as canonical JSON (sorted keys, no spaces): the same in every toolchain."""
    return hashlib.sha256(json.dumps(abi, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def deployment_record(chain_id: int, market: str, token: str, deployer: str, tool: str) -> dict:
    artifacts = compile_contracts()
    return {"schema": SCHEMA, "chain_id": chain_id, "tool": tool, "deployer": to_checksum_address(deployer),
            "contracts": {"TariffMarket": to_checksum_address(market), "SettlementToken": to_checksum_address(token)},
            "abi_sha256": {name: abi_hash(artifacts[name].abi) for name in CONTRACTS}}


def write_deployment(path: Path, chain: Chain, market: Market, deployer: str) -> dict:
    record = deployment_record(chain.chain_id, market.address, market.token.address, deployer, "gridshare")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_deployment(path: Path, chain: Chain) -> Market:
    """The market of a deployment file, after checking it belongs to this chain and these contracts."""
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
    artifacts = compile_contracts()
    for name in CONTRACTS:
        if record.get("abi_sha256", {}).get(name) != abi_hash(artifacts[name].abi):
            raise ChainError(f"{path}: its {name} was compiled from other sources than this checkout's")
        address = record.get("contracts", {}).get(name, "")
        if not is_address(address) or not chain.w3.eth.get_code(to_checksum_address(address)):
            raise ChainError(f"{path}: no {name} contract at {address!r} on this chain")
    return Market(chain, record["contracts"]["TariffMarket"], record["contracts"]["SettlementToken"])
