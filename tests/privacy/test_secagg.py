"""Dropout recovery (offchain/privacy/secagg.py) and the randomness worker's lifetime."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from offchain.privacy import secagg

from ..conftest import ROOT

CONTEXT = b"test-round"
PERIODS, BITS = 5, 40


def _round(n: int, threshold: int | None = None):
    addresses = [f"0x{i + 1:040x}" for i in range(n)]
    plan = secagg.Plan(addresses, threshold or secagg.default_threshold(secagg.degree_for(n)), CONTEXT)
    members = [secagg.Secrets(i, plan) for i in range(n)]
    for m in members:  # every participant hands its neighbours their shares
        shares, plan.commitments[m.position] = m.deal()
        for j, pair in shares.items():
            assert plan.holds(m.position, j, *pair)
            members[j].held[m.position] = pair
    return plan, members


def _iteration(plan, members, k, active, submitted, values):
    points = {i: members[i].point(k) for i in active}
    masked = {i: [(v + m) % (1 << BITS) for v, m in zip(values[i], members[i].mask(k, points, active, PERIODS, BITS))]
              for i in submitted}
    total = [sum(col) % (1 << BITS) for col in zip(*masked.values())]
    posts = {i: members[i].partials(k, points, active, set(submitted)) for i in submitted}
    checked = plan.check(k, active, set(submitted), posts, points)
    assert not checked.false
    corrections = plan.corrections(k, active, set(submitted), checked, PERIODS, BITS)
    return [(t - c) % (1 << BITS) for t, c in zip(total, corrections)], masked, posts


@pytest.mark.parametrize("n, gone", [(10, []), (10, [3]), (10, [0, 4, 9])])
def test_the_survivors_partials_remove_every_mask_and_leave_the_survivors_sum(n, gone):
    plan, members = _round(n)
    values = {i: [(i + 1) * (t + 1) for t in range(PERIODS)] for i in range(n)}
    active = set(range(n))
    submitted = sorted(active - set(gone))
    total, masked, _ = _iteration(plan, members, 2, active, submitted, values)
    assert total == [sum(values[i][t] for i in submitted) for t in range(PERIODS)]
    assert all(masked[i] != values[i] for i in submitted)  # one masked vector alone shows nothing


def test_the_recovery_needs_a_threshold_of_partials():
    plan, members = _round(6, threshold=3)
    active, submitted = set(range(6)), [0, 1, 2, 3, 4]  # 5 dropped
    points = {i: members[i].point(0) for i in active}
    posts = {i: members[i].partials(0, points, active, set(submitted)) for i in submitted[:2]}  # only two post
    with pytest.raises(ValueError, match="2 proven partials of the pair mask"):
        plan.corrections(0, active, set(submitted), plan.check(0, active, set(submitted), posts, points), PERIODS, BITS)


def test_one_iterations_recovered_masks_say_nothing_of_another_iteration():
    """What becomes public in iteration k (a dropped participant's pair masks, the survivors'
    self masks) differs from those of every other iteration: no secret is reconstructed."""
    plan, members = _round(5)
    d, j = 4, 0
    combined = {}
    for k in (0, 1):
        points = {i: members[i].point(k) for i in range(5)}
        posts = {i: members[i].partials(k, points, set(range(5)), {0, 1, 2, 3}) for i in range(4)}
        items = {h: plan.parse(h, posts[h], set(range(5)), {0, 1, 2, 3}) for h in posts}
        partials = {h + 1: items[h][("pair", d, j)][0] for h in posts if ("pair", d, j) in items[h]}
        combined[k] = secagg.combine(partials, plan.threshold)
        assert combined[k] == secagg.multiply(points[j], members[d].pair)  # a_d Y_j(k): the iteration's pair mask
    assert combined[0] != combined[1]


def test_a_false_partial_is_left_out_and_its_poster_named():
    """A survivor that posts a wrong partial (here: another point, with its honest proof) cannot
    spoil the sums while a threshold of proven partials remains."""
    plan, members = _round(10)
    values = {i: [i + t for t in range(PERIODS)] for i in range(10)}
    active, submitted = set(range(10)), [i for i in range(10) if i != 3]
    points = {i: members[i].point(1) for i in active}
    posts = {i: members[i].partials(1, points, active, set(submitted)) for i in submitted}
    liar = submitted[0]
    forged = bytearray(posts[liar])
    forged[:secagg.POINT_BYTES] = secagg.multiply(secagg.hash_to_point(b"elsewhere"), 7)
    posts[liar] = bytes(forged)
    checked = plan.check(1, active, set(submitted), posts, points)
    assert list(checked.false) == [liar]
    masked = [sum((values[i][t] + members[i].mask(1, points, active, PERIODS, BITS)[t]) for i in submitted) % (1 << BITS)
              for t in range(PERIODS)]
    corrections = plan.corrections(1, active, set(submitted), checked, PERIODS, BITS)
    assert [(m - c) % (1 << BITS) for m, c in zip(masked, corrections)] == [sum(values[i][t] for i in submitted)
                                                                            for t in range(PERIODS)]


def test_a_proof_holds_for_its_statement_only():
    secret, other = secagg.random_scalar(), secagg.random_scalar()
    base = secagg.hash_to_point(b"base")
    public = secagg.PublicKey(secagg.multiply(secagg.GENERATOR, secret))
    partial, proof = secagg.prove(secret, base)
    assert secagg.verify(public, base, partial, proof)
    assert not secagg.verify(public, base, secagg.multiply(base, other), proof)  # another partial
    assert not secagg.verify(secagg.PublicKey(secagg.multiply(secagg.GENERATOR, other)), base, partial, proof)
    assert not secagg.verify(public, secagg.hash_to_point(b"other base"), partial, proof)
    assert not secagg.verify(public, base, partial, proof[:32] + bytes(32))


def test_a_holder_refuses_shares_its_dealer_did_not_commit_to():
    plan, members = _round(5)
    a, b = members[1].held[0]
    assert plan.holds(0, 1, a, b) and not plan.holds(0, 1, a + 1, b) and not plan.holds(0, 1, a, b + 1)


def test_sparse_neighbours_grow_with_log_n_and_stay_symmetric():
    assert secagg.degree_for(10) == 9 and secagg.degree_for(200) == 18 and secagg.degree_for(2000) == 24
    graph = secagg.neighbours(200, 18)
    assert all(len(g) == 18 and i not in g for i, g in enumerate(graph))
    assert all(i in graph[j] for i, g in enumerate(graph) for j in g)
    assert graph[0] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 191, 192, 193, 194, 195, 196, 197, 198, 199]  # the ring the contract forms


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_randomness_worker_dies_with_its_parent_even_by_sigkill():
    script = ("import time, multiprocessing\n"
              "from offchain.privacy.paillier import generate_keypair, RandomnessPool, start_worker\n"
              "start_worker()\n"
              "pool = RandomnessPool(generate_keypair(512)[0], ahead=1)\n"
              "pool.take()\n"
              "print(multiprocessing.active_children()[0].pid, flush=True)\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().split()[2] == "Z":  # killed, waiting to be reaped by init
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the worker outlived its parent")
