"""The blame step's curve checks on chain (contracts/lib/Secp256k1.sol) agree with
offchain/privacy/secagg.py: points hashed to the curve, and Chaum-Pedersen proofs checked through
ecrecover, at anvil's default hardfork and at Prague's (py-evm)."""
from __future__ import annotations

import pytest

from offchain.privacy import secagg

from .helpers import connect_with_test_contracts


@pytest.fixture(scope="module")
def harness():
    chain = connect_with_test_contracts()
    return chain.deploy("LibHarness", sender=chain.accounts(1)[0])


def _statement(secret: int, tag: bytes):
    base = secagg.hash_to_point(tag)
    partial, proof = secagg.prove(secret, base)
    return secagg.multiply(secagg.GENERATOR, secret), base.format(), partial, proof


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
                       (public, base, partial, full[:-1])]:  # short
        assert harness.functions.verifyDleq(s, b, q, f).call()[0] is False
