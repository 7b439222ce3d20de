"""A market's history decoded from its transactions: events in chain order and call inputs."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from eth_utils import event_abi_to_log_topic, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from ..chain.compiler import compile_contracts
from .reader import Tx


@dataclass(frozen=True)
class Event:
    name: str
    args: dict[str, Any]
    tx: Tx
    log_index: int

    @property
    def round_id(self) -> int | None:
        return self.args.get("roundId")


@dataclass(frozen=True)
class Call:
    name: str
    args: dict[str, Any]
    tx: Tx


def _plain(value: Any) -> Any:
    """web3's decoded values as plain Python (structs as dicts, bytes as bytes)."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, HexBytes):
        return bytes(value)
    return value


class MarketHistory:
    """Events of the market (and token transfers it caused) and the decoded input of every call."""

    def __init__(self, market: str, txs: list[Tx]) -> None:
        artifacts = compile_contracts()
        w3 = Web3()
        self.address = to_checksum_address(market)
        abi = list(artifacts["PrivateRounds"].abi)  # every mechanism's rounds run on the one round contract
        self.contract = w3.eth.contract(address=self.address, abi=abi)
        self.token_abi = artifacts["SettlementToken"].abi
        self._by_topic = {event_abi_to_log_topic(e): e["name"] for e in abi if e["type"] == "event"}
        self.txs: list[Tx] = []
        self.events: list[Event] = []
        self.calls: list[Call] = []
        self.extend(txs)

    def extend(self, txs: list[Tx]) -> None:
        """Decodes ``txs`` (later in the chain than those read before) and adds them."""
        self.txs.extend(txs)
        for tx in txs:
            try:
                fn, args = self.contract.decode_function_input(tx.input)
                self.calls.append(Call(fn.fn_name, _plain(args), tx))
            except ValueError:
                self.calls.append(Call("unknown", {}, tx))
            for log in tx.logs:
                if log.address != self.address or not log.topics or log.topics[0] not in self._by_topic:
                    continue
                name = self._by_topic[log.topics[0]]
                entry = {"address": log.address, "topics": [HexBytes(t) for t in log.topics],
                         "data": HexBytes(log.data), "logIndex": log.log_index, "transactionIndex": tx.index,
                         "transactionHash": HexBytes(tx.hash), "blockHash": HexBytes(b"\0" * 32),
                         "blockNumber": tx.block}
                decoded = getattr(self.contract.events, name)().process_log(entry)
                self.events.append(Event(name, _plain(decoded["args"]), tx, log.log_index))

    def round_ids(self) -> list[int]:
        return [e.args["roundId"] for e in self.events if e.name == "RoundCreated"]

    def of_round(self, round_id: int) -> list[Event]:
        return [e for e in self.events if e.round_id == round_id]

    def calls_of_round(self, round_id: int) -> list[Call]:
        return [c for c in self.calls if c.args.get("roundId") == round_id]

    def gas_by_iteration(self, round_id: int) -> dict[int, dict[str, int]]:
        gas: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for call in self.calls_of_round(round_id):
            if call.name == "submit" and call.tx.status == 1:
                gas[call.args["iteration"]][call.name] += call.tx.gas_used
        kinds = {"AggregationProgress": "aggregate", "Aggregated": "aggregate", "Published": "publish",
                 "Concluded": "conclude", "Dropped": "advance", "Disputed": "dispute", "CheckOpened": "open check",
                 "Accused": "accuse"}
        seen = set()
        for e in self.of_round(round_id):
            if e.name in kinds and (e.tx.hash, e.name) not in seen:
                seen.add((e.tx.hash, e.name))
                gas[e.args["iteration"]][kinds[e.name]] += e.tx.gas_used
        return {k: dict(v) for k, v in sorted(gas.items())}
