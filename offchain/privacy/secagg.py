"""The pairwise masks of a private round, made to be checked: per-iteration pair points on
secp256k1 with sparse neighbours (Bell et al.'s SecAgg+, CCS 2020, without its secret sharing),
a check slot whose masks must cancel, and Chaum-Pedersen proofs the contract verifies with
ecrecover (contracts/lib/Secp256k1.sol).

Every participant ``i`` holds one secp256k1 scalar ``a_i`` and registers ``A_i = a_i G``. Each
iteration ``k`` has a public base point ``H_k`` (hashed to the curve from the round and ``k``, so
nobody knows its discrete logarithm). Participant ``i`` publishes ``Y_i(k) = a_i H_k`` one
iteration ahead (at registration for ``k = 0``, with its submission of ``k - 1`` after that) and,
in attempt ``a`` of iteration ``k``, masks its vector with one pair mask per active neighbour ``j``,
expanded from ``P_ij(k) = a_i Y_j(k) = a_i a_j H_k`` at stream index ``k << 16 | a`` and bound to
both addresses (the lower address adds it, the higher subtracts it), so the masks cancel in the
sum while each masked vector is uniform. The pad of the pair messages between ``i`` and ``j`` comes
from the static agreement ``a_i A_j``.

No secret is shared: when a participant misses an attempt, the others submit again, masked
among themselves only, so a dropped participant's values are never unmasked. One extra slot, the
check slot, carries nothing but masks: its decrypted sum is zero exactly when every submission's
masks cancel. When it is not (a copy of another's ciphertext, a made-up encryption, a false mask
point), every submitter opens its submission and the check value of each of its pair masks, and
whoever's claim disagrees with a neighbour's is proven wrong by that neighbour (a proof of the
pair point ``P``, which reveals that pair's masks of that iteration only). Points of different
iterations are unrelated, so nothing ever reveals another iteration's masks.
"""
from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence

from coincurve import PublicKey
from eth_utils import keccak

from .masks import stream

# secp256k1: field prime and group order
P = 2**256 - 2**32 - 977
Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_BYTES = 33  # compressed
PROOF_BYTES = 64  # a Chaum-Pedersen proof: challenge || response
EXPANDED_BYTES = PROOF_BYTES + 128  # as the contract checks it: + U and V (x, y each)
GENERATOR = PublicKey.from_secret((1).to_bytes(32, "big"))


def random_scalar() -> int:
    return 1 + secrets.randbelow(Q - 1)


