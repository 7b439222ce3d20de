"""Paillier with g = n + 1, keys from phe, arithmetic in gmpy2.

Encryption is split into an offline and an online part: ``r^n mod n^2`` (the expensive
exponentiation) is precomputed by a :class:`RandomnessPool`, so encrypting a plaintext online is
one multiplication, ``(1 + m*n) * r^n mod n^2``.

Opening proof: the key holder reveals the plaintext ``m`` and the randomness ``rho`` of a
ciphertext ``c``; anyone checks ``c == (1 + m*n) * rho^n mod n^2``. ``rho`` is recoverable with the
factorisation: ``c * (1+n)^-m = rho^n mod n^2``, hence ``rho = (c mod n)^(n^-1 mod phi(n)) mod n``
after removing the plaintext. Revealing ``(m, rho)`` of an aggregate discloses nothing beyond ``m``.
"""
from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import secrets
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import gmpy2
from phe import paillier as phe_paillier

from ..processes import die_with_parent

DEFAULT_KEY_BITS = 2048


@dataclass(frozen=True)
class PublicKey:
    n: int

    @cached_property
    def n_sq(self) -> int:
        return self.n * self.n

    @cached_property
    def nbytes(self) -> int:
        """Byte length of ``n`` on chain: the bit length rounded up to whole 32-byte words."""
        return -(-self.n.bit_length() // 256) * 32

    @property
    def ciphertext_bytes(self) -> int:
        return 2 * self.nbytes

    def random_r(self) -> tuple[int, int]:
        """A fresh uniform ``r`` in Z*_n and ``r^n mod n^2`` (the offline part of an encryption;
        ``r`` opens the ciphertext, as a blame step asks)."""
        while True:
            r = secrets.randbelow(self.n - 1) + 1
            if gmpy2.gcd(r, self.n) == 1:
                return r, int(gmpy2.powmod(r, self.n, self.n_sq))

    def encrypt(self, m: int, rn: int | None = None) -> int:
        """Encrypt ``0 <= m < n``; ``rn`` is a precomputed ``r^n mod n^2`` used exactly once."""
        if not 0 <= m < self.n:
            raise ValueError("plaintext out of range [0, n)")
        rn = self.random_r()[1] if rn is None else rn
        return int(gmpy2.f_mod(gmpy2.mpz(1 + m * self.n) * rn, self.n_sq))

    def add(self, *ciphertexts: int) -> int:
        """Homomorphic sum: the product of the ciphertexts mod n^2."""
        acc = gmpy2.mpz(1)
        for c in ciphertexts:
            acc = gmpy2.f_mod(acc * c, self.n_sq)
        return int(acc)

    def verify_opening(self, c: int, m: int, rho: int) -> bool:
        """True when ``c`` encrypts ``m`` with randomness ``rho``."""
        if not (0 <= m < self.n and 0 < rho < self.n and 0 < c < self.n_sq):
            return False
        return (1 + m * self.n) * int(gmpy2.powmod(rho, self.n, self.n_sq)) % self.n_sq == c

    def to_bytes(self, c: int) -> bytes:
        return int(c).to_bytes(self.ciphertext_bytes, "big")


@dataclass(frozen=True)
class PrivateKey:
    public: PublicKey
    p: int
    q: int

    @cached_property
    def _phe(self) -> phe_paillier.PaillierPrivateKey:
        return phe_paillier.PaillierPrivateKey(phe_paillier.PaillierPublicKey(self.public.n), self.p, self.q)

    @cached_property
    def _n_inv_mod_phi(self) -> int:
        return int(gmpy2.invert(self.public.n, (self.p - 1) * (self.q - 1)))

    def decrypt(self, c: int) -> int:
        return int(self._phe.raw_decrypt(int(c)))

    def opening(self, c: int) -> tuple[int, int]:
        """``(m, rho)`` with ``c = (1+n)^m * rho^n mod n^2``: the decryption and its proof."""
        n, n_sq = self.public.n, self.public.n_sq
        m = self.decrypt(c)
        rn = gmpy2.f_mod(gmpy2.mpz(c) * (1 - m * n), n_sq)  # (1+n)^-m = 1 - m*n mod n^2
        rho = int(gmpy2.powmod(gmpy2.f_mod(rn, n), self._n_inv_mod_phi, n))
        return m, rho


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """A fresh Paillier key pair (phe's generator, g = n + 1)."""
    pub, priv = phe_paillier.generate_paillier_keypair(n_length=bits)
    public = PublicKey(pub.n)
    return public, PrivateKey(public, priv.p, priv.q)


def _random_r_batch(n: int, count: int) -> list[tuple[int, int]]:
    key = PublicKey(n)
    return [key.random_r() for _ in range(count)]


_precompute_executor: ProcessPoolExecutor | None = None


def _executor() -> ProcessPoolExecutor:
    """Worker processes, one per core beyond the first: precomputation (the encryptions' offline
    part, opening checks) runs on the other cores while the round goes on.

    Forked (fork does not re-run the caller's main script), all at once (a forking pool starts
    every worker at its first task), once per process and by :func:`start_worker` before any key
    exists, so their copies of the parent's memory hold no secret; they need only the public
    modulus they are given. They die with their parent.
    """
    global _precompute_executor
    if _precompute_executor is None:
        workers = max(1, (os.cpu_count() or 2) - 1)
        _precompute_executor = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"),
                                                   initializer=die_with_parent)
        atexit.register(_precompute_executor.shutdown, wait=False, cancel_futures=True)
        _precompute_executor.submit(int).result()  # forks the worker now
    return _precompute_executor


def _verify(n: int, c: int, m: int, rho: int) -> bool:
    return PublicKey(n).verify_opening(c, m, rho)


def verify_later(key: PublicKey, c: int, m: int, rho: int):
    """``key.verify_opening(c, m, rho)`` in the background worker: a future of the verdict."""
    return _executor().submit(_verify, key.n, c, m, rho)


def start_worker() -> None:
    """Starts the precomputation worker (call before generating or loading any key)."""
    _executor()


@dataclass
class RandomnessPool:
    """Precomputed ``(r, r^n mod n^2)`` pairs: the offline part of every encryption.

    A background process keeps ``ahead`` values in flight, off the critical path; ``take`` hands
    each value out once (reusing randomness would leak plaintext differences), orders a
    replacement, and computes inline only when nothing was ordered.
    """

    key: PublicKey
    ahead: int = 0
    _ready: deque = field(default_factory=deque, init=False, repr=False)
    _pending: deque = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        for _ in range(self.ahead):
            self._order()

    def _order(self) -> None:
        self._pending.append(_executor().submit(_random_r_batch, self.key.n, 1))

    def fill(self, count: int) -> None:
        """Precompute ``count`` values now, in this process."""
        self._ready.extend(_random_r_batch(self.key.n, count))

    def take(self) -> tuple[int, int]:
        """``(r, r^n mod n^2)``."""
        if not self._ready and self._pending:
            self._ready.extend(self._pending.popleft().result())
        if self.ahead:
            self._order()
        return self._ready.popleft() if self._ready else self.key.random_r()

    def close(self) -> None:
        """Cancel the values still on order."""
        while self._pending:
            self._pending.popleft().cancel()

    def __len__(self) -> int:
        return len(self._ready)
