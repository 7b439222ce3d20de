"""What each party of a private round holds, and nothing more.

* :class:`MemberKeys`: one participant's secrets for one round: its mask secret ``a``
  (:class:`~offchain.privacy.secagg.MaskSecrets`: its key, its mask points, its masks and the pads
  of its pair messages), the randomness of its encryptions and the salts of its commitments.
  Given its :class:`~offchain.keystore.PartySecrets`, it keeps each secret there before using it,
  so that a resumed run makes the same messages. It turns a mechanism's plain
  :class:`~offchain.framework.Contribution` into what travels (:class:`Sealed`), opens what is
  sealed for it, and makes what a dispute or a blame step asks of it.
* :class:`CoordinatorKeys`: the coordinator's Paillier key pair; it decrypts only aggregates.

A simulated hostile participant (``behaviour``, for tests and ``--cheat``) differs from an honest
one in one named way: ``cheat`` encrypts its values plus 1 and commits to the true ones (the
blame step names it), ``forge`` does the same and then opens it in the blame step with a
plaintext that fits its reveal and a randomness that does not (a challenge names it), ``copy``
submits a re-randomised copy of another's ciphertext, ``garble`` encrypts its values under
made-up masks, ``bad-point`` posts a next mask point that is not ``a H_{k+1}``, ``lie`` claims
false check values in a dispute (each of the last four is named by a dispute).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from eth_utils import keccak

from ..chain.market import commitment
from ..errors import ProtocolViolation
from ..framework import Contribution
from ..keystore import PartySecrets
from ..privacy import secagg
from ..privacy.masks import seal, unseal
from ..privacy.packing import SlotLayout
from ..privacy.paillier import PrivateKey, PublicKey, RandomnessPool, generate_keypair

BEHAVIOURS = ("cheat", "forge", "copy", "garble", "bad-point", "lie")


@dataclass(frozen=True)
class Sealed:
    """One participant's submission: public by design (but ``salt``, ``reveal``, ``plaintext``, ``rho``)."""
    ciphertext: bytes  # Paillier ciphertext of the masked, packed sums (empty without a key)
    commitment: bytes  # hiding commitment to the reveal
    pairs: bytes  # one pad-sealed block per other active participant, registration order
    salt: bytes  # kept by the participant until it reveals
    reveal: list[int]
    next_point: bytes = b""  # its mask point of the next iteration (rounds with a key)
    plaintext: int = 0  # what the ciphertext encrypts (masked, packed) and its randomness rho: the
    rho: int = 0  # opening a dispute or a blame step asks for (kept by the participant only)
    iteration: int = 0
    attempt: int = 0


