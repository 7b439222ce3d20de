"""Pairwise additive masks and one-time pads from X25519 agreements (Bonawitz et al., CCS 2017).

Rounds with dropout recovery mask with :mod:`offchain.privacy.secagg` instead; the X25519 seeds
then seal the pair messages and the recovery shares only.

Each participant registers an X25519 public key on chain. Participants ``i`` and ``j`` derive the
same pair seed with HKDF-SHA256 from their Diffie-Hellman secret, bound to the market, the round
and both addresses; the per-iteration mask is expanded from it with keccak256. The lower address
adds the mask and the higher one subtracts it, so all masks cancel in the sum modulo 2^B while
each single masked vector is uniform.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from eth_utils import keccak
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class MaskKey:
    """A participant's X25519 key pair for mask agreement."""

    def __init__(self, private: X25519PrivateKey | None = None) -> None:
        self._private = private or X25519PrivateKey.generate()

    @property
    def public_bytes(self) -> bytes:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def pair_seeds(self, own_address: str, peers: Sequence[tuple[str, bytes]], context: bytes) -> dict[str, bytes]:
        """One 32-byte seed per peer (``peers`` = registered ``(address, public key)``, self skipped)."""
        own = own_address.lower()
        seeds = {}
        for address, public in peers:
            peer = address.lower()
            if peer == own:
                continue
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
            low, high = sorted((own, peer))
            seeds[peer] = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=context,
                info=b"gridshare/pairwise-mask/" + low.encode() + b"/" + high.encode(),
            ).derive(shared)
        return seeds


def stream(seed: bytes, iteration: int, count: int, slot_bits: int) -> list[int]:
    """``count`` values mod 2^B from keccak256(seed || iteration || counter) blocks (the contract
    expands a mask the same way in the blame step)."""
    width = -(-slot_bits // 8)
    raw = b"".join(keccak(seed + iteration.to_bytes(8, "big") + c.to_bytes(4, "big"))
                   for c in range(-(-count * width // 32)))
    modulus = 1 << slot_bits
    return [int.from_bytes(raw[k * width:(k + 1) * width], "big") % modulus for k in range(count)]


def mask_vector(own_address: str, seeds: dict[str, bytes], iteration: int, periods: int, slot_bits: int) -> list[int]:
    """This participant's net mask for one iteration, uniform modulo 2^B per slot."""
    own, modulus = own_address.lower(), 1 << slot_bits
    total = [0] * periods
    for peer, seed in seeds.items():
        sign = 1 if own < peer else -1
        for t, value in enumerate(stream(seed, iteration, periods, slot_bits)):
            total[t] += sign * value
    return [v % modulus for v in total]


# ------------------------------------------------------------------ pair pads
# A message from i to its trading partner j (the ADMM pair exchange) travels on chain under a
# one-time pad from the i-j seed: 64-bit words (v + pad) mod 2^64. Each direction and iteration
# has its own pad, so the chain (and the operator, the centre, everyone but j) sees uniform words.
PAD_BITS = 64


def _pad(seed: bytes, iteration: int, sender: str, receiver: str, count: int) -> list[int]:
    direction = 0 if sender.lower() < receiver.lower() else 1
    return stream(seed, 2 * iteration + direction, count, PAD_BITS)


def seal(values: Sequence[int], seed: bytes, iteration: int, sender: str, receiver: str) -> bytes:
    """Signed 64-bit integers -> pad-encrypted big-endian words for ``receiver``."""
    modulus = 1 << PAD_BITS
    pad = _pad(seed, iteration, sender, receiver, len(values))
    return b"".join(((int(v) + p) % modulus).to_bytes(8, "big") for v, p in zip(values, pad))


def unseal(data: bytes, seed: bytes, iteration: int, sender: str, receiver: str) -> list[int]:
    """Inverse of :func:`seal` (run by ``receiver``)."""
    modulus, half = 1 << PAD_BITS, 1 << (PAD_BITS - 1)
    count = len(data) // 8
    pad = _pad(seed, iteration, sender, receiver, count)
    out = []
    for k in range(count):
        v = (int.from_bytes(data[8 * k:8 * k + 8], "big") - pad[k]) % modulus
        out.append(v - modulus if v >= half else v)
    return out


def seal_bytes(data: bytes, seed: bytes, label: bytes) -> bytes:
    """``data`` XOR a pad expanded from a pair seed and a label used once (opens itself)."""
    pad = hashlib.shake_256(b"gridshare/seal/" + seed + label).digest(len(data))
    return bytes(a ^ b for a, b in zip(data, pad))
