"""A short run of the stateful property test (offchain/fuzz.py): random sequences of register,
deposit, start, submit, drop, publish, challenge, cancel, settle, withdraw and hostile calls,
with conservation, zero-sum payments, one submission per participant and iteration, forward-only
phases and withdrawable deposits checked after every step. `gridshare bench fuzz` runs thousands."""
from offchain.fuzz import run_fuzz


def test_random_call_sequences_keep_every_invariant():
    report = run_fuzz(examples=12, steps=30, seed=20261201)
    assert not report["failed"], report["failure"]
    assert report["examples"] >= 12
    # the run reached the interesting places, so the invariants were checked where they matter
    assert report["rejections"] > 0 and report["hostile_calls"]
    assert "Settled" in report["round_outcomes"]
