"""The parties of a private round, each holding only what it may hold.

* :class:`ProsumerAgent`: its own model (profiles, devices, costs), its mask key and the
  randomness of its encryptions. It publishes ciphertexts and hiding commitments only; its
  plaintext schedule leaves it at settlement, as the reveal that the contract checks.
* :class:`Coordinator`: the Paillier private key and the tariff iteration. It sees ciphertexts and
  decrypts only the on-chain aggregate, whose slots are sums over all prosumers.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import numpy as np
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ..chain.market import Reveal, commitment
from ..mechanisms.tariff import Decision, TariffIteration
from ..privacy.masks import MaskKey, mask_vector
from ..privacy.packing import SlotLayout
from ..privacy.paillier import PublicKey, RandomnessPool, generate_keypair
from ..units import energy_from_fixed, energy_to_fixed


@dataclass(frozen=True)
class Bid:
    """What a prosumer publishes in one iteration: public by design."""
    ciphertext: bytes
    commitment: bytes


class ProsumerAgent:
    def __init__(self, name: str, model, account: LocalAccount) -> None:
        self.name = name
        self.model = model
        self.account = account
        self.mask_key = MaskKey()
        self.solve_seconds = 0.0
        self.encrypt_seconds = 0.0
        self.response = None  # the model's last best response (private)
        self._reveal: Reveal | None = None

    @property
    def address(self) -> str:
        return self.account.address

    def join(self, key: PublicKey, layout: SlotLayout, peers: list[tuple[str, bytes]], context: bytes) -> None:
        """Agree pair seeds with the registered peers; start precomputing encryption randomness."""
        self._key, self._layout = key, layout
        self._seeds = self.mask_key.pair_seeds(self.address, peers, context)
        self._pool = RandomnessPool(key, ahead=2)

    def leave(self) -> None:
        self._pool.close()

    def bid(self, round_id: int, iteration: int, tariff: np.ndarray) -> Bid:
        """Best response to ``tariff``, fixed point, masked, packed and encrypted."""
        t0 = time.perf_counter()
        self.response = self.model.respond(tariff)
        t1 = time.perf_counter()
        values = energy_to_fixed(self.response.x)
        mask = mask_vector(self.address, self._seeds, iteration, self._layout.periods, self._layout.slot_bits)
        ciphertext = self._key.to_bytes(self._key.encrypt(self._layout.pack(values, mask), self._pool.take()))
        salt = secrets.token_bytes(32)
        self._reveal = Reveal(values, salt, keccak(ciphertext))
        bid = Bid(ciphertext, commitment(round_id, iteration, self.address, values, salt))
        self.solve_seconds += t1 - t0
        self.encrypt_seconds += time.perf_counter() - t1
        return bid

    def reveal(self) -> Reveal:
        """Opening of the last commitment: handed over for settlement once the round concluded."""
        assert self._reveal is not None, "no bid yet"
        return self._reveal


class Coordinator:
    """The weak centre: holds the Paillier private key and runs the tariff iteration."""

    def __init__(self, account: LocalAccount, iteration: TariffIteration, key_bits: int) -> None:
        self.account = account
        self.iteration = iteration
        self.public_key, self._private_key = generate_keypair(key_bits)
        self.decrypt_seconds = 0.0

    def decide(self, aggregate: bytes, layout: SlotLayout) -> tuple[Decision, int, int]:
        """Decrypt the aggregate, prove it, and apply the tariff rule to the community imbalance."""
        t0 = time.perf_counter()
        plaintext, opening = self._private_key.opening(int.from_bytes(aggregate, "big"))
        self.decrypt_seconds += time.perf_counter() - t0
        imbalance = energy_from_fixed(layout.unpack_sums(plaintext))
        return self.iteration.observe(imbalance), plaintext, opening
