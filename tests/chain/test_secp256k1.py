"""The curve checks of the masks on chain (contracts/lib/Secp256k1.sol, through the test-only
LibHarness) agree with offchain/privacy/secagg.py: which compressed points the contract takes,
points hashed to the curve, and Chaum-Pedersen proofs checked through ecrecover, on the embedded
chain (Prague rules; test_anvil.py runs the same proofs in the key flows at Osaka's)."""
from __future__ import annotations

import pytest

from offchain.privacy import secagg

from .helpers import connect_with_test_contracts

N, P = secagg.Q, secagg.P
G = secagg.GENERATOR.format()


@pytest.fixture(scope="module")
def harness():
    chain = connect_with_test_contracts()
    return chain.deploy("LibHarness", sender=chain.accounts(1)[0])


def _statement(secret: int, tag: bytes):
    base = secagg.hash_to_point(tag)
    partial, proof = secagg.prove(secret, base)
    return secagg.multiply(secagg.GENERATOR, secret), base.format(), partial, proof


def compressed(x: int, prefix: int = 2) -> bytes:
    return bytes([prefix]) + x.to_bytes(32, "big")


POINTS = {  # (compressed point, whether the contract takes it)
    "G": (G, True),
    "G, odd y": (b"\x03" + G[1:], True),
    "a hashed point": (secagg.hash_to_point(b"tag").format(), True),
    "the largest x below N on the curve": (compressed(N - 2), True),
    "x = N + 2: on the curve, at least N": (compressed(N + 2), False),
    "x = N + 2, odd y": (compressed(N + 2, 3), False),
    "x = N + 1: off the curve": (compressed(N + 1), False),
    "x = 7: off the curve": (compressed(7), False),
    "x = p - 1": (compressed(P - 1), False),
    "x = 0": (compressed(0), False),
    "prefix 04": (b"\x04" + G[1:], False),
    "prefix 00": (b"\x00" + G[1:], False),
    "32 bytes": (G[:-1], False),
    "34 bytes": (G + b"\x00", False),
    "empty": (b"", False),
}


@pytest.mark.parametrize("name", list(POINTS))
def test_the_contract_takes_exactly_the_points_secagg_takes(harness, name):
    point, ok = POINTS[name]
    assert harness.functions.isPoint(point).call() is ok
    assert secagg.is_point(point) is ok


def test_points_hashed_to_the_curve_are_secaggs(harness):
    for tag in (b"", b"round/pair/\x00", b"x" * 100):
        assert harness.functions.hashToPoint(tag).call() == secagg.hash_to_point(tag).format()


def test_an_honest_proof_holds_on_chain_and_every_altered_one_fails(harness):
    secret = secagg.random_scalar()
    public, base, partial, proof = _statement(secret, b"base")
    assert secagg.verify(secagg.PublicKey(public), base, partial, proof)
    full = secagg.expand(base, partial, proof)
    ok, gas = harness.functions.verifyDleq(public, base, partial, full).call()
    assert ok and gas < 60_000
    other = secagg.multiply(base, secret + 1)
    wrong_public = secagg.multiply(secagg.GENERATOR, secret + 1)
    for s, b, q, f in [(public, base, other, secagg.expand(base, other, proof)),  # another partial
                       (wrong_public, base, partial, full),  # another public key
                       (public, secagg.hash_to_point(b"other").format(), partial, full),  # another base
                       (public, base, partial, full[:64] + bytes(128)),  # helpers not s B, c Q
                       (public, base, partial, full[:32] + (1).to_bytes(32, "big") + full[64:]),  # response
                       (public, base, partial, (0).to_bytes(32, "big") + full[32:]),  # challenge 0
                       (public, base, partial, full[:-1])]:  # short
        assert harness.functions.verifyDleq(s, b, q, f).call()[0] is False
