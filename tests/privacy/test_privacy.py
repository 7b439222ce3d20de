"""Packing, masks and Paillier: the privacy layer on its own."""
import secrets

import pytest

from offchain.privacy.masks import MaskKey, mask_vector, seal, unseal
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
    assert layout.unpack_sums(layout.pack(values)) == values


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


def test_pairwise_masks_cancel_in_the_sum_and_hide_each_vector():
    n, periods, bits = 5, 24, 64
    keys = [MaskKey() for _ in range(n)]
    addresses = [f"0x{i:040x}" for i in range(1, n + 1)]
    registry = list(zip(addresses, [k.public_bytes for k in keys]))
    masks = [mask_vector(a, k.pair_seeds(a, registry, CONTEXT), 3, periods, bits) for a, k in zip(addresses, keys)]
    assert all(sum(col) % (1 << bits) == 0 for col in zip(*masks))
    assert all(any(m != 0 for m in mask) for mask in masks)
    # another iteration gives fresh masks
    other = mask_vector(addresses[0], keys[0].pair_seeds(addresses[0], registry, CONTEXT), 4, periods, bits)
    assert other != masks[0]


def test_masked_packed_ciphertexts_aggregate_to_the_sum_while_one_decrypts_to_noise(keys):
    public, private = keys
    n, periods = 4, 8
    layout = SlotLayout.for_round(periods, n, public.n.bit_length())
    mask_keys = [MaskKey() for _ in range(n)]
    addresses = [f"0x{i:040x}" for i in range(1, n + 1)]
    registry = list(zip(addresses, [k.public_bytes for k in mask_keys]))
    values = [[(i + 1) * (t - 3) * 1000 for t in range(periods)] for i in range(n)]
    ciphertexts = []
    for i in range(n):
        mask = mask_vector(addresses[i], mask_keys[i].pair_seeds(addresses[i], registry, CONTEXT), 0, periods, 64)
        ciphertexts.append(public.encrypt(layout.pack(values[i], mask)))
    single = layout.unpack_sums(private.decrypt(ciphertexts[0]))
    assert single != values[0]
    assert layout.unpack_sums(private.decrypt(public.add(*ciphertexts))) == [sum(c) for c in zip(*values)]


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


def test_pair_pads_open_only_for_the_partner_and_differ_per_direction_and_iteration():
    a, b, c = MaskKey(), MaskKey(), MaskKey()
    peers = [("0xaa", a.public_bytes), ("0xbb", b.public_bytes), ("0xcc", c.public_bytes)]
    sa, sb, sc = (k.pair_seeds(addr, peers, b"ctx") for k, (addr, _) in zip((a, b, c), peers))
    values = [0, 1, -1, 2**62, -(2**62), 123_456_789]
    sealed = seal(values, sa["0xbb"], 7, "0xaa", "0xbb")
    assert len(sealed) == 8 * len(values)
    assert unseal(sealed, sb["0xaa"], 7, "0xaa", "0xbb") == values  # the partner opens it
    assert unseal(sealed, sc["0xaa"], 7, "0xaa", "0xbb") != values  # a third party's seed does not
    # the reverse direction and the next iteration use other pads: no difference of two messages
    # (w_ij - w_ji, or w^k - w^(k+1)) can be read from the chain
    assert seal(values, sb["0xaa"], 7, "0xbb", "0xaa") != sealed
    assert seal(values, sa["0xbb"], 8, "0xaa", "0xbb") != sealed
    zeros = seal([0] * 4, sa["0xbb"], 7, "0xaa", "0xbb")
    back = seal([0] * 4, sa["0xbb"], 7, "0xbb", "0xaa")
    assert bytes(x ^ y for x, y in zip(zeros, back)) != bytes(32)