class MemberKeys:
    """A participant's keys and, once joined, its pads, masks, randomness and salts."""

    def __init__(self, address: str, kept: PartySecrets | None = None, behaviour: str | None = None) -> None:
        if behaviour is not None and behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        self.address = address
        self._kept = kept
        self.behaviour = behaviour
        secret = self._keep("mask secret", lambda: str(secagg.random_scalar()))
        self._secret = int(secret) if secret else secagg.random_scalar()
        self._pool: RandomnessPool | None = None
        self.masks: secagg.MaskSecrets | None = None
        self.copy_of: bytes | None = None  # a ``copy`` participant's victim's ciphertext (set by its simulation)

    def _keep(self, key: str, make):
        """``make()``'s value, kept in (or, on a resumed run, read from) the key store; None without one."""
        return self._kept.keep(key, make) if self._kept is not None else None

    @property
    def honest(self) -> bool:
        return self.behaviour is None

    def registration_keys(self, context: bytes, keyed: bool, lanes: bool) -> bytes:
        """What ``register`` posts: A = a G and, with a key, Y(0) = a H_0 (or only A with pair
        lanes, nothing without either)."""
        key = secagg.multiply(secagg.GENERATOR, self._secret)
        if keyed:
            return key + secagg.multiply(secagg.iteration_point(context, 0), self._secret)
        return key if lanes else b""

    def join(self, key: PublicKey | None, layout: SlotLayout | None, peers: list[tuple[str, bytes]],
             plan: secagg.Plan) -> None:
        """Agree pads with the registered ``peers`` (address, keys), in registration order."""
        self._key, self._layout = key, layout
        self._peers = [a.lower() for a, _ in peers]
        self.position = self._peers.index(self.address.lower())
        self.masks = secagg.MaskSecrets(self.position, plan, self._secret)
        self._pads = {a.lower(): self.masks.pad_seed(k[:secagg.POINT_BYTES], self.address, a)
                      for a, k in peers if a.lower() != self.address.lower() and k}
        self._pool = RandomnessPool(key, ahead=2) if key is not None else None

    def leave(self) -> None:
        if self._pool is not None:
            self._pool.close()

    # -- submissions ----------------------------------------------------------------------------
    def seal(self, round_id: int, k: int, attempt: int, c: Contribution, partners: dict[str, list[int]],
             points: dict[int, bytes] | None, active: set[int]) -> Sealed:
        """Mask, pack and encrypt ``c.sums`` for attempt ``attempt`` of iteration ``k`` (``points``:
        the iteration's mask points, ``active``: the positions in the attempt); seal each partner's
        vector (``partners``: {address: values}, every other active participant when the round has
        pair lanes); commit to the reveal. A submission kept for this attempt (a resumed run) is
        given again, if it commits to the same values."""
        name = f"submission {round_id}/{k}/{attempt}"
        kept = self._kept.get(name) if self._kept is not None else None
        if kept is not None:
            if kept["reveal"] != list(c.committed):
                raise ProtocolViolation(f"{self.address}: the resumed run differs from the killed one in iteration {k}")
            return Sealed(*(bytes.fromhex(kept[f]) for f in ("ciphertext", "commitment", "pairs", "salt")),
                          kept["reveal"], bytes.fromhex(kept["next_point"]), int(kept["plaintext"]), int(kept["rho"]),
                          k, attempt)
        sealed = self._seal(round_id, k, attempt, c, partners, points, active)
        if self._kept is not None:
            self._kept.put(name, {
                **{f: getattr(sealed, f).hex() for f in ("ciphertext", "commitment", "pairs", "salt", "next_point")},
                "reveal": list(sealed.reveal), "plaintext": str(sealed.plaintext), "rho": str(sealed.rho)})
        return sealed

    def _seal(self, round_id: int, k: int, attempt: int, c: Contribution, partners: dict[str, list[int]],
              points: dict[int, bytes] | None, active: set[int]) -> Sealed:
        ciphertext, next_point, plaintext, rho = b"", b"", 0, 0
        if self.behaviour in ("cheat", "forge"):
            c = replace(c, sums=[v + 1 for v in c.sums], reveal=list(c.committed))
        if self._key is not None:
            layout = self._layout
            mask = self.masks.mask(k, attempt, points, active, layout.periods, layout.slot_bits)
            if self.behaviour == "garble":
                mask = [(m + 1) % (1 << layout.slot_bits) for m in mask]
            next_point = self.masks.point(k + 1)
            if self.behaviour == "bad-point":
                next_point = secagg.multiply(secagg.GENERATOR, secagg.random_scalar())
            plaintext = layout.pack(c.sums, mask)
            rho, rn = self._pool.take()
            encrypted = self._key.encrypt(plaintext, rn)
            if self.behaviour == "copy" and self.copy_of:  # another's ciphertext times a fresh r^n
                encrypted = self._key.add(int.from_bytes(self.copy_of, "big"), self._key.encrypt(0, rn))
            ciphertext = self._key.to_bytes(encrypted)
        pairs = b"".join(seal(partners[other], self._pads[other], secagg.stream_index(k, attempt), self.address, other)
                         for other in self._others(active)) if partners else b""
        salt = secrets.token_bytes(32)
        reveal = c.committed
        return Sealed(ciphertext, commitment(round_id, k, self.address, reveal, salt), pairs, salt, reveal, next_point,
                      plaintext, rho, k, attempt)

    def _others(self, active: set[int]) -> list[str]:
        return [a for j, a in enumerate(self._peers) if a != self.address.lower() and j in active]

    def open_pairs(self, k: int, attempt: int, sender: str, blob: bytes, lanes: int, senders_others: list[str]) -> list[int]:
        """The block ``sender`` sealed for this participant (its position among the sender's others)."""
        b = [o.lower() for o in senders_others].index(self.address.lower())
        return unseal(blob[8 * lanes * b:8 * lanes * (b + 1)], self._pads[sender.lower()],
                      secagg.stream_index(k, attempt), sender, self.address)

    # -- disputes and blame ---------------------------------------------------------------------
    def _opened(self, sealed: Sealed) -> bytes:
        nbytes = self._key.nbytes
        return sealed.ciphertext + sealed.plaintext.to_bytes(nbytes, "big") + sealed.rho.to_bytes(nbytes, "big")

    def check_opening(self, sealed: Sealed, points: dict[int, bytes], active: set[int]) -> tuple[bytes, bytes, list[int]] | None:
        """What it posts in a dispute of its attempt (`PrivateRounds.openCheck`): its commitment,
        its ciphertext || plaintext || rho and its check value with each active neighbour. None
        where it cannot open (a copy: it knows neither plaintext nor randomness)."""
        if self.behaviour == "copy":
            return None
        layout = self._layout
        checks = self.masks.checks(sealed.iteration, sealed.attempt, points, active, layout.periods, layout.slot_bits)
        if self.behaviour in ("lie", "garble"):
            # false claims that still add up to its own (garbled) check slot, so that the contract
            # takes the opening and only a neighbour's proof shows them false
            plan, modulus = self.masks.plan, 1 << layout.slot_bits
            _, check = layout.unpack(sealed.plaintext)
            nbrs = plan.active_neighbours(self.position, active)
            honest = sum(plan.sign(self.position, j) * e for j, e in zip(nbrs, checks)) % modulus
            delta = (check - honest) % modulus
            checks[0] = (checks[0] + plan.sign(self.position, nbrs[0]) * (delta or 1)) % modulus
            if not delta:  # "lie" with honest masks: the same amount back off the second neighbour
                checks[1] = (checks[1] - plan.sign(self.position, nbrs[1])) % modulus
        return sealed.commitment, self._opened(sealed), checks

    def accusation(self, k: int, other_point: bytes) -> bytes:
        """The proof of its pair mask with a neighbour whose claimed check value differs (`accuse`)."""
        return self.masks.accusation(k, other_point)

    def blame_opening(self, sealed: Sealed, points: dict[int, bytes], active: set[int]) -> tuple[bytes, bytes] | None:
        """What it posts in a blame step (`PrivateRounds.openBlame`): its final ciphertext with its
        plaintext and randomness, and its proven masks of the final attempt. None if its
        ciphertext does not encrypt its reveal under those masks (a cheat: the chain would reject
        the opening)."""
        layout = self._layout
        mask = self.masks.mask(sealed.iteration, sealed.attempt, points, active, layout.periods, layout.slot_bits)
        if self.behaviour == "forge":  # the plaintext its reveal needs, with a randomness that cannot open it
            sealed = replace(sealed, plaintext=layout.pack(sealed.reveal[:layout.periods], mask), rho=1)
        if layout.unpack(sealed.plaintext, mask) != (list(sealed.reveal[:layout.periods]), 0):
            return None
        return self._opened(sealed), self.masks.blame_masks(sealed.iteration, points, active)

    @staticmethod
    def ciphertext_hash(sealed: Sealed) -> bytes:
        return keccak(sealed.ciphertext)


class CoordinatorKeys:
    """The coordinator's Paillier key pair."""

    def __init__(self, key_bits: int, kept: PartySecrets | None = None) -> None:
        factors = kept.get("paillier") if kept is not None else None
        if factors is None:
            self.public, self._private = generate_keypair(key_bits)
            if kept is not None:
                kept.put("paillier", [self._private.p, self._private.q])
        else:
            p, q = factors
            self.public = PublicKey(p * q)
            self._private = PrivateKey(self.public, p, q)

    def open(self, aggregate: int, layout: SlotLayout) -> tuple[list[int], int, int, int]:
        """The slot sums of an aggregate, its check slot (zero when the masks cancelled), its
        plaintext and its opening proof."""
        plaintext, opening = self._private.opening(int(aggregate))
        sums, check = layout.unpack(plaintext)
        return sums, check, plaintext, opening
