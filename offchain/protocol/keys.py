"""What each party of a private round holds, and nothing more.

* :class:`MemberKeys`: one participant's secrets for one round: its X25519 key (pair seeds for the
  pads of pair messages and the sealing of recovery shares, and, in rounds without dropout
  recovery, for the masks), in rounds with recovery its two mask secrets and the shares it holds
  of its neighbours' (:class:`~offchain.privacy.secagg.Secrets`), the randomness of its
  encryptions and the salts of its commitments. Given its :class:`~offchain.keystore.PartySecrets`,
  it keeps each secret there before using it, so that a resumed run makes the same messages. It turns a mechanism's plain
  :class:`~offchain.framework.Contribution` into what travels (:class:`Sealed`) and opens what
  is sealed for it.
* :class:`CoordinatorKeys`: the coordinator's Paillier key pair; it decrypts only aggregates.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_utils import keccak

from ..chain.market import commitment
from ..errors import ProtocolViolation
from ..framework import Contribution
from ..keystore import PartySecrets
from ..privacy import secagg
from ..privacy.masks import MaskKey, mask_vector, seal, seal_bytes, unseal
from ..privacy.packing import SlotLayout
from ..privacy.paillier import PrivateKey, PublicKey, RandomnessPool, generate_keypair

@dataclass(frozen=True)
class Sealed:
    """One participant's submission: public by design (but ``salt`` and ``reveal``)."""
    ciphertext: bytes  # Paillier ciphertext of the masked, packed sums (empty without a key)
    commitment: bytes  # hiding commitment to the reveal
    pairs: bytes  # one pad-sealed block per other active participant, registration order
    salt: bytes  # kept by the participant until settlement
    reveal: list[int]
    next_point: bytes = b""  # its mask point of the next iteration (rounds with recovery)
    plaintext: int = 0  # what the ciphertext encrypts (masked, packed) and its randomness r: the
    rho: int = 0  # opening a blame step asks for (kept by the participant only)