def _x_ok(x: int) -> bool:
    """An x the contract takes: below the group order N (ecrecover's r) and on the curve."""
    return x < Q and pow((x * x * x + 7) % P, (P - 1) // 2, P) == 1


def hash_to_point(tag: bytes) -> PublicKey:
    """A point nobody knows the discrete logarithm of (try-and-increment on x; public input)."""
    for counter in range(1 << 16):
        x = int.from_bytes(hashlib.sha256(b"gridshare/secagg/point/" + tag + counter.to_bytes(4, "big")).digest(), "big")
        if _x_ok(x):
            return PublicKey(b"\x02" + x.to_bytes(32, "big"))
    raise AssertionError("unreachable: half of all x are on the curve")


def iteration_point(context: bytes, k: int) -> PublicKey:
    """H_k: the base point of iteration ``k``'s mask points."""
    return hash_to_point(context + b"/pair/" + k.to_bytes(8, "big"))


def multiply(point: PublicKey | bytes, scalar: int) -> bytes:
    """``scalar * point``, compressed."""
    point = point if isinstance(point, PublicKey) else PublicKey(bytes(point))
    return point.multiply((scalar % Q).to_bytes(32, "big")).format()


def is_point(data: bytes) -> bool:
    """A compressed point the contract accepts (on the curve, x below the group order)."""
    data = bytes(data)
    if len(data) != POINT_BYTES or data[0] not in (2, 3):
        return False
    try:
        PublicKey(data)
    except (ValueError, TypeError):
        return False
    return int.from_bytes(data[1:], "big") < Q


def stream_index(k: int, attempt: int) -> int:
    """The index of attempt ``attempt`` of iteration ``k`` in the mask streams."""
    return (k << 16) | attempt


def mask_seed(point: bytes, context: bytes, a: str, b: str) -> bytes:
    """The 32-byte seed a pair mask is expanded from, bound to the round and both addresses (lower
    first), so that no two pairs share a mask even if a point repeats."""
    low, high = sorted((a.lower(), b.lower()))
    return hashlib.sha256(b"gridshare/secagg/mask/" + context + bytes(point) + bytes.fromhex(low[2:])
                          + bytes.fromhex(high[2:])).digest()


# ------------------------------------------------------------------ Chaum-Pedersen proofs of equal logarithms
# The challenge hashes the statement and the Ethereum addresses of the two commitments, so that the
# contract (contracts/lib/Secp256k1.sol) checks a proof with ecrecover: see ``expand``.
def _address(point: PublicKey) -> bytes:
    return keccak(point.format(compressed=False)[1:])[12:]


def _challenge(public: bytes, base: bytes, partial: bytes, t1: PublicKey, t2: PublicKey) -> int:
    return int.from_bytes(keccak(b"gridshare/secagg/dleq/" + public + base + partial + _address(t1) + _address(t2)), "big") % Q


def prove(secret: int, base: PublicKey | bytes) -> tuple[bytes, bytes]:
    """``(secret base, proof)``: the proof (challenge || response, 64 bytes) that the point has
    the logarithm to ``base`` that ``secret G`` has to ``G``."""
    base = base if isinstance(base, PublicKey) else PublicKey(bytes(base))
    partial = multiply(base, secret)
    # the nonce from the secret and the statement (as RFC 6979 does): a resumed run posts the same proof
    w = 1 + int.from_bytes(hashlib.sha256(b"gridshare/secagg/dleq-nonce/" + (secret % Q).to_bytes(32, "big")
                                          + base.format() + partial).digest(), "big") % (Q - 1)
    wb = w.to_bytes(32, "big")
    c = _challenge(multiply(GENERATOR, secret), base.format(), partial, PublicKey.from_secret(wb), base.multiply(wb))
    return partial, c.to_bytes(32, "big") + ((w - c * secret) % Q).to_bytes(32, "big")


def verify(public: PublicKey | bytes, base: PublicKey | bytes, partial: bytes, proof: bytes) -> bool:
    """Whether ``proof`` shows that ``partial`` = ``s base`` for the ``s`` of ``public`` = ``s G``."""
    proof = bytes(proof[:PROOF_BYTES])
    if len(proof) != PROOF_BYTES or not is_point(partial):
        return False
    public = public if isinstance(public, PublicKey) else PublicKey(bytes(public))
    base = base if isinstance(base, PublicKey) else PublicKey(bytes(base))
    c, s = int.from_bytes(proof[:32], "big"), int.from_bytes(proof[32:], "big")
    if not 0 < c < Q or not 0 < s < Q:
        return False
    try:  # T1 = s G + c public, T2 = s base + c partial (a sum at infinity: no valid proof)
        t1 = PublicKey.combine_keys([PublicKey.from_secret(proof[32:]), public.multiply(proof[:32])])
        t2 = PublicKey.combine_keys([base.multiply(proof[32:]), PublicKey(bytes(partial)).multiply(proof[:32])])
    except ValueError:
        return False
    return c == _challenge(public.format(), base.format(), bytes(partial), t1, t2)


def expand(base: PublicKey | bytes, partial: bytes, proof: bytes) -> bytes:
    """A proof as the contract checks it: challenge, response, then U = s base and V = c partial
    (x and y, 32 bytes each), which anyone computes from public data."""
    base = base if isinstance(base, PublicKey) else PublicKey(bytes(base))
    u = base.multiply(proof[32:]).format(compressed=False)[1:]
    v = PublicKey(bytes(partial)).multiply(proof[:32]).format(compressed=False)[1:]
    return bytes(proof) + u + v


# ------------------------------------------------------------------ neighbours (SecAgg+)
def degree_for(n: int) -> int:
    """Neighbours per participant: everyone in small rounds, ~2 log2(n) + 2 (even) in large ones."""
    sparse = 2 * math.ceil(math.log2(max(n, 2))) + 2
    return n - 1 if n - 1 <= sparse else sparse


def neighbours(n: int, degree: int) -> list[list[int]]:
    """A public, symmetric neighbour graph on registration positions 0..n-1: the complete graph
    when ``degree >= n - 1``, else the ring where each participant is linked to the ``degree / 2``
    nearest on either side (Harary graph, as in SecAgg+), which the contract computes too. (A
    shuffled ring would add nothing: its seed would be public before registration.)"""
    if degree >= n - 1:
        return [[j for j in range(n) if j != i] for i in range(n)]
    if degree % 2:
        raise ValueError("a sparse neighbour graph needs an even degree")
    return [sorted((i + d) % n for d in range(-degree // 2, degree // 2 + 1) if d) for i in range(n)]


def round_context(market: str, round_id: int, chain_id: int) -> bytes:
    """What binds a round's masks and pads to it: the market's address, the round and the chain
    (``abi.encodePacked(address, uint256, uint256)``, as the contract forms it)."""
    return bytes.fromhex(market[2:]) + round_id.to_bytes(32, "big") + chain_id.to_bytes(32, "big")


# ------------------------------------------------------------------ one round's public plan
class Plan:
    """The public side of a round's masks: who neighbours whom, the iteration points and the
    layout of what is checked. ``addresses`` in registration order; ``context`` binds everything
    to the market, chain and round."""

    def __init__(self, addresses: Sequence[str], context: bytes, degree: int | None = None) -> None:
        self.addresses = [a.lower() for a in addresses]
        n = len(self.addresses)
        self.degree = degree_for(n) if degree is None else degree
        self.context = context
        self.graph = neighbours(n, self.degree)
        self._points: dict[int, PublicKey] = {}

    def point(self, k: int) -> PublicKey:
        """H_k."""
        if k not in self._points:
            self._points[k] = iteration_point(self.context, k)
        return self._points[k]

    def sign(self, i: int, j: int) -> int:
        """+1 if participant i adds the pair mask it shares with j, -1 if it subtracts it."""
        return 1 if self.addresses[i] < self.addresses[j] else -1

    def active_neighbours(self, i: int, active: set[int]) -> list[int]:
        """Participant i's neighbours that are in the attempt, ascending."""
        return [j for j in self.graph[i] if j in active]

    def seed(self, i: int, j: int, pair_point: bytes) -> bytes:
        return mask_seed(pair_point, self.context, self.addresses[i], self.addresses[j])

    def check_of(self, i: int, j: int, pair_point: bytes, k: int, attempt: int, slots: int, slot_bits: int) -> int:
        """The check-slot value (mod 2^B, unsigned) of the pair mask of i and j from their pair point."""
        return stream(self.seed(i, j, pair_point), stream_index(k, attempt), slots + 1, slot_bits)[slots]


class MaskSecrets:
    """One participant's mask secret ``a`` and what it derives: its key, its mask points, its
    masks, its check values in a dispute and the proofs it posts in an accusation or a blame step."""

    def __init__(self, position: int, plan: Plan, secret: int | None = None) -> None:
        self.position = position
        self.plan = plan
        self.secret = secret or random_scalar()

    @property
    def key(self) -> bytes:
        """A = a G."""
        return multiply(GENERATOR, self.secret)

    def point(self, k: int) -> bytes:
        """Y(k) = a H_k."""
        return multiply(self.plan.point(k), self.secret)

    def pair_point(self, other_point: bytes) -> bytes:
        """P = a Y_j(k) for a neighbour's mask point."""
        return multiply(other_point, self.secret)

    def pad_seed(self, other_key: bytes, own: str, other: str) -> bytes:
        """The pad seed of the pair messages with the owner of ``other_key`` (A_j): from a A_j,
        bound to the round and both addresses."""
        low, high = sorted((own.lower(), other.lower()))
        return hashlib.sha256(b"gridshare/secagg/pad/" + self.plan.context + multiply(other_key, self.secret)
                              + low.encode() + high.encode()).digest()

    def mask(self, k: int, attempt: int, points: dict[int, bytes], active: set[int], slots: int,
             slot_bits: int) -> list[int]:
        """The attempt's mask: one pair mask with each active neighbour, ``slots`` + 1 values
        (the check slot last), mod 2^B."""
        modulus = 1 << slot_bits
        total = [0] * (slots + 1)
        for j in self.plan.active_neighbours(self.position, active):
            seed = self.plan.seed(self.position, j, self.pair_point(points[j]))
            sign = self.plan.sign(self.position, j)
            for t, v in enumerate(stream(seed, stream_index(k, attempt), slots + 1, slot_bits)):
                total[t] += sign * v
        return [v % modulus for v in total]

    def checks(self, k: int, attempt: int, points: dict[int, bytes], active: set[int], slots: int,
               slot_bits: int) -> list[int]:
        """Its check value with each active neighbour (`PrivateRounds.openCheck`)."""
        return [self.plan.check_of(self.position, j, self.pair_point(points[j]), k, attempt, slots, slot_bits)
                for j in self.plan.active_neighbours(self.position, active)]

    def _own(self, k: int) -> bytes:
        """Y(k) and its proof against H_k, expanded."""
        base = self.plan.point(k)
        own, proof = prove(self.secret, base)
        return own + expand(base, own, proof)

    def _pair(self, other_point: bytes) -> bytes:
        """Y_j(k), P = a Y_j(k) and its proof against Y_j(k), expanded."""
        pair, proof = prove(self.secret, other_point)
        return bytes(other_point) + pair + expand(other_point, pair, proof)

    def accusation(self, k: int, other_point: bytes) -> bytes:
        """What proves its pair mask with a neighbour (`PrivateRounds.accuse`)."""
        return self.key + self._own(k) + self._pair(other_point)

    def blame_masks(self, k: int, points: dict[int, bytes], active: set[int]) -> bytes:
        """What proves its whole mask of the final attempt (`PrivateRounds.openBlame`)."""
        return self.key + self._own(k) + b"".join(self._pair(points[j])
                                                  for j in self.plan.active_neighbours(self.position, active))
