"""Chain backends: an in-process eth-tester chain or any JSON-RPC node (anvil), one interface.

``connect(None | "embedded")`` gives an eth-tester chain (py-evm, Prague) with 256 funded
deterministic dev accounts and a 60M block gas limit; ``connect("http://...")`` wraps a JSON-RPC
node. Transactions are signed locally (eth-account) with locally tracked nonces; gas estimates
are reused (with a margin) for calls of the same shape, and a revert raises :class:`ContractRevert`
carrying the decoded custom error.
"""
from __future__ import annotations

import ast
import itertools
import os
import json
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import requests
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.logs import DISCARD

from ..errors import ChainError
from ..processes import die_with_parent
from .compiler import ROOT, Artifact, compile_contracts

DEV_ACCOUNTS = 256
DEV_BALANCE = 10**6 * 10**18  # genesis balance of each embedded dev account
FUND_AMOUNT = 100 * 10**18  # what an RPC dev account is topped up to
FUND_THRESHOLD = 10 * 10**18
EMBEDDED_GAS_LIMIT = 60_000_000
RPC_TIMEOUT = 3.0
GAS_MARGIN = 1.25
GAS_EXTRA = 25_000


DEV_CHAIN_ID = 31337  # anvil's and hardhat's default
PRE_OSAKA = ("frontier", "homestead", "byzantium", "constantinople", "petersburg", "istanbul", "berlin", "london",
             "paris", "merge", "shanghai", "cancun", "prague")
TX_GAS_CAP = 2**24  # EIP-7825 (Osaka): no transaction may use more; applied on every chain


class ContractRevert(RuntimeError):
    """A call or transaction reverted; ``str()`` is the decoded error, e.g.
    ``AlreadySubmitted(participant=0xAb.., iteration=3)``."""

    def __init__(self, name: str, args: dict[str, Any], data: bytes, text: str):
        super().__init__(text)
        self.name = name
        self.error_args = args
        self.data = data


EMBEDDED_SEED = b"gridshare-dev"  # public: only for the in-process chain, which nobody else reaches


def dev_key(index: int, seed: bytes = EMBEDDED_SEED) -> bytes:
    """Private key of account ``index`` of ``seed``'s family."""
    return keccak(seed + index.to_bytes(4, "big"))


_ACCOUNT_CACHE: dict[tuple[bytes, int], LocalAccount] = {}


def dev_account(index: int, seed: bytes = EMBEDDED_SEED) -> LocalAccount:
    acct = _ACCOUNT_CACHE.get((seed, index))
    if acct is None:
        acct = _ACCOUNT_CACHE[(seed, index)] = Account.from_key(dev_key(index, seed))
    return acct


# ---------------------------------------------------------------------------------------------
# revert decoding