class MemberKeys:
    """A participant's keys and, once joined, its seeds, recovery secrets, randomness and salts."""

    def __init__(self, address: str, kept: PartySecrets | None = None, cheat: bool = False) -> None:
        self.address = address
        self._kept = kept
        self.cheat = cheat  # a simulated cheat (--cheat): it encrypts its values plus 1, commits to the true ones
        private = self._keep("mask key", lambda: X25519PrivateKey.generate().private_bytes_raw().hex())
        self.mask_key = MaskKey(X25519PrivateKey.from_private_bytes(bytes.fromhex(private)) if private else None)
        self._pool: RandomnessPool | None = None
        self.recovery: secagg.Secrets | None = None
        self._material: bytes | None = None  # its sharing post, once made

    def _keep(self, key: str, make):
        """``make()``'s value, kept in (or, on a resumed run, read from) the key store; None without one."""
        return self._kept.keep(key, make) if self._kept is not None else None

    @property
    def public_bytes(self) -> bytes:
        return self.mask_key.public_bytes

    def join(self, key: PublicKey | None, layout: SlotLayout | None, peers: list[tuple[str, bytes]],
             context: bytes, plan: secagg.Plan | None = None) -> None:
        """Agree seeds with the registered ``peers`` (address, mask key), in registration order;
        with a recovery ``plan``, draw the two mask secrets."""
        self._key, self._layout = key, layout
        self._peers = [a.lower() for a, _ in peers]
        self.position = self._peers.index(self.address.lower())
        self._pads = self.mask_key.pair_seeds(self.address, peers, context + b"/pairs")
        self._masks = self.mask_key.pair_seeds(self.address, peers, context + b"/sums") if plan is None else {}
        if plan is not None:
            pair, own = self._keep("recovery secrets", lambda: [secagg.random_scalar(), secagg.random_scalar()]) or (None, None)
            self.recovery = secagg.Secrets(self.position, plan, pair, own)
        self._pool = RandomnessPool(key, ahead=2) if key is not None else None

    def leave(self) -> None:
        if self._pool is not None:
            self._pool.close()

    # -- recovery shares ------------------------------------------------------------------------
    def share_material(self) -> bytes:
        """The mask point of iteration 0, the commitments to the two sharing polynomials and, for
        each neighbour in registration order, fresh shares of the two mask secrets sealed to it
        (`PrivateRounds.share`; layout: :meth:`~offchain.privacy.secagg.Plan.read_material`)."""
        def fresh() -> str:
            rec = self.recovery
            shares, (commit_a, commit_b) = rec.deal()
            sealed = [seal_bytes(a.to_bytes(32, "big") + b.to_bytes(32, "big"), self._pads[self._peers[j]], b"share")
                      for j, (a, b) in sorted(shares.items())]
            return (rec.point(0) + b"".join(commit_a + commit_b + sealed)).hex()

        if self._material is None:
            self._material = bytes.fromhex(self._keep("share material", fresh) or fresh())
        return self._material

    def take_shares(self, sender: int, material: bytes) -> bytes:
        """Keeps the shares ``sender`` (a position) sealed for this participant if they are the
        ones it committed to (else it holds none of the sender's: its partials for the sender
        cannot be proven); returns the sender's mask point of iteration 0. Raises
        ProtocolViolation on an ill-formed post."""
        rec = self.recovery
        point = rec.plan.read_material(sender, material)
        if point is None:
            raise ProtocolViolation(f"participant {sender + 1} posted ill-formed shares")
        if self.position in rec.plan.graph[sender]:
            raw = seal_bytes(rec.plan.sealed_share(sender, self.position, material), self._pads[self._peers[sender]], b"share")
            a, b = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            if rec.plan.holds(sender, self.position, a, b):
                rec.held[sender] = (a, b)
        return point

    def partials(self, k: int, points: dict[int, bytes], active: set[int], submitted: set[int]) -> bytes:
        """This participant's recovery post for iteration ``k``."""
        return self.recovery.partials(k, points, active, submitted)

    # -- submissions ----------------------------------------------------------------------------
    def seal(self, round_id: int, k: int, c: Contribution, partners: dict[str, list[int]],
             points: dict[int, bytes] | None = None, active: set[int] | None = None) -> Sealed:
        """Mask, pack and encrypt ``c.sums``; seal each partner's vector (``partners``: {address:
        values}, every other active participant when the round has pair lanes); commit to the
        reveal. With recovery: ``points`` are the iteration's mask points, ``active`` the
        positions still in the round. A submission kept for this iteration (a resumed run) is
        given again, if it commits to the same values."""
        kept = self._kept.get(f"submission {round_id}/{k}") if self._kept is not None else None
        if kept is not None:
            if kept["reveal"] != list(c.committed):
                raise ProtocolViolation(f"{self.address}: the resumed run differs from the killed one in iteration {k}")
            return Sealed(*(bytes.fromhex(kept[f]) for f in ("ciphertext", "commitment", "pairs", "salt")),
                          kept["reveal"], bytes.fromhex(kept["next_point"]), int(kept["plaintext"]), int(kept["rho"]))
        sealed = self._seal(round_id, k, c, partners, points, active)
        if self._kept is not None:
            self._kept.put(f"submission {round_id}/{k}", {
                **{f: getattr(sealed, f).hex() for f in ("ciphertext", "commitment", "pairs", "salt", "next_point")},
                "reveal": list(sealed.reveal), "plaintext": str(sealed.plaintext), "rho": str(sealed.rho)})
        return sealed

    def _seal(self, round_id: int, k: int, c: Contribution, partners: dict[str, list[int]],
              points: dict[int, bytes] | None, active: set[int] | None) -> Sealed:
        ciphertext, next_point, plaintext, rho = b"", b"", 0, 0
        if self.cheat:
            c = replace(c, sums=[v + 1 for v in c.sums], reveal=list(c.committed))
        if self._key is not None:
            periods, bits = self._layout.periods, self._layout.slot_bits
            if self.recovery is not None:
                mask = self.recovery.mask(k, points, active, periods, bits)
                next_point = self.recovery.point(k + 1)
            else:
                mask = mask_vector(self.address, self._masks, k, periods, bits)
            plaintext = self._layout.pack(c.sums, mask)
            rho, rn = self._pool.take()
            ciphertext = self._key.to_bytes(self._key.encrypt(plaintext, rn))
        others = self._others(active)
        pairs = b"".join(seal(partners[other], self._pads[other], k, self.address, other)
                         for other in others) if partners else b""
        salt = secrets.token_bytes(32)
        reveal = c.committed
        return Sealed(ciphertext, commitment(round_id, k, self.address, reveal, salt), pairs, salt, reveal, next_point,
                      plaintext, rho)

    def blame_opening(self, sealed: Sealed, k: int, points: dict[int, bytes], layout: SlotLayout) -> tuple[bytes, bytes] | None:
        """What this participant posts in a blame step (`PrivateRounds.openBlame`): its final
        ciphertext with its plaintext and randomness, and its masks of iteration ``k`` proven
        against its sharing post (``points``: the iteration's mask points {position: Y_j(k)},
        posted by exactly those in the iteration). None if its ciphertext does not encrypt its
        reveal under those masks (a cheat: the chain would reject the opening)."""
        rec, plan = self.recovery, self.recovery.plan
        mask = rec.mask(k, points, set(points), layout.periods, layout.slot_bits)
        if layout.unpack_sums(sealed.plaintext, mask) != list(sealed.reveal[:layout.periods]):
            return None
        nbytes = self._key.nbytes
        opened = sealed.ciphertext + sealed.plaintext.to_bytes(nbytes, "big") + sealed.rho.to_bytes(nbytes, "big")
        pair_base, self_base = plan.points(k)
        own, own_proof = secagg.prove(rec.pair, pair_base)
        self_mask, self_proof = secagg.prove(rec.own, self_base)
        masks = [self.share_material(), own, secagg.expand(pair_base, own, own_proof),
                 self_mask, secagg.expand(self_base, self_mask, self_proof)]
        for j in plan.graph[self.position]:
            if j in points:
                pair, proof = secagg.prove(rec.pair, points[j])
                masks += [points[j], pair, secagg.expand(points[j], pair, proof)]
        return opened, b"".join(masks)

    def _others(self, active: set[int] | None) -> list[str]:
        return [a for j, a in enumerate(self._peers) if a != self.address.lower() and (active is None or j in active)]

    def open_pairs(self, k: int, sender: str, blob: bytes, lanes: int, senders_others: list[str]) -> list[int]:
        """The block ``sender`` sealed for this participant (its position among the sender's others)."""
        b = [o.lower() for o in senders_others].index(self.address.lower())
        return unseal(blob[8 * lanes * b:8 * lanes * (b + 1)], self._pads[sender.lower()], k, sender, self.address)

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

    def open(self, aggregate: int, layout: SlotLayout, corrections: list[int] | None = None) -> tuple[list[int], int, int]:
        """The slot sums of an aggregate (less the recovery's mask corrections), its plaintext and
        its opening proof."""
        plaintext, opening = self._private.opening(int(aggregate))
        return layout.unpack_sums(plaintext, corrections), plaintext, opening
