"""Dropout recovery for the pairwise masks: Bonawitz et al.'s double masking (CCS 2017) with Bell et
al.'s sparse neighbours (SecAgg+, CCS 2020), made safe for rounds of many iterations.

Every participant ``i`` holds two secp256k1 scalars: a pair secret ``a_i`` and a self secret ``b_i``.
Each iteration ``k`` has two public base points ``H_k`` and ``G_k`` (hashed to the curve from the
round and ``k``, so nobody knows their discrete logarithms). Participant ``i`` publishes
``Y_i(k) = a_i H_k`` before iteration ``k`` and masks its iteration-``k`` vector with

* a *pair mask* per active neighbour ``j``, expanded from ``M_ij(k) = a_i Y_j(k) = a_i a_j H_k``
  (the lower address adds it, the higher subtracts it, so pair masks cancel in the sum), and
* a *self mask* expanded from ``B_i(k) = b_i G_k``.

At the start of the round ``i`` Shamir-shares ``a_i`` and ``b_i`` (threshold ``t``) among its
neighbours, each share sealed to its holder. After iteration ``k``'s submissions close, every
survivor ``h`` posts, for each neighbour ``i``, partial evaluations of ``i``'s secrets at that
iteration's points only: ``sigma_b(i, h) G_k`` if ``i`` submitted (``t`` of them give ``B_i(k)``:
the self mask is removed), or ``sigma_a(i, h) Y_j(k)`` for every surviving neighbour ``j`` if ``i``
dropped out (``t`` of them give ``M_ij(k)``: the masks the survivors added for ``i`` are removed).
Lagrange interpolation happens in the exponent, so no secret is ever reconstructed: what becomes
known is one iteration's masks, never another iteration's (the points of different iterations
are unrelated). For each participant and iteration the survivors release either its self mask
or its pair masks, never both (the chain decides who submitted), so a participant whose
ciphertext arrives late (on chain in a reverted transaction) stays hidden by its self mask.
"""
from __future__ import annotations

import hashlib
import math
import random
import secrets
from collections.abc import Iterable, Sequence

from coincurve import PublicKey

# secp256k1: field prime and group order
P = 2**256 - 2**32 - 977
Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_BYTES = 33  # compressed


def random_scalar() -> int:
    return 1 + secrets.randbelow(Q - 1)