def _fmt_value(typ: str, value: Any) -> str:
    if typ == "address":
        return to_checksum_address(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        inner = typ[: typ.rfind("[")] if typ.endswith("]") else typ
        return "[" + ", ".join(_fmt_value(inner, v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _abi_type(inp: dict) -> str:
    typ = inp["type"]
    if typ.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp.get("components", [])) + ")" + typ[5:]
    return typ


class ErrorDecoder:
    """Maps 4-byte selectors to the custom errors declared in the compiled artifacts."""

    def __init__(self, artifacts: Iterable[Artifact]):
        self.errors: dict[bytes, tuple[str, list[str], list[str]]] = {
            bytes.fromhex("08c379a0"): ("Error", ["string"], ["message"]),
            bytes.fromhex("4e487b71"): ("Panic", ["uint256"], ["code"]),
        }
        for art in artifacts:
            for item in art.abi:
                if item.get("type") != "error":
                    continue
                types = [_abi_type(i) for i in item["inputs"]]
                sel = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                self.errors[sel] = (item["name"], types, [i["name"] for i in item["inputs"]])

    def decode(self, data: bytes) -> ContractRevert:
        data = bytes(data or b"")
        if len(data) < 4:
            return ContractRevert("Revert", {}, data, "Revert()" if not data else f"Revert(data=0x{data.hex()})")
        entry = self.errors.get(data[:4])
        if entry is None:
            return ContractRevert("Revert", {}, data, f"Revert(data=0x{data.hex()})")
        name, types, names = entry
        try:
            values = abi_decode(types, data[4:])
        except Exception:  # noqa: BLE001 - malformed payload
            return ContractRevert(name, {}, data, f"{name}(data=0x{data[4:].hex()})")
        args = {n: (to_checksum_address(v) if t == "address" else v) for n, t, v in zip(names, types, values)}
        if name == "Panic":
            text = f"Panic(code=0x{values[0]:02x})"
        else:
            text = f"{name}(" + ", ".join(f"{n}={_fmt_value(t, v)}" for n, t, v in zip(names, types, values)) + ")"
        return ContractRevert(name, args, data, text)


_HEX_RE = re.compile(r"0x[0-9a-fA-F]{8,}")
_BYTES_RE = re.compile(r"execution reverted: (b(?:\"|').*(?:\"|'))\s*$", re.S)


def _revert_data(exc: BaseException) -> bytes | None:
    """Revert payload carried by a web3 / eth-tester / RPC exception, if any."""
    for attr in ("data",):
        val = getattr(exc, attr, None)
        if isinstance(val, (bytes, bytearray)) and val:
            return bytes(val)
        if isinstance(val, str) and val.startswith("0x"):
            try:
                return bytes.fromhex(val[2:])
            except ValueError:
                pass
        if isinstance(val, dict) and isinstance(val.get("data"), str):
            try:
                return bytes.fromhex(val["data"].removeprefix("0x"))
            except ValueError:
                pass
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, str):
            m = _BYTES_RE.search(arg)
            if m:
                try:
                    val = ast.literal_eval(m.group(1))
                    if isinstance(val, bytes):
                        return val
                except (ValueError, SyntaxError):
                    pass
        if isinstance(arg, dict):
            d = arg.get("data")
            if isinstance(d, str) and d.startswith("0x"):
                return bytes.fromhex(d[2:])
        if isinstance(arg, (bytes, bytearray)) and len(arg) >= 4:
            return bytes(arg)
        if isinstance(arg, str):
            m = _HEX_RE.search(arg)
            if m and len(m.group()) % 2 == 0:
                return bytes.fromhex(m.group()[2:])
    return None


# ---------------------------------------------------------------------------------------------
# chain


@dataclass
class _Pending:
    tx: dict
    sender: LocalAccount
    tx_hash: bytes
    cache_key: tuple | None
    raw: bytes = b""  # the signed transaction, to send again if a node dropped it


class TxJournal:
    """What a resumable run sent, in order (``RUN_DIR/transactions.jsonl``): each transaction's
    call (sender, target, calldata, value) with its hash, written to disk before it is sent, and
    each wait for a deadline. A resumed run makes the same calls again in the same order; for each
    one the journal knows, :meth:`recall` gives the earlier transaction instead of a second one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._sent: dict[str, list[HexBytes]] = defaultdict(list)  # call digest -> hashes, in order
        self._waits = 0
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill: its transaction was never sent
                if "wait" in entry:
                    self._waits += 1
                else:
                    self._sent[entry["call"]].append(HexBytes(entry["hash"]))
        self._seen: Counter[str] = Counter()
        self._waits_seen = 0
        self.reused = self.sent = 0  # this process's calls answered from the journal, and sent anew

    @staticmethod
    def _digest(sender: str, to: str | None, data: bytes, value: int) -> str:
        return keccak(sender.lower().encode() + (to or "").lower().encode() + bytes(data) + int(value).to_bytes(32, "big")).hex()

    def recall(self, sender: str, to: str | None, data: bytes, value: int) -> HexBytes | None:
        """The hash of this call's earlier transaction (its n-th occurrence), if one was sent."""
        digest = self._digest(sender, to, data, value)
        i, self._seen[digest] = self._seen[digest], self._seen[digest] + 1
        earlier = self._sent.get(digest, [])
        return earlier[i] if i < len(earlier) else None

    def record(self, sent: Sequence[tuple[str, str | None, bytes, int, bytes]]) -> None:
        """(sender, to, data, value, hash) of transactions about to be sent, each after its recall."""
        lines = []
        self.sent += len(sent)
        for sender, to, data, value, tx_hash in sent:
            digest = self._digest(sender, to, data, value)
            hashes, slot = self._sent[digest], self._seen[digest] - 1
            hashes[slot:slot + 1] = [HexBytes(tx_hash)]
            lines.append(json.dumps({"call": digest, "hash": HexBytes(tx_hash).to_0x_hex()}))
        self._append(lines)

    def waited_before(self) -> bool:
        i, self._waits_seen = self._waits_seen, self._waits_seen + 1
        return i < self._waits

    def record_wait(self) -> None:
        self._waits += 1
        self._append([json.dumps({"wait": self._waits})])

    def _append(self, lines: list[str]) -> None:
        with open(self.path, "a") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())


