"""Packing, masks and Paillier: the privacy layer on its own."""
import secrets

import pytest

from offchain.privacy import secagg
from offchain.privacy.masks import seal, unseal
from offchain.privacy.packing import PackingError, SlotLayout
from offchain.privacy.paillier import RandomnessPool, generate_keypair

CONTEXT = b"test-market/round-1"


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


def test_pack_round_trip_holds_at_the_slot_limits_and_for_negative_values():
    layout = SlotLayout.for_round(periods=24, participants=10, key_bits=2048)
    limit = layout.max_abs_value
    values = [limit, -limit, 0, -1, 1] + [(-1) ** t * t * 12345 for t in range(19)]
    assert layout.unpack(layout.pack(values)) == (values, 0)  # the check slot holds no value


def test_sums_of_packed_vectors_unpack_to_the_exact_slot_sums():
    layout = SlotLayout.for_round(periods=24, participants=7, key_bits=2048)
    vectors = [[secrets.randbelow(2 * layout.max_abs_value + 1) - layout.max_abs_value for _ in range(24)]
               for _ in range(7)]
    total = sum(layout.pack(v) for v in vectors)
    assert layout.unpack_sums(total) == [sum(col) for col in zip(*vectors)]


def test_a_value_beyond_the_slot_range_is_rejected():
    layout = SlotLayout.for_round(periods=24, participants=10, key_bits=2048)
    with pytest.raises(PackingError, match="slot 3"):
        layout.pack([0, 0, 0, layout.max_abs_value + 1] + [0] * 20)


def test_a_layout_that_does_not_fit_the_key_is_rejected():
    with pytest.raises(PackingError, match="do not fit"):
        SlotLayout.for_round(periods=24, participants=10, key_bits=1024)
    with pytest.raises(PackingError, match="headroom"):
        SlotLayout(periods=24, slot_bits=64, slot_width=66, participants=5)


def _members(n: int) -> list[secagg.MaskSecrets]:
    plan = secagg.Plan([f"0x{i:040x}" for i in range(1, n + 1)], CONTEXT)
    return [secagg.MaskSecrets(i, plan) for i in range(n)]


def test_masked_packed_ciphertexts_aggregate_to_the_sum_while_one_decrypts_to_noise(keys):
    public, private = keys
    n, periods = 4, 8
    layout = SlotLayout.for_round(periods, n, public.n.bit_length())
    members = _members(n)
    active = set(range(n))
    points = {i: m.point(0) for i, m in enumerate(members)}
    values = [[(i + 1) * (t - 3) * 1000 for t in range(periods)] for i in range(n)]
    ciphertexts = [public.encrypt(layout.pack(values[i], members[i].mask(0, 0, points, active, periods, 64)))
                   for i in range(n)]
    single, _ = layout.unpack(private.decrypt(ciphertexts[0]))
    assert single != values[0]
    assert layout.unpack(private.decrypt(public.add(*ciphertexts))) == ([sum(c) for c in zip(*values)], 0)


def test_an_opening_proves_the_decryption_and_a_wrong_one_fails(keys):
    public, private = keys
    c = public.add(public.encrypt(41), public.encrypt(1))
    m, rho = private.opening(c)
    assert m == 42 and public.verify_opening(c, m, rho)
    assert not public.verify_opening(c, m + 1, rho)
    assert not public.verify_opening(c, m, rho + 1)


def test_precomputed_randomness_gives_valid_ciphertexts_used_once(keys):
    public, private = keys
    pool = RandomnessPool(public)
    pool.fill(3)
    (ra, rna), (rb, rnb) = pool.take(), pool.take()
    a, b = public.encrypt(7, rna), public.encrypt(7, rnb)
    assert a != b and private.decrypt(a) == private.decrypt(b) == 7
    assert public.verify_opening(a, 7, ra) and public.verify_opening(b, 7, rb)  # r opens its ciphertext
    assert len(pool) == 1


def test_pair_pads_open_only_for_the_partner_and_differ_per_direction_and_attempt():
    a, b, c = _members(3)
    addr = a.plan.addresses
    sa, sb, sc = a.pad_seed(b.key, addr[0], addr[1]), b.pad_seed(a.key, addr[1], addr[0]), c.pad_seed(a.key, addr[2], addr[0])
    assert sa == sb != sc
    values = [0, 1, -1, 2**62, -(2**62), 123_456_789]
    index = secagg.stream_index(7, 0)
    sealed = seal(values, sa, index, addr[0], addr[1])
    assert len(sealed) == 8 * len(values)
    assert unseal(sealed, sb, index, addr[0], addr[1]) == values  # the partner opens it
    assert unseal(sealed, sc, index, addr[0], addr[1]) != values  # a third party's seed does not
    # the reverse direction, the next iteration and the next attempt use other pads: no difference
    # of two messages (w_ij - w_ji, w^k - w^(k+1), or two attempts) can be read from the chain
    assert seal(values, sb, index, addr[1], addr[0]) != sealed
    assert seal(values, sa, secagg.stream_index(8, 0), addr[0], addr[1]) != sealed
    assert seal(values, sa, secagg.stream_index(7, 1), addr[0], addr[1]) != sealed
    zeros = seal([0] * 4, sa, index, addr[0], addr[1])
    back = seal([0] * 4, sa, index, addr[1], addr[0])
    assert bytes(x ^ y for x, y in zip(zeros, back)) != bytes(32)
