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

The sharing is verifiable (Feldman): with its shares, ``i`` publishes ``c_l G`` for every
coefficient ``c_l`` of its two polynomials, so that everyone knows ``sigma G`` for every share
``sigma`` it dealt, and each holder checks the shares sealed to it. Every recovery partial
``sigma P`` comes with a Chaum-Pedersen proof that it uses the committed share (the same
logarithm of ``sigma G`` to ``G`` as of the partial to ``P``). The coordinator and the audit
combine only proven partials, so a survivor that posts a false one cannot spoil the sums while a
threshold of honest neighbours remains, and it is named.
"""
from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable, Sequence

from coincurve import PublicKey
from eth_utils import keccak

# secp256k1: field prime and group order
P = 2**256 - 2**32 - 977
Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_BYTES = 33  # compressed
PROOF_BYTES = 64  # a Chaum-Pedersen proof: challenge || response
PARTIAL_BYTES = POINT_BYTES + PROOF_BYTES  # a recovery partial and its proof
SHARE_BYTES = 64  # a sealed (share of a, share of b) pair
GENERATOR = PublicKey.from_secret((1).to_bytes(32, "big"))


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


# ------------------------------------------------------------------ Shamir over the group order, Feldman commitments
def deal(secret: int, threshold: int, xs: Sequence[int]) -> tuple[dict[int, int], list[bytes]]:
    """Shares of ``secret`` at the points ``xs`` (non-zero, distinct), any ``threshold`` of which
    recover it, and the commitments ``c_l G`` to the polynomial's coefficients."""
    coefficients = [secret % Q] + [random_scalar() for _ in range(threshold - 1)]
    shares = {x: sum(c * pow(x, e, Q) for e, c in enumerate(coefficients)) % Q for x in xs}
    return shares, [multiply(GENERATOR, c) for c in coefficients]


def committed_share(commitments: Sequence[bytes], x: int) -> PublicKey:
    """``sigma_x G`` for the share at ``x`` of the polynomial committed to by ``commitments``."""
    terms = [PublicKey(bytes(c)).multiply(pow(x, e, Q).to_bytes(32, "big")) for e, c in enumerate(commitments)]
    return PublicKey.combine_keys(terms)


# ------------------------------------------------------------------ Chaum-Pedersen proofs of equal logarithms
# The challenge hashes the statement and the Ethereum addresses of the two commitments, so that the
# contract (contracts/lib/Secp256k1.sol) checks a proof with ecrecover: see ``expand``.
def _address(point: PublicKey) -> bytes:
    return keccak(point.format(compressed=False)[1:])[12:]


def _challenge(public: bytes, base: bytes, partial: bytes, t1: PublicKey, t2: PublicKey) -> int:
    return int.from_bytes(keccak(b"gridshare/secagg/dleq/" + public + base + partial + _address(t1) + _address(t2)), "big") % Q


def prove(secret: int, base: PublicKey | bytes) -> tuple[bytes, bytes]:
    """``(secret base, proof)``: the proof (challenge || response, 64 bytes) that the partial has
    the logarithm to ``base`` that ``secret G`` has to ``G``."""
    base = base if isinstance(base, PublicKey) else PublicKey(bytes(base))
    partial = multiply(base, secret)
    # the nonce from the secret and the statement (as RFC 6979 does): a resumed run posts the same proof
    w = 1 + int.from_bytes(hashlib.sha256(b"gridshare/secagg/dleq-nonce/" + (secret % Q).to_bytes(32, "big")
                                          + base.format() + partial).digest(), "big") % (Q - 1)
    wb = w.to_bytes(32, "big")
    c = _challenge(multiply(GENERATOR, secret), base.format(), partial, PublicKey.from_secret(wb), base.multiply(wb))
    return partial, c.to_bytes(32, "big") + ((w - c * secret) % Q).to_bytes(32, "big")


