"""What each party of a private round holds, and nothing more.

* :class:`MemberKeys`: one participant's secrets for one round: its X25519 mask key, the pair
  seeds agreed with the other participants (masks for the coordinator's sum, pads for pair
  messages), the randomness of its encryptions and the salts of its commitments. It turns a
  mechanism's plain :class:`~offchain.framework.Contribution` into what travels
  (:class:`Sealed`) and opens the pair messages sent to it.
* :class:`CoordinatorKeys`: the coordinator's Paillier key pair; it decrypts only aggregates.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from eth_utils import keccak

from ..chain.market import commitment
from ..framework import Contribution
from ..privacy.masks import MaskKey, mask_vector, seal, unseal
from ..privacy.packing import SlotLayout
from ..privacy.paillier import PublicKey, RandomnessPool, generate_keypair


@dataclass(frozen=True)
class Sealed:
    """One participant's submission: public by design."""
    ciphertext: bytes  # Paillier ciphertext of the masked, packed sums (empty without a key)
    commitment: bytes  # hiding commitment to the reveal
    pairs: bytes  # one pad-sealed block per other participant, registration order
    salt: bytes  # kept by the participant until settlement
    reveal: list[int]


class MemberKeys:
    """A participant's mask key and, once joined, its seeds, randomness pool and salts."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.mask_key = MaskKey()
        self._pool: RandomnessPool | None = None

    @property
    def public_bytes(self) -> bytes:
        return self.mask_key.public_bytes

    def join(self, key: PublicKey | None, layout: SlotLayout | None, peers: list[tuple[str, bytes]],
             context: bytes) -> None:
        """Agree seeds with the registered ``peers`` (address, mask key), in registration order."""
        self._key, self._layout = key, layout
        self._others = [a for a, _ in peers if a.lower() != self.address.lower()]
        self._masks = self.mask_key.pair_seeds(self.address, peers, context + b"/sums")
        self._pads = self.mask_key.pair_seeds(self.address, peers, context + b"/pairs")
        self._pool = RandomnessPool(key, ahead=2) if key is not None else None

    def leave(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def seal(self, round_id: int, k: int, c: Contribution, partners: dict[str, list[int]]) -> Sealed:
        """Mask, pack and encrypt ``c.sums``; seal each partner's vector (``partners``: {address:
        values}, every other participant when the round has pair lanes); commit to the reveal."""
        ciphertext = b""
        if self._key is not None:
            mask = mask_vector(self.address, self._masks, k, self._layout.periods, self._layout.slot_bits)
            plaintext = self._layout.pack(c.sums, mask)
            ciphertext = self._key.to_bytes(self._key.encrypt(plaintext, self._pool.take()))
        pairs = b"".join(seal(partners[other], self._pads[other.lower()], k, self.address, other)
                         for other in self._others) if partners else b""
        salt = secrets.token_bytes(32)
        reveal = c.committed
        return Sealed(ciphertext, commitment(round_id, k, self.address, reveal, salt), pairs, salt, reveal)

    def open_pairs(self, k: int, sender: str, blob: bytes, lanes: int, senders_others: list[str]) -> list[int]:
        """The block ``sender`` sealed for this participant (its position among the sender's others)."""
        b = [o.lower() for o in senders_others].index(self.address.lower())
        return unseal(blob[8 * lanes * b:8 * lanes * (b + 1)], self._pads[sender.lower()], k, sender, self.address)

    @staticmethod
    def ciphertext_hash(sealed: Sealed) -> bytes:
        return keccak(sealed.ciphertext)


class CoordinatorKeys:
    """The coordinator's Paillier key pair."""

    def __init__(self, key_bits: int) -> None:
        self.public, self._private = generate_keypair(key_bits)

    def open(self, aggregate: int, layout: SlotLayout) -> tuple[list[int], int, int]:
        """The slot sums of an aggregate, its plaintext and its opening proof."""
        plaintext, opening = self._private.opening(int(aggregate))
        return layout.unpack_sums(plaintext), plaintext, opening
