"""Mask streams and the one-time pads of pair messages.

A mask (:mod:`offchain.privacy.secagg`) and a pad are expanded from a 32-byte seed with keccak256,
so that the contract expands a mask the same way in a dispute or a blame step.
"""
from __future__ import annotations

from collections.abc import Sequence

from Crypto.Hash import keccak as _keccak


def stream(seed: bytes, index: int, count: int, slot_bits: int) -> list[int]:
    """``count`` values mod 2^B from keccak256(seed || index || counter) blocks (index: 8 bytes,
    counter: 4), each ceil(B / 8) bytes: as the contract expands a mask."""
    width = -(-slot_bits // 8)
    prefix = bytes(seed) + index.to_bytes(8, "big")
    raw = b"".join(_keccak.new(digest_bits=256, data=prefix + c.to_bytes(4, "big")).digest()
                   for c in range(-(-count * width // 32)))
    modulus = 1 << slot_bits
    return [int.from_bytes(raw[k * width:(k + 1) * width], "big") % modulus for k in range(count)]


# ------------------------------------------------------------------ pair pads
# A message from i to its trading partner j (the ADMM pair exchange) travels on chain under a
# one-time pad from the i-j seed: 64-bit words (v + pad) mod 2^64. Each direction and attempt of
# an iteration (``index``: secagg.stream_index) has its own pad, so the chain (and the operator,
# the centre, everyone but j) sees uniform words.
PAD_BITS = 64


def _pad(seed: bytes, index: int, sender: str, receiver: str, count: int) -> list[int]:
    direction = 0 if sender.lower() < receiver.lower() else 1
    return stream(seed, 2 * index + direction, count, PAD_BITS)


def seal(values: Sequence[int], seed: bytes, index: int, sender: str, receiver: str) -> bytes:
    """Signed 64-bit integers -> pad-encrypted big-endian words for ``receiver``."""
    modulus = 1 << PAD_BITS
    pad = _pad(seed, index, sender, receiver, len(values))
    return b"".join(((int(v) + p) % modulus).to_bytes(8, "big") for v, p in zip(values, pad))


def unseal(data: bytes, seed: bytes, index: int, sender: str, receiver: str) -> list[int]:
    """Inverse of :func:`seal` (run by ``receiver``)."""
    modulus, half = 1 << PAD_BITS, 1 << (PAD_BITS - 1)
    count = len(data) // 8
    pad = _pad(seed, index, sender, receiver, count)
    out = []
    for k in range(count):
        v = (int.from_bytes(data[8 * k:8 * k + 8], "big") - pad[k]) % modulus
        out.append(v - modulus if v >= half else v)
    return out
