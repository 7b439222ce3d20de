"""The checked pairwise masks (offchain/privacy/secagg.py) and the randomness worker's lifetime."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from offchain.privacy import secagg
from offchain.privacy.packing import SlotLayout

from ..conftest import ROOT

CONTEXT = b"test-round"
PERIODS, BITS = 5, 40


def _round(n: int):
    addresses = [f"0x{i + 1:040x}" for i in range(n)]
    plan = secagg.Plan(addresses, CONTEXT)
    return plan, [secagg.MaskSecrets(i, plan) for i in range(n)]


def _masks(members, k, attempt, active):
    points = {i: members[i].point(k) for i in active}
    return points, {i: members[i].mask(k, attempt, points, active, PERIODS, BITS) for i in active}


@pytest.mark.parametrize("n", [3, 10, 40])
def test_the_masks_of_an_attempt_cancel_among_its_participants_and_hide_each_vector(n):
    plan, members = _round(n)
    active = set(range(n)) - {1}  # one left: the others mask among themselves only
    _, masks = _masks(members, 2, 1, active)
    assert all(sum(col) % (1 << BITS) == 0 for col in zip(*masks.values()))  # every slot, the check slot too
    assert all(any(masks[i]) for i in active)
    _, again = _masks(members, 2, 2, active)  # the next attempt: fresh masks
    assert all(again[i] != masks[i] for i in active)


def test_a_copy_or_a_made_up_vector_leaves_a_check_slot_that_is_not_zero():
    plan, members = _round(6)
    active = set(range(6))
    _, masks = _masks(members, 0, 0, active)
    layout = SlotLayout(PERIODS, BITS, BITS + 3, 6)
    honest = {i: layout.pack([i] * PERIODS, masks[i]) for i in active}
    _, check = layout.unpack(sum(honest.values()))
    assert check == 0
    copied = {**honest, 5: honest[0]}  # participant 5 submits participant 0's plaintext
    made_up = {**honest, 5: 1}  # or the plaintext of the deterministic encryption 1 + n
    assert layout.unpack(sum(copied.values()))[1] != 0
    assert layout.unpack(sum(made_up.values()))[1] != 0


def test_check_values_agree_pairwise_and_add_up_to_each_check_slot():
    plan, members = _round(7)
    active = set(range(7))
    points, masks = _masks(members, 3, 0, active)
    checks = {i: members[i].checks(3, 0, points, active, PERIODS, BITS) for i in active}
    for i in active:
        nbrs = plan.active_neighbours(i, active)
        assert sum(plan.sign(i, j) * e for j, e in zip(nbrs, checks[i])) % (1 << BITS) == masks[i][PERIODS]
        for q, j in enumerate(nbrs):
            assert checks[i][q] == checks[j][plan.active_neighbours(j, active).index(i)]


def test_a_false_mask_point_makes_its_pairs_disagree_and_only_the_honest_side_can_prove_it():
    plan, members = _round(4)
    active = set(range(4))
    points = {i: members[i].point(1) for i in active}
    points[3] = secagg.multiply(secagg.GENERATOR, secagg.random_scalar())  # 3 posts a point that is not a H_1
    honest = members[0].checks(1, 0, points, active, PERIODS, BITS)
    own = members[3].checks(1, 0, {**points, 3: members[3].point(1)}, active, PERIODS, BITS)
    assert honest[2] != own[0]  # 0 and 3 disagree about their pair
    proof = members[0].accusation(1, points[3])
    key, rest = proof[:33], proof[33:]
    y0, y0_proof = rest[:33], rest[33:33 + secagg.EXPANDED_BYTES]
    assert secagg.verify(key, plan.point(1), y0, y0_proof)  # 0's own point is a H_1
    y3 = members[3].point(1)
    assert not secagg.verify(members[3].key, plan.point(1), points[3], secagg.prove(members[3].secret, plan.point(1))[1])
    assert y3 != points[3]


def test_the_pair_points_of_one_iteration_say_nothing_of_another():
    plan, members = _round(3)
    p1 = members[0].pair_point(members[1].point(1))
    p2 = members[0].pair_point(members[1].point(2))
    assert p1 == members[1].pair_point(members[0].point(1)) and p1 != p2
    assert plan.seed(0, 1, p1) != plan.seed(0, 1, p2)


def test_the_seed_of_a_pair_mask_is_bound_to_both_addresses():
    point = secagg.multiply(secagg.GENERATOR, 7)
    assert secagg.mask_seed(point, CONTEXT, "0x" + "01" * 20, "0x" + "02" * 20) != \
        secagg.mask_seed(point, CONTEXT, "0x" + "01" * 20, "0x" + "03" * 20)


def test_points_the_contract_cannot_prove_are_not_points():
    x = secagg.Q  # the smallest x the contract refuses: at or above the group order N
    while pow((x ** 3 + 7) % secagg.P, (secagg.P - 1) // 2, secagg.P) != 1:
        x += 1
    assert not secagg.is_point(b"\x02" + x.to_bytes(32, "big"))
    assert secagg.is_point(secagg.multiply(secagg.GENERATOR, 5))
    assert not secagg.is_point(b"\x04" + bytes(32)) and not secagg.is_point(b"\x02" + bytes(32))


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
