"""Reads every transaction sent to a market, with its input, status and logs, block range by block range.

Never ``eth_getLogs`` over the whole chain: on eth-tester a log or receipt lookup by hash walks the
chain back from its head (quadratic in the chain's length). Instead:
* JSON-RPC nodes: ``eth_getBlockByNumber`` (full transactions) and ``eth_getBlockReceipts`` in
  batches of blocks;
* the embedded chain: the py-evm blocks and receipts, directly.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from eth_utils import to_checksum_address
from hexbytes import HexBytes

from ..chain.backends import Chain, ChainError

BLOCKS_PER_BATCH = 64


@dataclass(frozen=True)
class Log:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    log_index: int


@dataclass
class Tx:
    hash: bytes
    block: int
    index: int
    sender: str
    to: str | None
    input: bytes
    status: int
    gas_used: int
    logs: list[Log] = field(default_factory=list)

    @property
    def hash_hex(self) -> str:
        return "0x" + self.hash.hex()


def read_market_transactions(chain: Chain, market: str, from_block: int = 0, to_block: int | None = None,
                             progress: Callable[[int, int], None] | None = None) -> list[Tx]:
    """Every transaction whose recipient is ``market``, in chain order, with receipt and logs."""
    market = to_checksum_address(market)
    head = chain.w3.eth.block_number if to_block is None else to_block
    reader = _embedded_blocks if chain.kind == "embedded" else _rpc_blocks
    out: list[Tx] = []
    for number, txs in reader(chain, from_block, head):
        out.extend(tx for tx in txs if tx.to == market)
        if progress:
            progress(number - from_block + 1, head - from_block + 1)
    return out


def _embedded_blocks(chain: Chain, first: int, last: int) -> Iterator[tuple[int, list[Tx]]]:
    pyevm = chain.tester.backend.chain
    for number in range(first, last + 1):
        block = pyevm.get_canonical_block_by_number(number)
        receipts = block.get_receipts(pyevm.chaindb)
        txs, used = [], 0
        for index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
            logs = [Log(to_checksum_address(log.address), tuple(t.to_bytes(32, "big") for t in log.topics),
                        bytes(log.data), 0) for log in receipt.logs]
            txs.append(Tx(bytes(tx.hash), number, index, to_checksum_address(tx.sender),
                          to_checksum_address(tx.to) if tx.to else None, bytes(tx.data),
                          1 if receipt.state_root == b"\x01" else 0, receipt.gas_used - used, logs))
            used = receipt.gas_used
        _number_logs(txs)
        yield number, txs


def _number_logs(txs: list[Tx]) -> None:
    index = 0
    for tx in txs:
        for k, log in enumerate(tx.logs):
            tx.logs[k] = Log(log.address, log.topics, log.data, index)
            index += 1


def _rpc_blocks(chain: Chain, first: int, last: int) -> Iterator[tuple[int, list[Tx]]]:
    for start in range(first, last + 1, BLOCKS_PER_BATCH):
        numbers = list(range(start, min(start + BLOCKS_PER_BATCH, last + 1)))
        blocks = chain._rpc_batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
        wanted = [n for n, b in zip(numbers, blocks) if b and b["transactions"]]
        try:
            receipts = dict(zip(wanted, chain._rpc_batch([("eth_getBlockReceipts", [hex(n)]) for n in wanted])))
        except ChainError:  # nodes without eth_getBlockReceipts
            receipts = {n: chain._rpc_batch([("eth_getTransactionReceipt", [t["hash"]]) for t in b["transactions"]])
                        for n, b in zip(numbers, blocks) if n in wanted}
        for n, block in zip(numbers, blocks):
            txs = []
            for index, (tx, rc) in enumerate(zip(block["transactions"] if block else [], receipts.get(n, []))):
                logs = [Log(to_checksum_address(lg["address"]), tuple(bytes(HexBytes(t)) for t in lg["topics"]),
                            bytes(HexBytes(lg["data"])), int(lg["logIndex"], 16)) for lg in rc["logs"]]
                txs.append(Tx(bytes(HexBytes(tx["hash"])), n, index, to_checksum_address(tx["from"]),
                              to_checksum_address(tx["to"]) if tx.get("to") else None, bytes(HexBytes(tx["input"])),
                              int(rc["status"], 16), int(rc["gasUsed"], 16), logs))
            yield n, txs
