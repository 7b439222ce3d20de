"""A short run of the stateful property test (offchain/tools/fuzz.py): random sequences of registration,
deposits, honest and hostile submissions, disputes (openings, accusations, challenges), publish,
conclusion, reveals, settlement with its blame step, cancellation, withdrawals and hostile calls,
with token conservation, zero-sum payments, forward-only phases, forfeits = compensations,
withdrawable deposits, no frozen round and the chain equal to the model checked after every step.
`gridshare bench fuzz` runs many more."""
import pytest

from offchain.chain.market import RoundParams, Windows
from offchain.tools.fuzz import BOND, CAP, FLOOR, SLOT_BITS, SLOT_WIDTH, SLOTS, run_fuzz, shared_env


def test_random_call_sequences_keep_every_invariant():
    report = run_fuzz(examples=10, steps=30, seed=5)
    assert not report["failed"], report["failure"]
    assert report["examples"] >= 10
    # the run reached the interesting places, so the invariants were checked where they matter
    assert report["hostile"] > 0 and report["rejections"] >= report["hostile"]
    assert report["disputes"] > 0 and report["accusations"] > 0 and report["blame_steps"] > 0
    assert "Settled" in report["round_outcomes"] and report["withdrawal_checks"] > 0 and report["end_checks"] > 0


def test_a_forfeit_nobody_may_share_is_not_locked_in_the_market():
    env = shared_env()
    chain, market, f = env.chain, env.market, env.market.contract.functions
    snap = chain.snapshot()
    try:
        params = RoundParams(rule=env.rule, slots=SLOTS, max_iterations=1, price_floor=FLOOR, price_cap=CAP,
                             grid_account=env.grid.address, n=env.pub.n, slot_bits=SLOT_BITS, slot_width=SLOT_WIDTH,
                             bond=BOND, windows=Windows(registration=5, submission=5, coordinator=5, challenge=2))
        rid, _ = market.create_round(env.coord, params)
        chain.transact(f.deposit(rid, BOND), env.coord)
        chain.mine_until(market.coordinator_deadline(rid) + 1)
        chain.transact(f.cancel(rid), env.outsider)  # CoordinatorLate, with nobody kept waiting: the bond stays its own
        withdrawable = sum(market.balance(rid, a) for a in env.accounts)
        assert withdrawable == BOND, f"{BOND - withdrawable} tokens stay in the market, withdrawable by nobody"
    finally:
        chain.revert(snap)