class Chain:
    """A connected chain: web3 instance, funded dev accounts, deploy and fast transaction helpers."""

    def __init__(self, w3: Web3, kind: str, url: str | None, tester: Any = None, account_seed: bytes | None = None):
        self.w3 = w3
        self.kind = kind
        self.url = url
        self.tester = tester
        # the accounts' key family: public on the in-process chain; on a node anyone may reach, a
        # secret (a run keeps its own in its key store), fresh for each connection unless given
        self.account_seed = account_seed or (EMBEDDED_SEED if kind == "embedded" else secrets.token_bytes(32))
        self.journal: "TxJournal | None" = None  # a resumable run's record of what it sent
        self.stranded = 0  # transactions a dev node left pending, mined by a block the client asked for
        self._stuck: dict[str, int] = {}  # transaction hash -> times it was found still pending
        self.started_here: bool = False  # a node the run started and stops (runner.ANVIL)
        self.state_file: Path | None = None  # where that node keeps its chain
        self.chain_id = int(w3.eth.chain_id)
        self._nonces: dict[str, int] = {}
        self._gas_cache: dict[tuple, int] = {}
        self._artifacts: dict[str, Artifact] | None = None
        self._decoder: ErrorDecoder | None = None
        self._contracts: dict[tuple[str, str], Contract] = {}
        self._session = requests.Session() if kind == "rpc" else None
        self._rpc_ids = itertools.count(1)
        self._sent = 0
        block = w3.eth.get_block("latest")
        self.block_gas_limit = int(block["gasLimit"])
        self.tx_gas_limit = min(self.block_gas_limit, TX_GAS_CAP)
        # eth-tester's estimate is a binary search (~14 executions): skip it, a revert refunds the
        # unused gas anyway and dev accounts hold plenty of ether. RPC nodes estimate natively.
        # Dev chains (eth-tester, anvil/hardhat's 31337) skip gas estimation: a binary search of
        # executions per call, slow for the 3M-gas opening checks. On eth-tester every call gets
        # the block gas limit and pays only for what it uses; on anvil the first call of each shape
        # does, and later ones reuse its measured gas (see transact_many). A revert is still
        # decoded by replaying the call.
        self._fixed_gas = self.tx_gas_limit if kind == "embedded" or self.chain_id == DEV_CHAIN_ID else None
        self._refresh_fees(block)

    # -------------------------------------------------------------- basics

    def __repr__(self) -> str:
        return f"Chain(kind={self.kind!r}, url={self.url!r}, chain_id={self.chain_id})"

    @property
    def hardfork(self) -> str:
        """The rules the chain runs: py-evm's (Prague) for the embedded chain; anvil tells its own
        (``anvil_nodeInfo``); other nodes do not say ("unknown")."""
        if self.kind == "embedded":
            return "prague"
        try:
            info = self._rpc("anvil_nodeInfo", [])
        except (ChainError, requests.RequestException, ValueError, KeyError):
            return "unknown"
        return str((info or {}).get("hardFork") or "unknown").lower()

    def check_rules(self) -> None:
        """Refuses a node whose rules are older than the contracts' target (Prague), in one line."""
        if self.hardfork in PRE_OSAKA[:-1]:
            raise ChainError(f"{self.url}: the node runs {self.hardfork} rules; the contracts are compiled for "
                             "Prague and run on Prague, Osaka and later")

    @property
    def osaka_pricing(self) -> bool:
        """Whether MODEXP costs EIP-7883's price here (Osaka and later; assumed for unknown nodes)."""
        if not hasattr(self, "_osaka"):
            self._osaka = self.hardfork not in PRE_OSAKA
        return self._osaka

    @property
    def aggregate_chunk(self) -> int:
        """Ciphertexts (2048-bit key) per aggregation transaction that fit the gas cap with room:
        ~45k gas each under EIP-7883 (at most ~370 fit), ~32k before (~540 fit); measured by
        `gridshare bench aggregate` (benchmarks/aggregate-2000.json)."""
        return 300 if self.osaka_pricing else 450

    @property
    def challenge_steps(self) -> int:
        """256-bit steps of an opening challenge per transaction (2048-bit key): ~4.4M gas each
        under EIP-7883, ~0.8M before."""
        return 3 if self.osaka_pricing else 8

    @property
    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def mine_until(self, block: int) -> None:
        """Lets the chain reach ``block``: dev chains mine empty blocks at once, other nodes are
        waited for. A resumed run skips the waits it made before (the chain is past them)."""
        if self.journal is not None and self.journal.waited_before():
            return
        missing = block - self.block_number
        if missing > 0 and self.tester is not None:
            self.tester.mine_blocks(missing)
        elif missing > 0:
            try:
                self._rpc("anvil_mine", [hex(missing)])
            except ChainError:  # e.g. no answer within the timeout on a long chain: it still mines them
                while self.block_number < block:
                    time.sleep(1.0)
        if self.journal is not None:
            self.journal.record_wait()

    @property
    def artifacts(self) -> dict[str, Artifact]:
        if self._artifacts is None:
            self._artifacts = compile_contracts()
        return self._artifacts

    @property
    def errors(self) -> ErrorDecoder:
        if self._decoder is None:
            self._decoder = ErrorDecoder(self.artifacts.values())
        return self._decoder

    def _refresh_fees(self, block: Any = None) -> None:
        block = block or self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas") or 0)
        self._priority = 10**9 if self.kind == "rpc" else 0
        self._max_fee = max(4 * base + self._priority, 10 * 10**9)

    def snapshot(self) -> Any:
        """Embedded only: a snapshot id for :meth:`revert`."""
        if self.tester is None:
            return self._rpc("evm_snapshot", [])
        return self.tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        if self.tester is None:
            self._rpc("evm_revert", [snapshot])
        else:
            self.tester.revert_to_snapshot(snapshot)
        self._nonces.clear()

    # -------------------------------------------------------------- accounts

    def accounts(self, n: int, offset: int = 0) -> list[LocalAccount]:
        """``n`` funded accounts of this chain's key family starting at index ``offset``."""
        accts = [dev_account(i, self.account_seed) for i in range(offset, offset + n)]
        if self.kind == "embedded":
            need = [a for i, a in zip(range(offset, offset + n), accts) if i >= DEV_ACCOUNTS]
            if need:
                need = [a for a in need if self.w3.eth.get_balance(a.address) < FUND_THRESHOLD]
                if need:
                    funder = dev_account(0)
                    self._transfer_many([(funder, a.address, FUND_AMOUNT) for a in need])
        else:
            balances = self._rpc_batch([("eth_getBalance", [a.address, "latest"]) for a in accts])
            need = [a for a, b in zip(accts, balances) if int(b, 16) < FUND_THRESHOLD]
            if need:
                self._fund_from_node(need)
        return accts

    def _fund_from_node(self, accts: Sequence[LocalAccount]) -> None:
        nodes = self._rpc("eth_accounts", [])
        if not nodes:
            raise ChainError(f"{self.url}: node has no unlocked account to fund dev accounts from")
        funder = nodes[0]
        nonce = int(self._rpc("eth_getTransactionCount", [funder, "pending"]), 16)
        calls = []
        for i, a in enumerate(accts):
            calls.append(("eth_sendTransaction", [{
                "from": funder, "to": a.address, "value": hex(FUND_AMOUNT), "gas": hex(21000),
                "nonce": hex(nonce + i), "maxFeePerGas": hex(self._max_fee),
                "maxPriorityFeePerGas": hex(self._priority),
            }]))
        hashes = self._rpc_batch(calls)
        self._wait_raw(hashes)

    def _transfer_many(self, transfers: Sequence[tuple[LocalAccount, str, int]]) -> None:
        pending = []
        for sender, to, value in transfers:
            tx = self._base_tx(sender, to, b"", 21000, value)
            pending.append(self._send(tx, sender, None))
        for p in pending:
            self._receipt(p)

    # -------------------------------------------------------------- contracts

    def contract(self, artifact_name: str, address: str) -> Contract:
        key = (artifact_name, address.lower())
        c = self._contracts.get(key)
        if c is None:
            art = self.artifacts[artifact_name]
            c = self._contracts[key] = self.w3.eth.contract(address=to_checksum_address(address), abi=art.abi)
        return c

    def deploy(self, artifact_name: str, *args: Any, sender: LocalAccount) -> Contract:
        """Deploys a compiled contract and returns it bound to its address."""
        art = self.artifacts[artifact_name]
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        ctor = factory.constructor(*args)
        data = HexBytes(ctor._encode_data_in_transaction(*args))
        try:
            gas = self._fixed_gas or self._estimate({"from": sender.address, "data": data.to_0x_hex()})
            tx = self._base_tx(sender, None, data, gas, 0)
            receipt = self._receipt(self._send(tx, sender, None))
        except ContractRevert as exc:
            if "NotActivated" in str(exc) or "invalid opcode" in str(exc).lower():
                raise ChainError(f"{self.url or 'the chain'}: cannot run {artifact_name} ({exc}): its rules are older "
                                 "than Prague, the contracts' target") from None
            raise
        return self.contract(artifact_name, receipt["contractAddress"])

    def events(self, receipt: Any, contract: Contract, event: str) -> list[Any]:
        """Decoded ``event`` logs of ``contract`` in ``receipt`` (no log scan of the chain)."""
        return list(getattr(contract.events, event)().process_receipt(receipt, errors=DISCARD))

    # -------------------------------------------------------------- transactions

    def transact(self, fn: Any, sender: LocalAccount) -> Any:
        """Sends a contract call signed by ``sender``; returns the receipt or raises ContractRevert.
        Its gas is not taken from an earlier call of its shape: one call's gas may depend on the
        state (a settle that begins a blame step costs a third of the one that ends it), and a
        call resent after running out of gas would leave a failed transaction on chain."""
        return self.transact_many([(fn, sender)], fresh=True)[0]

    def transact_many(self, items: Sequence[tuple[Any, LocalAccount]], fresh: bool = False) -> list[Any]:
        """Sends many contract calls as fast as the backend allows; receipts in order.

        Embedded: sequential, each call gets the block gas limit (no estimate; unused gas is
        refunded). RPC: calls of a shape already seen (same contract, selector and calldata length)
        reuse the largest estimate seen (x1.25 + 25k); others are estimated first (an estimate that
        reverts while earlier calls of the batch are pending waits for them and retries); a call
        that runs out of gas on a reused estimate is re-estimated and resent. All transactions are
        signed locally and sent before the receipts are collected (one JSON-RPC batch poll).
        Raises ContractRevert for the first call that reverted (the others still went through).
        """
        receipts: list[Any] = [None] * len(items)
        pending: list[tuple[int, _Pending]] = []
        unsent: list[tuple[int, dict, LocalAccount, tuple]] = []
        sequential = self.kind == "embedded"

        def send_unsent() -> None:
            pending.extend(zip([i for i, *_ in unsent], self._send_batch([u[1:] for u in unsent])))
            unsent.clear()

        def flush() -> None:
            send_unsent()
            mined = {}
            if self.kind == "rpc" and len(pending) > 1:
                self._wait_raw([p.tx_hash for _, p in pending], [p.raw for _, p in pending])
                with self.w3.batch_requests() as batch:  # formatted receipts in one round trip
                    for _, p in pending:
                        batch.add(self.w3.eth.get_transaction_receipt(p.tx_hash))
                    mined = dict(zip([idx for idx, _ in pending], batch.execute()))
            for idx, p in pending:
                ok = mined.get(idx)
                receipts[idx] = ok if ok is not None and ok["status"] == 1 else self._receipt(p, raise_revert=False)
            pending.clear()

        for idx, (fn, sender) in enumerate(items):
            to = fn.address
            data = HexBytes(fn._encode_transaction_data())
            key = (to, bytes(data[:4]), len(data))
            gas = self._fixed_gas if sequential else None if fresh else self._gas_cache.get(key)
            if gas is None and self._fixed_gas:
                # dev RPC chain: the first call of a shape goes alone with the block gas limit and
                # its receipt sizes the limit of the next ones, which then fit many to a block
                flush()
                pending.append((idx, self._send(self._base_tx(sender, to, data, self._fixed_gas, 0), sender, None)))
                flush()
                if not isinstance(receipts[idx], ContractRevert):
                    self._gas_cache[key] = min(int(receipts[idx]["gasUsed"] * GAS_MARGIN) + GAS_EXTRA,
                                               self.tx_gas_limit)
                continue
            if gas is None:
                call = {"from": sender.address, "to": to, "data": data.to_0x_hex()}
                try:
                    gas = self._estimate(call, key)
                except ContractRevert:
                    if not pending and not unsent:
                        raise
                    flush()
                    gas = self._estimate(call, key)
            tx = self._base_tx(sender, to, data, gas, 0)
            if sequential:
                pending.append((idx, self._send(tx, sender, key)))
                flush()
            else:
                unsent.append((idx, tx, sender, key))
        flush()
        errors = [r for r in receipts if isinstance(r, ContractRevert)]
        if errors:
            raise errors[0]
        return receipts

    # -------------------------------------------------------------- internals

    def _estimate(self, call: dict, key: tuple | None = None) -> int:
        try:
            est = int(self.w3.eth.estimate_gas(call))
        except Exception as exc:  # noqa: BLE001 - web3/eth-tester raise many types
            data = _revert_data(exc)
            if data is not None:
                raise self.errors.decode(data) from None
            msg = str(exc)
            if "revert" in msg.lower():
                raise self.errors.decode(b"") from None
            raise ChainError(f"gas estimation failed: {msg.splitlines()[0] if msg else type(exc).__name__}") from exc
        gas = min(int(est * GAS_MARGIN) + GAS_EXTRA, self.tx_gas_limit)
        if key is not None:
            self._gas_cache[key] = max(gas, self._gas_cache.get(key, 0))
        return gas

    def _base_tx(self, sender: LocalAccount, to: str | None, data: bytes, gas: int, value: int) -> dict:
        tx = {
            "chainId": self.chain_id,
            "gas": gas,
            "maxFeePerGas": self._max_fee,
            "maxPriorityFeePerGas": self._priority,
            "value": value,
            "data": bytes(data),
            "type": 2,
        }
        if to is not None:
            tx["to"] = to
        return tx

    def _next_nonce(self, address: str) -> int:
        n = self._nonces.get(address)
        if n is None:
            n = int(self.w3.eth.get_transaction_count(address, "pending"))
        self._nonces[address] = n + 1
        return n

    def _sign(self, tx: dict, sender: LocalAccount) -> Any:
        """Signs with the sender's next nonce (taken only now: a journaled call takes none)."""
        tx["nonce"] = self._next_nonce(sender.address)
        return sender.sign_transaction(tx)

    def _send(self, tx: dict, sender: LocalAccount, key: tuple | None) -> _Pending:
        if (sent := self._journaled(tx, sender, key)) is not None:
            return sent
        signed = self._sign(tx, sender)
        self._remember([(tx, sender, signed)])
        self._sent += 1
        if self.kind == "rpc" and self._sent % 200 == 0:
            self._refresh_fees()
        try:
            h = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:  # noqa: BLE001
            self._nonces.pop(sender.address, None)
            data = _revert_data(exc)
            if data is not None and len(data) >= 4 and "revert" in str(exc).lower():
                raise self.errors.decode(data) from None
            raise ChainError(f"transaction rejected: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        return _Pending(tx, sender, bytes(h), key, bytes(signed.raw_transaction))

    def _send_batch(self, txs: Sequence[tuple[dict, LocalAccount, tuple | None]]) -> list[_Pending]:
        """Signs locally and sends in JSON-RPC batches (rpc kind): one round trip for many senders.

        A batch holds at most one transaction per sender: a node may handle a batch's calls in any
        order, and an automining node leaves a transaction whose nonce arrived early unmined.
        """
        if len(txs) < 2 or self._session is None:
            return [self._send(tx, sender, key) for tx, sender, key in txs]
        out: list[_Pending | None] = [None] * len(txs)
        remaining = []
        for i, (tx, sender, key) in enumerate(txs):
            out[i] = self._journaled(tx, sender, key)
            if out[i] is None:
                remaining.append(i)
        while remaining:
            layer, seen, later = [], set(), []
            for i in remaining:
                sender = txs[i][1].address
                (later if sender in seen else layer).append(i)
                seen.add(sender)
            signed = [self._sign(txs[i][0], txs[i][1]) for i in layer]
            self._remember([(txs[i][0], txs[i][1], sig) for i, sig in zip(layer, signed)])
            self._sent += len(layer)
            calls = [("eth_sendRawTransaction", [HexBytes(sig.raw_transaction).to_0x_hex()]) for sig in signed]
            try:
                self._rpc_batch(calls)
            except ChainError as exc:
                for _, sender, _ in txs:
                    self._nonces.pop(sender.address, None)
                raise ChainError(f"transaction rejected: {exc}") from exc
            for i, sig in zip(layer, signed):
                tx, sender, key = txs[i]
                out[i] = _Pending(tx, sender, bytes(sig.hash), key, bytes(sig.raw_transaction))
            remaining = later
        return out  # type: ignore[return-value]

    def _journaled(self, tx: dict, sender: LocalAccount, key: tuple | None) -> _Pending | None:
        """With a journal: the transaction this call already sent, if the node knows it (mined or
        pending), so that a resumed run never sends a call twice; else None (send it)."""
        if self.journal is None:
            return None
        sent = self.journal.recall(sender.address, tx.get("to"), tx["data"], tx["value"])
        if sent is None or self._rpc("eth_getTransactionByHash", [sent.to_0x_hex()]) is None:
            return None
        self.journal.reused += 1
        return _Pending(tx, sender, bytes(sent), key, b"")

    def _remember(self, signed: Sequence[tuple[dict, LocalAccount, Any]]) -> None:
        if self.journal is not None:
            self.journal.record([(sender.address, tx.get("to"), tx["data"], tx["value"], bytes(sig.hash))
                                 for tx, sender, sig in signed])

    def _receipt(self, p: _Pending, raise_revert: bool = True) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(p.tx_hash, timeout=120, poll_latency=0.01)
        if receipt["status"] == 1:
            return receipt
        # failed: out of gas with a reused estimate -> estimate precisely and resend
        if p.cache_key is not None and receipt["gasUsed"] >= 0.9 * p.tx["gas"]:
            call = {"from": p.sender.address, "to": p.tx.get("to"), "data": HexBytes(p.tx["data"]).to_0x_hex()}
            try:
                gas = self._estimate(call, None)
            except ContractRevert as err:
                if raise_revert:
                    raise
                return err
            if gas > p.tx["gas"]:
                self._gas_cache[p.cache_key] = max(gas, self._gas_cache.get(p.cache_key, 0))
                tx = self._base_tx(p.sender, p.tx.get("to"), p.tx["data"], gas, p.tx["value"])
                return self._receipt(self._send(tx, p.sender, None), raise_revert)
        err = self._replay(p.tx, p.sender, receipt)
        if raise_revert:
            raise err
        return err

    def _replay(self, tx: dict, sender: LocalAccount, receipt: Any) -> ContractRevert:
        call = {"from": sender.address, "data": HexBytes(tx["data"]).to_0x_hex(), "gas": tx["gas"],
                "value": tx["value"]}
        if tx.get("to"):
            call["to"] = tx["to"]
        try:
            self.w3.eth.call(call, "latest")
        except Exception as exc:  # noqa: BLE001
            data = _revert_data(exc)
            if data is not None:
                return self.errors.decode(data)
            return ContractRevert("Revert", {}, b"", f"Revert(reason={str(exc).splitlines()[0]!r})")
        return ContractRevert("Revert", {}, b"", f"Revert(tx=0x{bytes(receipt['transactionHash']).hex()}, gasUsed={receipt['gasUsed']})")

    # -------------------------------------------------------------- raw JSON-RPC (rpc kind)

    def _rpc(self, method: str, params: list) -> Any:
        return self._rpc_batch([(method, params)])[0]

    def _rpc_batch(self, calls: Sequence[tuple[str, list]]) -> list[Any]:
        if not calls:
            return []
        if self._session is None:  # embedded: go through web3's provider
            out = []
            for method, params in calls:
                resp = self.w3.provider.make_request(method, params)
                if "error" in resp:
                    raise ChainError(f"{method}: {resp['error']}")
                out.append(resp["result"])
            return out
        payload = [{"jsonrpc": "2.0", "id": next(self._rpc_ids), "method": m, "params": p} for m, p in calls]
        reads = all(m != "eth_sendRawTransaction" for m, _ in calls)
        for attempt in range(6):
            try:
                resp = self._session.post(self.url, json=payload, timeout=max(RPC_TIMEOUT, 0.05 * len(calls)))
                body = resp.json()
            except (requests.RequestException, ValueError) as exc:
                raise ChainError(f"{self.url}: JSON-RPC batch failed: {exc}") from exc
            if not (reads and isinstance(body, list) and "BlockOutOfRange" in str(body)):
                break
            time.sleep(0.05 * (attempt + 1))  # a read at the block the node is sealing (see _Provider)
        if isinstance(body, dict):
            raise ChainError(f"{self.url}: {body.get('error', body)}")
        by_id = {r.get("id"): r for r in body}
        out = []
        for call in payload:
            r = by_id.get(call["id"], {})
            if "error" in r:
                raise ChainError(f"{call['method']}: {r['error'].get('message', r['error'])}")
            out.append(r.get("result"))
        return out

    def _wait_raw(self, hashes: Sequence[Any], raws: Sequence[bytes] | None = None, timeout: float = 120.0) -> None:
        """Polls receipts in JSON-RPC batches until all are mined (rpc kind only). A transaction a
        node no longer knows (dropped from its pool) is sent again from its signed bytes; if some
        stay unmined, the error says why (unknown to the node, or waiting for a nonce)."""
        if self._session is None:
            return
        todo = {HexBytes(h).to_0x_hex(): (raws[i] if raws else b"") for i, h in enumerate(hashes)}
        deadline = time.monotonic() + timeout
        resend_at = time.monotonic() + 2.0
        delay = 0.005
        while todo:
            results = self._rpc_batch([("eth_getTransactionReceipt", [h]) for h in todo])
            todo = {h: raw for (h, raw), r in zip(todo.items(), results) if r is None}
            if not todo:
                return
            if time.monotonic() > resend_at:
                self._rebroadcast(todo)
                resend_at = time.monotonic() + 5.0
            if time.monotonic() > deadline:
                raise ChainError(f"{len(todo)} transactions not mined after {timeout:.0f} s: {self._why_unmined(todo)}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _rebroadcast(self, todo: dict[str, bytes]) -> None:
        """Sends again what the node forgot; on a dev node that mines only when a transaction
        arrives (anvil), mines a block, so that what did not fit the last one is not left pending."""
        try:
            self._rpc("evm_mine", [])
            self.stranded += len(todo)
        except ChainError:
            pass  # not a dev node: its blocks come on their own
        known = self._rpc_batch([("eth_getTransactionByHash", [h]) for h in todo])
        for (h, raw), tx in zip(todo.items(), known):
            self._stuck[h] = self._stuck.get(h, 0) + 1
            if tx is not None and raw and self._stuck[h] % 3 == 0:
                # still pending after three mined blocks: anvil can leave a ready transaction out of
                # every block (foundry-rs/foundry#10122); taken out of its pool and sent again, it is mined
                try:
                    self._rpc("anvil_dropTransaction", [h])
                    tx = None
                except ChainError:
                    continue  # not anvil
            if tx is None and raw:
                try:
                    self._rpc_batch([("eth_sendRawTransaction", [HexBytes(raw).to_0x_hex()])])
                    self._rpc("evm_mine", [])
                except ChainError:
                    pass  # already known, or its nonce is spent, or not a dev node: the next poll tells

    def _why_unmined(self, todo: dict[str, bytes]) -> str:
        known = self._rpc_batch([("eth_getTransactionByHash", [h]) for h in todo])
        first = next(iter(todo))
        tx = known[0]
        if tx is None:
            return f"{first} and {len(todo) - 1} more are unknown to the node"
        nonce = int(self._rpc("eth_getTransactionCount", [tx["from"], "latest"]), 16)
        block = self._rpc("eth_getBlockByNumber", ["latest", False])
        return (f"{first} (nonce {int(tx['nonce'], 16)}, sender's mined nonce {nonce}, max fee "
                f"{int(tx.get('maxFeePerGas') or tx.get('gasPrice'), 16)}, base fee {int(block.get('baseFeePerGas') or '0x0', 16)}) "
                "is pending")


# ---------------------------------------------------------------------------------------------
# connect


def _embedded() -> Chain:
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    state = {
        dev_account(i).address: {"balance": DEV_BALANCE, "nonce": 0, "code": b"", "storage": {}}
        for i in range(DEV_ACCOUNTS)
    }
    from eth_utils import to_canonical_address

    genesis_state = {to_canonical_address(a): s for a, s in state.items()}
    params = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": EMBEDDED_GAS_LIMIT})
    backend = PyEVMBackend(genesis_parameters=params, genesis_state=genesis_state)
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    w3.eth.default_account = dev_account(0).address  # eth_call needs a funded sender on eth-tester
    return Chain(w3, "embedded", None, tester=tester)


class _Provider(HTTPProvider):
    """web3's HTTP provider, asking again when a node answers a read with a transient error:
    anvil can refuse a read at the block it is just sealing (``BlockOutOfRangeError: block height
    is N+1 but requested was N``, seen with interval mining)."""

    def make_request(self, method, params):  # type: ignore[override]
        for attempt in range(6):
            response = super().make_request(method, params)
            error = response.get("error") if isinstance(response, dict) else None
            if not (error and "BlockOutOfRange" in str(error.get("message", ""))):
                return response
            time.sleep(0.05 * (attempt + 1))
        return response


def _rpc(url: str) -> Chain:
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    try:
        resp = requests.post(url, json=payload, timeout=RPC_TIMEOUT)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.ConnectionError):
            reason = "connection refused or host unreachable"
        elif isinstance(exc, requests.Timeout):
            reason = f"no answer within {RPC_TIMEOUT:.0f} s"
        raise ChainError(f"{url}: cannot reach a JSON-RPC node ({reason})") from None
    try:
        body = resp.json()
        int(body["result"], 16)
    except (ValueError, KeyError, TypeError):
        raise ChainError(f"{url}: not an Ethereum JSON-RPC node (HTTP {resp.status_code}, no eth_chainId result)") from None
    w3 = Web3(_Provider(url, request_kwargs={"timeout": 60}))
    try:
        return Chain(w3, "rpc", url)
    except Exception as exc:  # noqa: BLE001
        raise ChainError(f"{url}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def connect(url: str | None = None, account_seed: bytes | None = None) -> Chain:
    """``None``/"embedded": in-process eth-tester chain; ``http(s)://...``: a JSON-RPC node, whose
    accounts are those of ``account_seed`` (default: a fresh secret one)."""
    if url is None or url == "embedded":
        return _embedded()
    if not re.match(r"^https?://", url):
        raise ChainError(f"{url}: unsupported chain URL (use 'embedded' or http(s)://host:port)")
    chain = _rpc(url)
    if account_seed is not None:
        chain.account_seed = account_seed
    return chain


# ---------------------------------------------------------------------------------------------
# anvil


def anvil_binary() -> str | None:
    """Path of the anvil executable (the platform binary if present, else the npm wrapper)."""
    nm = ROOT / "node_modules" / "@foundry-rs"
    for cand in sorted(nm.glob("anvil-*/bin/anvil")):
        if os.access(cand, os.X_OK):
            return str(cand)
    wrapper = ROOT / "node_modules" / ".bin" / "anvil"
    if wrapper.exists() and shutil.which("node"):
        return str(wrapper)
    return shutil.which("anvil")


class AnvilProcess:
    """A running anvil node on 127.0.0.1 (context manager)."""

    def __init__(self, proc: subprocess.Popen, url: str, port: int):
        self.proc = proc
        self.url = url
        self.port = port
        self.chain_id = DEV_CHAIN_ID

    def __enter__(self) -> "AnvilProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
            except (ProcessLookupError, PermissionError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=5)


def start_anvil(accounts: int = 10, gas_limit: int = EMBEDDED_GAS_LIMIT, timeout: float = 20.0,
                port: int = 0, hardfork: str | None = None, prune_history: bool = True,
                state: Path | None = None) -> AnvilProcess:
    """Starts anvil (chain id 31337; at its default hardfork unless ``hardfork`` names one, e.g.
    "prague") on ``port`` (0: a free one) and waits until it listens. ``prune_history`` keeps no
    past block states: otherwise anvil writes every mined block's state under ~/.foundry/anvil/tmp
    and leaves it there when stopped (a long load run filled a 79 GB disk). ``state``: a file the
    chain (blocks, transactions, receipts, state) is loaded from if it exists and saved to every
    second and when the node stops. The node stops (SIGTERM, saving its state) when the thread
    that started it dies, even by SIGKILL: a killed run or benchmark leaves no node behind."""
    binary = anvil_binary()
    if binary is None:
        raise ChainError("anvil not found (run `npm ci` to install node_modules/@foundry-rs/anvil)")
    # automine only: interval blocks (--mixed-mining) tick every deadline in real time, and made 7 of
    # 20 rounds of 200 prosumers miss the coordinator's window in the load benchmark; what automine
    # leaves pending the client mines itself (Chain._rebroadcast)
    cmd = [binary, "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(DEV_CHAIN_ID),
           "--accounts", str(accounts), "--balance", str(10**9), "--gas-limit", str(gas_limit)]
    if prune_history:
        cmd.append("--prune-history")
    if hardfork:
        cmd += ["--hardfork", hardfork]
    if state is not None:
        cmd += ["--state", str(state), "--state-interval", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    listening: list[int] = []
    ready = threading.Event()
    said = bytearray()  # what anvil printed before it listened: its reason, if it never does

    def pump() -> None:
        buf = b""
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
            if not chunk:
                ready.set()
                return
            if not listening:
                said.extend(chunk[:4096])
                buf += chunk
                m = re.search(rb"Listening on [\d.]+:(\d+)", buf)
                if m:
                    listening.append(int(m.group(1)))
                    ready.set()
                    buf = b""

    threading.Thread(target=pump, name="anvil-stdout", daemon=True).start()
    ready.wait(timeout)
    if not listening:
        proc.kill()
        lines = [x.strip() for x in said.decode(errors="replace").splitlines() if x.strip()]
        errors = [x for x in lines if x.lower().startswith("error")]
        if lines:
            raise ChainError(f"anvil did not start: {(errors or lines)[-1]}")
        raise ChainError(f"anvil did not start listening on 127.0.0.1:{port} within {timeout:.0f} s "
                         "(port in use?)" if port else f"anvil did not start listening within {timeout:.0f} s")
    return AnvilProcess(proc, f"http://127.0.0.1:{listening[0]}", listening[0])