def verify(public: PublicKey, base: PublicKey | bytes, partial: bytes, proof: bytes) -> bool:
    """Whether ``proof`` shows that ``partial`` = ``sigma base`` for the ``sigma`` of ``public`` = ``sigma G``."""
    if len(proof) != PROOF_BYTES or not is_point(partial):
        return False
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
    """What binds a round's masks and seals to it: the market's address, the round and the chain
    (``abi.encodePacked(address, uint256, uint256)``, as the contract forms it)."""
    return bytes.fromhex(market[2:]) + round_id.to_bytes(32, "big") + chain_id.to_bytes(32, "big")


def positions(items: Iterable[int]) -> list[int]:
    """Shamir x-coordinates of registration positions (0-based) : position + 1."""
    return [i + 1 for i in items]


# ------------------------------------------------------------------ one round's plan
class Checked:
    """An iteration's recovery posts, checked: the proven partials per item ({item: {x: point}})
    and the holders whose post (or some partial of it) failed (``{holder: first bad item}``)."""

    def __init__(self) -> None:
        self.proven: dict[tuple[str, int, int], dict[int, bytes]] = {}
        self.false: dict[int, tuple[str, int, int] | None] = {}


class Plan:
    """The public side of a round's recovery: who neighbours whom, the threshold, the iteration
    points, every dealer's commitments, and how recovery partials are laid out, checked and
    combined. ``addresses`` in registration order; ``context`` binds everything to the market,
    chain and round."""

    def __init__(self, addresses: Sequence[str], threshold: int, context: bytes, degree: int | None = None) -> None:
        self.addresses = [a.lower() for a in addresses]
        n = len(self.addresses)
        self.degree = degree_for(n) if degree is None else degree
        self.threshold = threshold
        self.context = context
        self.graph = neighbours(n, self.degree)
        self._points: dict[int, tuple[PublicKey, PublicKey]] = {}
        self.commitments: dict[int, tuple[list[bytes], list[bytes]]] = {}  # dealer -> (to a's, to b's coefficients)
        self._committed: dict[tuple[str, int, int], PublicKey] = {}
        self._read: dict[int, tuple[bytes, bytes]] = {}  # dealer -> (its material, its mask point of iteration 0)

    def points(self, k: int) -> tuple[PublicKey, PublicKey]:
        if k not in self._points:
            self._points[k] = iteration_points(self.context, k)
        return self._points[k]

    def sign(self, i: int, j: int) -> int:
        """+1 if participant i adds the pair mask it shares with j, -1 if it subtracts it."""
        return 1 if self.addresses[i] < self.addresses[j] else -1

    # -- the sharing step: mask point of iteration 0 || commitments to a || to b || sealed shares
    def material_length(self, dealer: int) -> int:
        return POINT_BYTES * (1 + 2 * self.threshold) + SHARE_BYTES * len(self.graph[dealer])

    def read_material(self, dealer: int, material: bytes) -> bytes | None:
        """Takes ``dealer``'s commitments from its sharing post; its mask point of iteration 0
        (None: an ill-formed post)."""
        material = bytes(material)
        if self._read.get(dealer, (None,))[0] == material:
            return self._read[dealer][1]
        t = self.threshold
        points = [material[POINT_BYTES * n:POINT_BYTES * (n + 1)] for n in range(1 + 2 * t)]
        if len(material) != self.material_length(dealer) or not all(is_point(p) for p in points):
            return None
        self.commitments[dealer] = (points[1:1 + t], points[1 + t:])
        self._read[dealer] = (material, points[0])
        return points[0]

    def sealed_share(self, dealer: int, holder: int, material: bytes) -> bytes:
        at = POINT_BYTES * (1 + 2 * self.threshold) + SHARE_BYTES * self.graph[dealer].index(holder)
        return bytes(material[at:at + SHARE_BYTES])

    def share_key(self, kind: str, dealer: int, holder: int) -> PublicKey:
        """``sigma G`` of ``holder``'s share of ``dealer``'s pair (``kind`` "pair") or self secret."""
        key = (kind, dealer, holder)
        if key not in self._committed:
            self._committed[key] = committed_share(self.commitments[dealer][kind == "self"], holder + 1)
        return self._committed[key]

    def holds(self, dealer: int, holder: int, pair_share: int, self_share: int) -> bool:
        """Whether the shares ``holder`` unsealed are the ones ``dealer`` committed to."""
        return (multiply(GENERATOR, pair_share) == self.share_key("pair", dealer, holder).format()
                and multiply(GENERATOR, self_share) == self.share_key("self", dealer, holder).format())

    # -- the recovery step
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

    def parse(self, holder: int, blob: bytes, active: set[int], submitted: set[int]) -> dict[tuple[str, int, int], tuple[bytes, bytes]]:
        """A recovery post as {item: (partial, proof)}; an ill-formed post gives nothing."""
        items = self.layout(holder, active, submitted)
        if len(blob) != PARTIAL_BYTES * len(items):
            return {}
        out = {}
        for n, item in enumerate(items):
            at = PARTIAL_BYTES * n
            out[item] = (bytes(blob[at:at + POINT_BYTES]), bytes(blob[at + POINT_BYTES:at + PARTIAL_BYTES]))
        return out

    def check(self, k: int, active: set[int], submitted: set[int], posts: dict[int, bytes],
              points: dict[int, bytes]) -> Checked:
        """Every partial of ``posts`` ({holder: recovery post}) against its dealer's commitment
        (``points``: the iteration's mask points {participant: Y_j(k)})."""
        out = Checked()
        self_base = self.points(k)[1]
        for holder, blob in sorted(posts.items()):
            items = self.parse(holder, blob, active, submitted)
            if not items and self.layout(holder, active, submitted):
                out.false[holder] = None
            for (kind, i, j), (partial, proof) in items.items():
                base = self_base if kind == "self" else points.get(j)
                if base is not None and verify(self.share_key(kind, i, holder), base, partial, proof):
                    out.proven.setdefault((kind, i, j), {})[holder + 1] = partial
                else:
                    out.false.setdefault(holder, (kind, i, j))
        return out

    def corrections(self, k: int, active: set[int], submitted: set[int], checked: Checked,
                    periods: int, slot_bits: int) -> list[int]:
        """Per slot, the masks left in the sum of the submitted vectors (mod 2^B): every
        submitter's self mask and, for each participant that dropped out now, the pair masks its
        submitting neighbours added for it, from the proven partials of ``checked``."""
        from .masks import stream

        needed = {("self", i, -1) for i in submitted} | {
            ("pair", d, j) for d in active - submitted for j in self.graph[d] if j in submitted}
        short = sorted(item for item in needed if len(checked.proven.get(item, {})) < self.threshold)
        if short:
            kind, i, j = short[0]
            got = len(checked.proven.get(short[0], {}))
            raise ValueError(f"{got} proven partials of the {kind} mask {(i, j)}, {self.threshold} needed")
        modulus = 1 << slot_bits
        total = [0] * periods
        for kind, i, j in sorted(needed):
            seed = mask_seed(combine(checked.proven[(kind, i, j)], self.threshold), self.context)
            sign = 1 if kind == "self" else self.sign(j, i)
            for t, v in enumerate(stream(seed, k, periods, slot_bits)):
                total[t] += sign * v
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

    def deal(self) -> tuple[dict[int, tuple[int, int]], tuple[list[bytes], list[bytes]]]:
        """Fresh Shamir shares of (a, b) for each neighbour (by position) and the commitments to
        the two polynomials."""
        xs = positions(self.plan.graph[self.position])
        a, commit_a = deal(self.pair, self.plan.threshold, xs)
        b, commit_b = deal(self.own, self.plan.threshold, xs)
        return {x - 1: (a[x], b[x]) for x in xs}, (commit_a, commit_b)

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
        """This holder's recovery post for iteration k (layout: :meth:`Plan.layout`), each
        partial with its proof; zeros where it holds no valid share (its dealer cheated)."""
        out = []
        _, self_point = self.plan.points(k)
        for kind, i, j in self.plan.layout(self.position, active, submitted):
            if i not in self.held:
                out.append(bytes(PARTIAL_BYTES))
                continue
            share_a, share_b = self.held[i]
            out.append(b"".join(prove(share_b, self_point) if kind == "self" else prove(share_a, points[j])))
        return b"".join(out)