def hash_to_point(tag: bytes) -> PublicKey:
    """A point nobody knows the discrete logarithm of (try-and-increment on x; public input)."""
    for counter in range(1 << 16):
        x = int.from_bytes(hashlib.sha256(b"gridshare/secagg/point/" + tag + counter.to_bytes(4, "big")).digest(), "big")
        if x < P and pow((x * x * x + 7) % P, (P - 1) // 2, P) == 1:
            return PublicKey(b"\x02" + x.to_bytes(32, "big"))
    raise AssertionError("unreachable: half of all x are on the curve")


def iteration_points(context: bytes, k: int) -> tuple[PublicKey, PublicKey]:
    """(H_k, G_k): the pair and self base points of iteration ``k``."""
    return (hash_to_point(context + b"/pair/" + k.to_bytes(8, "big")),
            hash_to_point(context + b"/self/" + k.to_bytes(8, "big")))


def multiply(point: PublicKey | bytes, scalar: int) -> bytes:
    """``scalar * point``, compressed."""
    point = point if isinstance(point, PublicKey) else PublicKey(bytes(point))
    return point.multiply((scalar % Q).to_bytes(32, "big")).format()


def is_point(data: bytes) -> bool:
    try:
        PublicKey(bytes(data))
    except (ValueError, TypeError):
        return False
    return len(data) == POINT_BYTES


def mask_seed(point: bytes, context: bytes) -> bytes:
    """The 32-byte seed a mask is expanded from."""
    return hashlib.sha256(b"gridshare/secagg/mask/" + context + bytes(point)).digest()


# ------------------------------------------------------------------ Shamir over the group order
def split(secret: int, threshold: int, xs: Sequence[int]) -> dict[int, int]:
    """Shares of ``secret`` at the points ``xs`` (non-zero, distinct); any ``threshold`` recover it."""
    coefficients = [secret % Q] + [secrets.randbelow(Q) for _ in range(threshold - 1)]
    return {x: sum(c * pow(x, e, Q) for e, c in enumerate(coefficients)) % Q for x in xs}


def lagrange_at_zero(xs: Sequence[int]) -> dict[int, int]:
    """The coefficients that interpolate a polynomial's value at 0 from its values at ``xs``."""
    out = {}
    for x in xs:
        num, den = 1, 1
        for y in xs:
            if y != x:
                num = num * (-y) % Q
                den = den * (x - y) % Q
        out[x] = num * pow(den, -1, Q) % Q
    return out


def combine(partials: dict[int, bytes], threshold: int) -> bytes:
    """``s P`` from partial evaluations ``sigma_x P`` of shares ``sigma_x`` of ``s`` (the first
    ``threshold`` holders by x)."""
    if len(partials) < threshold:
        raise ValueError(f"{len(partials)} partial evaluations, {threshold} needed")
    xs = sorted(partials)[:threshold]
    lam = lagrange_at_zero(xs)
    terms = [PublicKey(bytes(partials[x])).multiply(lam[x].to_bytes(32, "big")) for x in xs if lam[x]]
    return PublicKey.combine_keys(terms).format()


# ------------------------------------------------------------------ neighbours (SecAgg+)
def degree_for(n: int) -> int:
    """Neighbours per participant: everyone in small rounds, ~2 log2(n) + 2 (even) in large ones."""
    sparse = 2 * math.ceil(math.log2(max(n, 2))) + 2
    return n - 1 if n - 1 <= sparse else sparse


def default_threshold(degree: int) -> int:
    """A majority of a participant's neighbours."""
    return degree // 2 + 1


def neighbours(n: int, degree: int, seed: bytes) -> list[list[int]]:
    """A public, symmetric neighbour graph on positions 0..n-1: the complete graph when
    ``degree >= n - 1``, else a ring of a seeded random permutation where each participant is linked
    to the ``degree / 2`` nearest on either side (Harary graph, as in SecAgg+)."""
    if degree >= n - 1:
        return [[j for j in range(n) if j != i] for i in range(n)]
    if degree % 2:
        raise ValueError("a sparse neighbour graph needs an even degree")
    order = list(range(n))
    random.Random(hashlib.sha256(b"gridshare/secagg/graph/" + seed).digest()).shuffle(order)
    place = {p: i for i, p in enumerate(order)}
    graph = []
    for p in range(n):
        i = place[p]
        graph.append(sorted(order[(i + d) % n] for d in range(-degree // 2, degree // 2 + 1) if d))
    return graph


def positions(items: Iterable[int]) -> list[int]:
    """Shamir x-coordinates of registration positions (0-based) : position + 1."""
    return [i + 1 for i in items]


# ------------------------------------------------------------------ one round's plan
class Plan:
    """The public side of a round's recovery: who neighbours whom, the threshold, the iteration
    points, and how recovery partials are laid out and combined. ``addresses`` in registration
    order; ``context`` binds everything to the market, chain and round."""

    def __init__(self, addresses: Sequence[str], threshold: int, context: bytes, degree: int | None = None) -> None:
        self.addresses = [a.lower() for a in addresses]
        n = len(self.addresses)
        self.degree = degree_for(n) if degree is None else degree
        self.threshold = threshold
        self.context = context
        self.graph = neighbours(n, self.degree, context)
        self._points: dict[int, tuple[PublicKey, PublicKey]] = {}

    def points(self, k: int) -> tuple[PublicKey, PublicKey]:
        if k not in self._points:
            self._points[k] = iteration_points(self.context, k)
        return self._points[k]

    def sign(self, i: int, j: int) -> int:
        """+1 if participant i adds the pair mask it shares with j, -1 if it subtracts it."""
        return 1 if self.addresses[i] < self.addresses[j] else -1

    def layout(self, holder: int, active: set[int], submitted: set[int]) -> list[tuple[str, int, int]]:
        """What ``holder``'s recovery post holds, in order: ("self", i, -1) for each submitting
        neighbour i, ("pair", d, j) for each neighbour d that dropped out now and each submitting
        neighbour j of d."""
        out: list[tuple[str, int, int]] = []
        for i in self.graph[holder]:
            if i in submitted:
                out.append(("self", i, -1))
            elif i in active:
                out.extend(("pair", i, j) for j in self.graph[i] if j in submitted)
        return out

    def parse(self, holder: int, blob: bytes, active: set[int], submitted: set[int]) -> dict[tuple[str, int, int], bytes]:
        """A recovery post as {item: point}; an ill-formed post gives nothing."""
        items = self.layout(holder, active, submitted)
        if len(blob) != POINT_BYTES * len(items):
            return {}
        return {item: blob[POINT_BYTES * n:POINT_BYTES * (n + 1)] for n, item in enumerate(items)}

    def corrections(self, k: int, active: set[int], submitted: set[int], posts: dict[int, bytes],
                    points: dict[int, bytes], periods: int, slot_bits: int) -> list[int]:
        """Per slot, the masks left in the sum of the submitted vectors (mod 2^B): every
        submitter's self mask and, for each participant that dropped out now, the pair masks its
        submitting neighbours added for it. ``posts``: {holder: recovery post}; ``points``: the
        iteration's mask points {participant: Y_j(k)}."""
        from .masks import stream

        collected: dict[tuple[str, int, int], dict[int, bytes]] = {}
        for holder, blob in posts.items():
            for item, point in self.parse(holder, blob, active, submitted).items():
                collected.setdefault(item, {})[holder + 1] = point
        modulus = 1 << slot_bits
        total = [0] * periods
        for (kind, i, j), partials in sorted(collected.items()):
            seed = mask_seed(combine(partials, self.threshold), self.context)
            sign = 1 if kind == "self" else self.sign(j, i)
            for t, v in enumerate(stream(seed, k, periods, slot_bits)):
                total[t] += sign * v
        needed = {("self", i, -1) for i in submitted} | {
            ("pair", d, j) for d in active - submitted for j in self.graph[d] if j in submitted}
        if needed - set(collected):
            missing = sorted(needed - set(collected))[0]
            raise ValueError(f"no recovery partials for {missing[0]} mask {missing[1:]}")
        return [v % modulus for v in total]


class Secrets:
    """One participant's recovery secrets: the pair secret a and the self secret b, and the shares
    of its neighbours' secrets it holds."""

    def __init__(self, position: int, plan: Plan, pair: int | None = None, own: int | None = None) -> None:
        self.position = position
        self.plan = plan
        self.pair = pair or random_scalar()
        self.own = own or random_scalar()
        self.held: dict[int, tuple[int, int]] = {}  # neighbour position -> (share of a, share of b)

    def point(self, k: int) -> bytes:
        """Y_i(k) = a_i H_k."""
        return multiply(self.plan.points(k)[0], self.pair)

    def shares(self) -> dict[int, tuple[int, int]]:
        """Fresh Shamir shares of (a, b) for each neighbour (by position)."""
        xs = positions(self.plan.graph[self.position])
        a = split(self.pair, self.plan.threshold, xs)
        b = split(self.own, self.plan.threshold, xs)
        return {x - 1: (a[x], b[x]) for x in xs}

    def mask(self, k: int, points: dict[int, bytes], active: set[int], periods: int, slot_bits: int) -> list[int]:
        """The iteration's self mask plus a pair mask with each active neighbour (mod 2^B)."""
        from .masks import stream

        seeds = [(1, mask_seed(multiply(self.plan.points(k)[1], self.own), self.plan.context))]
        for j in self.plan.graph[self.position]:
            if j in active:
                seeds.append((self.plan.sign(self.position, j), mask_seed(multiply(points[j], self.pair), self.plan.context)))
        modulus = 1 << slot_bits
        total = [0] * periods
        for sign, seed in seeds:
            for t, v in enumerate(stream(seed, k, periods, slot_bits)):
                total[t] += sign * v
        return [v % modulus for v in total]

    def partials(self, k: int, points: dict[int, bytes], active: set[int], submitted: set[int]) -> bytes:
        """This holder's recovery post for iteration k (layout: :meth:`Plan.layout`)."""
        out = []
        _, self_point = self.plan.points(k)
        for kind, i, j in self.plan.layout(self.position, active, submitted):
            share_a, share_b = self.held[i]
            out.append(multiply(self_point, share_b) if kind == "self" else multiply(points[j], share_a))
        return b"".join(out)
