"""The round contract's safety against hostile or absent parties, on the embedded chain (Prague
rules): hostile submissions, mask keys and registrations; deadlines, dropouts and cancellation;
settlement with dropped participants; chunked aggregation; optimistic openings and their
challenges. Every rejection is checked to name its custom error and to change nothing."""
from __future__ import annotations

import dataclasses
import random
import secrets

import pytest
from eth_utils import keccak

from offchain.chain.market import Market, Reveal, RoundParams, Windows, deploy_rule
from offchain.mechanisms.tariff.market import settlement
from offchain.privacy import secagg

from .helpers import (CLOSE, PHASE, STANDING, TX_GAS_CAP, StateReader, assert_rejected, connect_with_test_contracts,
                      events, keygen, mask_key, past, reveal, reveals, submission)

T, B, W = 3, 40, 48
FLOOR = [50_000, 60_000, 40_000]
CAP = [300_000, 280_000, 320_000]
PRICES0 = [100_000] * T
UNIT = 10**6
UINT64_MAX = 2**64 - 1
DEPOSIT = 10**24
WINDOWS = Windows(registration=40, submission=30, recovery=20, coordinator=40, challenge=10)
KEYLESS = dataclasses.replace(WINDOWS, challenge=0)
STEP = {"Submitting": 0, "Recovering": 1, "Aggregating": 2}
POINT = secagg.multiply(secagg.hash_to_point(b"x"), 5)  # a valid compressed secp256k1 point
# X25519 public keys that PrivateRounds refuses (libsodium's list of low-order points; byte 31's
# top bit is ignored by X25519, so each is refused with it set as well)
LOW_ORDER = [bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
)]


# ----------------------------------------------------------------------------- fixtures
class Env:
    pass


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.chain = connect_with_test_contracts()
    accts = e.chain.accounts(40)
    e.op, e.coord, e.grid, e.outsider = accts[:4]
    e.parts = accts[4:9]  # five participants
    e.more = accts[9:40]
    e.key = keygen(1024)
    e.market = Market.deploy(e.chain, e.op)
    e.tariff = deploy_rule(e.chain, "TariffRule", e.op)
    e.probe = deploy_rule(e.chain, "ProbeRule", e.op)
    e.reader = StateReader(e.chain, e.op)
    e.watch = [e.coord.address, e.grid.address, e.outsider.address]
    e.params = RoundParams(rule=e.tariff, slots=T, max_iterations=3, price_floor=FLOOR, price_cap=CAP,
                           grid_account=e.grid.address, n=e.key.n, slot_bits=B, slot_width=W, windows=WINDOWS)
    e.market.token.mint_many(e.op, [(a, 10**30) for a in e.parts + e.more[:10] + [e.grid, e.outsider]])
    e.rid = new_round(e, parts=e.parts[:3])  # the main round: three participants, started
    return e


def new_round(e, p: RoundParams | None = None, parts=(), start=True, deposit=DEPOSIT, prices=PRICES0, **change):
    """A round of ``parts`` (registration order) with deposits of each and of the grid account,
    started unless ``start`` is False; ``change`` alters the main round's parameters."""
    p = dataclasses.replace(p or e.params, **change)
    rid, _ = e.market.create_round(e.coord, p)
    parts = list(parts)
    if parts:
        e.market.register_many([(a, rid, mask_key(i)) for i, a in enumerate(parts)])
    if deposit:
        e.market.deposit_many([(a, rid, deposit) for a in parts + [e.grid]])
    if start:
        e.market.start(e.coord, rid, prices)
    return rid


def subs_for(e, rid, k, parts, values=None, key=None, seed=0):
    key = e.key if key is None else key
    rnd = random.Random(seed * 100 + k)
    values = values or [[rnd.randint(-2_000_000, 2_000_000) for _ in range(T)] for _ in parts]
    return [submission(key, rid, k, p, v) for p, v in zip(parts, values)]


def submit(e, rid, k, subs, point=b""):
    return e.market.submit_many([(s["p"], rid, k, s["ct"], s["cm"], b"", point) for s in subs])


def aggregate(e, rid, subs):
    agg, receipts = e.market.aggregate(e.outsider, rid, [s["ct"] for s in subs], [s["cm"] for s in subs])
    return agg, receipts


def aggregate_in_chunks(e, rid, subs, chunk):
    """The submissions multiplied in chunks of ``chunk`` by direct calls (each passing on the
    AggregationProgress product); the aggregate and the receipts."""
    f = e.market.contract.functions
    so_far, receipts = b"", []
    for i in range(0, len(subs), chunk):
        part = subs[i:i + chunk]
        receipt = e.chain.transact(f.aggregate(rid, so_far, [s["ct"] for s in part], [s["cm"] for s in part]),
                                   e.outsider)
        receipts.append(receipt)
        done = events(e, receipt, "Aggregated")
        so_far = bytes(done[0]["aggregate"] if done else events(e, receipt, "AggregationProgress")[0]["soFar"])
    return so_far, receipts


def product(key, subs):
    c = 1
    for s in subs:
        c = c * int.from_bytes(s["ct"], "big") % key.nsq
    return c


def sums_of(subs):
    return [sum(s["values"][t] for s in subs) for t in range(T)]


def run_iteration(e, rid, k, parts, key=None, last=False, values=None, seed=0):
    """Iteration ``k`` of ``parts``: submitted, aggregated, published (or concluded); the submissions."""
    key = e.key if key is None else key
    subs = subs_for(e, rid, k, parts, values, key, seed)
    submit(e, rid, k, subs)
    agg, _ = aggregate(e, rid, subs)
    m, rho = key.opening(agg)
    if last:
        e.market.conclude(e.coord, rid, agg, m, rho)
    else:
        e.market.publish(e.coord, rid, agg, m, rho, PRICES0)
    return subs, agg, m, rho


def published(key, agg: bytes, m: int, rho: int) -> bytes:
    return bytes(agg) + m.to_bytes(key.nbytes, "big") + rho.to_bytes(key.nbytes, "big")


def accumulator(key, rho: int, done: int) -> bytes:
    """The challenge's accumulator after ``done`` 256-bit steps: rho^(n's top ``done`` words) mod n^2."""
    words = key.nbytes // 32
    return pow(rho, key.n >> (256 * (words - done)), key.nsq).to_bytes(2 * key.nbytes, "big")


def challenge_call(e, rid, k, data: bytes, acc: bytes, steps: int, sender=None):
    return e.chain.transact(e.market.contract.functions.challengeOpening(rid, k, data, acc, steps),
                            sender or e.outsider)


def withdraw_all(e, rid, accounts):
    """Every account takes its whole balance out; what each got."""
    before = {a.address: e.market.token.balance_of(a) for a in accounts}
    e.market.withdraw_many(accounts, rid)
    return {a.address: e.market.token.balance_of(a) - before[a.address] for a in accounts}


def assert_closed_and_refunded(e, rid, receipt, reason, by, accounts):
    (ev,) = events(e, receipt, "Closed")
    assert (ev["roundId"], ev["reason"], ev["by"]) == (rid, CLOSE[reason], by.address)
    assert events(e, receipt, "PhaseChanged")[-1]["to"] == PHASE["Closed"]
    assert e.market.round_info(rid)["phase"] == "Closed"
    assert events(e, receipt, "Payment") == []
    assert withdraw_all(e, rid, accounts) == {a.address: DEPOSIT for a in accounts}
    assert all(e.market.balance(rid, a) == 0 for a in accounts)


# ----------------------------------------------------------------------------- hostile submissions
def test_ciphertext_one_is_rejected(w):
    """c = 1 is the encryption of 0 with randomness 1: no randomness, and none of the participant's
    masks (the others' would no longer cancel in the sum)."""
    s = subs_for(w, w.rid, 0, w.parts[:1])[0]
    err = assert_rejected(w, "CiphertextIsOne", lambda: w.market.submit(s["p"], w.rid, 0, w.key.ct(1), s["cm"]))
    assert err.error_args == {"participant": s["p"].address}


@pytest.mark.parametrize("multiple", [1, 2, "largest"])
def test_ciphertext_that_is_a_multiple_of_n_is_rejected(w, multiple):
    """Multiples of n are no units mod n^2: one of them in the product makes every later
    decryption of the round junk."""
    k = w.key.n - 1 if multiple == "largest" else multiple
    s = subs_for(w, w.rid, 0, w.parts[:1])[0]
    err = assert_rejected(w, "CiphertextMultipleOfN",
                          lambda: w.market.submit(s["p"], w.rid, 0, w.key.ct(k * w.key.n), s["cm"]))
    assert err.error_args == {"participant": s["p"].address}


def test_ciphertexts_just_off_the_refused_values_are_accepted(w):
    """The checks refuse exactly 1 and the multiples of n: n + 1 (an encryption of 1) and 2 pass."""
    s = subs_for(w, w.rid, 0, w.parts[:2])
    w.market.submit(s[0]["p"], w.rid, 0, w.key.ct(w.key.n + 1), s[0]["cm"])
    w.market.submit(s[1]["p"], w.rid, 0, w.key.ct(2), s[1]["cm"])
    assert w.market.round_info(w.rid)["submissions"] == 2


def test_copy_of_another_participants_ciphertext_is_rejected(w):
    """A copied ciphertext would let a participant free-ride on (and double) another's values."""
    subs = subs_for(w, w.rid, 0, w.parts[:3])
    submit(w, w.rid, 0, subs[:1])
    s = subs[1]
    err = assert_rejected(w, "CiphertextRepeated", lambda: w.market.submit(s["p"], w.rid, 0, subs[0]["ct"], s["cm"]))
    assert err.error_args == {"participant": s["p"].address, "ciphertextHash": keccak(subs[0]["ct"])}
    # memory is per round: the same ciphertext is new in another round
    other = new_round(w, parts=w.more[:3])
    w.market.submit(w.more[0], other, 0, subs[0]["ct"], s["cm"])


def test_replay_of_an_earlier_iterations_ciphertext_is_rejected(w):
    """A replayed ciphertext (one's own, from an earlier iteration) would repeat old values under
    fresh masks: refused for the whole round."""
    first, _, _, _ = run_iteration(w, w.rid, 0, w.parts[:3])
    again = subs_for(w, w.rid, 1, w.parts[:3])
    for s, old in [(again[0], first[0]), (again[1], first[2])]:  # its own, and another's of iteration 0
        err = assert_rejected(w, "CiphertextRepeated",
                              lambda: w.market.submit(s["p"], w.rid, 1, old["ct"], s["cm"]))
        assert err.error_args == {"participant": s["p"].address, "ciphertextHash": keccak(old["ct"])}
    submit(w, w.rid, 1, again)  # fresh ciphertexts are fine


def test_non_canonical_openings_are_rejected_at_publish(w):
    """rho + n is an opening as good as rho (the same rho^n mod n^2), rho = 0 none at all: publish
    takes only 0 < rho < n, so that each aggregate has one opening. A 1000-bit key leaves room for
    rho + n in the modulus' 128 bytes."""
    key = keygen(1000)
    assert key.nbytes == 128
    rid = new_round(w, parts=w.parts[:3], n=key.n)
    subs = subs_for(w, rid, 0, w.parts[:3], key=key)
    submit(w, rid, 0, subs)
    agg, _ = aggregate(w, rid, subs)
    m, rho = key.opening(agg)
    assert key.public.verify_opening(int.from_bytes(agg, "big"), m, rho)
    assert (1 + m * key.n) * pow(rho + key.n, key.n, key.nsq) % key.nsq == int.from_bytes(agg, "big")
    for bad in (rho + key.n, 0, key.n):
        for call in (lambda: w.market.publish(w.coord, rid, agg, m, bad, PRICES0),
                     lambda: w.market.conclude(w.coord, rid, agg, m, bad)):
            err = assert_rejected(w, "OpeningNotCanonical", call, rid)
            assert err.error_args == {"roundId": rid, "iteration": 0}
    w.market.publish(w.coord, rid, agg, m, rho, PRICES0)
    # a modulus that does not fill its top word is challenged like any other
    held, _ = w.market.challenge(w.outsider, rid, 0, agg, m, rho)
    assert held


# ----------------------------------------------------------------------------- mask keys
@pytest.mark.parametrize("index", range(len(LOW_ORDER)))
@pytest.mark.parametrize("top_bit", [False, True], ids=["as listed", "top bit set"])
def test_zero_and_low_order_mask_keys_are_rejected(w, index, top_bit):
    key = bytearray(LOW_ORDER[index])
    if top_bit:
        key[31] |= 0x80
    key = bytes(key)
    rid = new_round(w, start=False, deposit=0)
    err = assert_rejected(w, "MaskKeyRejected", lambda: w.market.register(w.parts[0], rid, key), rid)
    assert err.error_args == {"maskKey": key}


def test_repeated_mask_key_is_rejected(w):
    """Two participants with one key would share every pair seed with everybody: refused, within a round."""
    rid = new_round(w, start=False, deposit=0)
    w.market.register(w.parts[0], rid, mask_key(7))
    err = assert_rejected(w, "MaskKeyRepeated", lambda: w.market.register(w.parts[1], rid, mask_key(7)), rid)
    assert err.error_args == {"maskKey": mask_key(7)}
    w.market.register(w.parts[1], rid, mask_key(8))
    other = new_round(w, start=False, deposit=0)
    w.market.register(w.parts[2], other, mask_key(7))  # another round's keys are its own


def test_keys_next_to_the_low_order_ones_are_accepted(w):
    rid = new_round(w, start=False, deposit=0)
    near = [bytes([2]) + bytes(31), bytes(31) + bytes([1]), bytes.fromhex("ef" + "ff" * 30 + "7f")]
    w.market.register_many([(p, rid, k) for p, k in zip(w.parts, near)])
    assert [k for _, k in w.market.participants(rid)] == near


# ----------------------------------------------------------------------------- membership
def test_outsider_cannot_register_in_an_allow_list_round(w):
    rid = new_round(w, start=False, deposit=0, members=[p.address for p in w.parts[:3]])
    err = assert_rejected(w, "NotMember", lambda: w.market.register(w.outsider, rid, mask_key(0)), rid)
    assert err.error_args == {"account": w.outsider.address}
    err = assert_rejected(w, "BadSignature", lambda: w.market.register_many(  # no signatures in allow-list rounds
        [(w.parts[0], rid, mask_key(0), 0, w.market.member_signature(w.coord, rid, w.parts[0], 0))]), rid)
    assert err.error_args == {"account": w.parts[0].address}


def signed_round(w, **change):
    return new_round(w, start=False, deposit=0, signed_members=True, **change)


def test_signed_membership_needs_the_creators_signature(w):
    rid = signed_round(w)
    assert w.market.round_info(rid)["signed_members"] is True
    p, sig = w.parts[0], lambda *a: w.market.member_signature(*a)
    err = assert_rejected(w, "BadSignature", lambda: w.market.register(p, rid, mask_key(0)), rid)
    assert err.error_args == {"account": p.address}
    wrong = {
        "signed by someone else": (4, sig(w.outsider, rid, p, 4)),
        "signed for another account": (4, sig(w.coord, rid, w.parts[1], 4)),
        "signed for another index": (4, sig(w.coord, rid, p, 5)),
        "signed for another round": (4, sig(w.coord, rid + 1, p, 4)),
        "no signature": (4, b""),
        "garbage": (4, secrets.token_bytes(65)),
        "truncated": (4, sig(w.coord, rid, p, 4)[:64]),
    }
    for what, (index, signature) in wrong.items():
        err = assert_rejected(w, "BadSignature",
                              lambda: w.market.register_many([(p, rid, mask_key(0), index, signature)]), rid)
        assert err.error_args == {"account": p.address}, what
    w.market.register_many([(p, rid, mask_key(0), 4, sig(w.coord, rid, p, 4))])
    m = w.market.member(rid, p)
    assert (m["position"], m["member_index_plus_one"]) == (1, 5)
    # the signature admits its account once
    err = assert_rejected(w, "AlreadyRegistered",
                          lambda: w.market.register_many([(p, rid, mask_key(1), 4, sig(w.coord, rid, p, 4))]), rid)


def test_signed_member_indices_reach_the_rule(w):
    rid = signed_round(w, p=keyless_params(w))
    order = w.parts[:3]
    w.market.register_many([(p, rid, mask_key(i), idx, w.market.member_signature(w.coord, rid, p, idx))
                            for i, (p, idx) in enumerate(zip(order, [7, 0, 300]))])
    w.market.deposit_many([(a, rid, DEPOSIT) for a in order + [w.grid]])
    w.market.start(w.coord, rid, [7])
    subs = keyless_subs(rid, 0, order, [[1, 0], [2, 0], [3, 0]])
    submit(w, rid, 0, subs)
    w.market.conclude(w.coord, rid, b"", None, None)
    result = w.market.settle(w.outsider, rid, reveals(subs))
    assert [result.bills[p.address][0] for p in order] == [7, 0, 300]


def test_signed_member_index_65535_settles(w):
    rid = signed_round(w, p=keyless_params(w))
    order = w.parts[:3]
    w.market.register_many([(p, rid, mask_key(i), idx, w.market.member_signature(w.coord, rid, p, idx))
                            for i, (p, idx) in enumerate(zip(order, [0, 1, 65535]))])
    w.market.start(w.coord, rid, [7])
    bills = w.market.quote(rid, [[0, 0]] * 3)[2]  # reverts Panic(0x11): the stored index + 1 wrapped to 0
    assert [b[0] for b in bills] == [0, 1, 65535]


def test_start_needs_three_participants_and_more_than_the_threshold(w):
    rid = new_round(w, parts=w.parts[:2], start=False)
    err = assert_rejected(w, "TooFewParticipants", lambda: w.market.start(w.coord, rid, PRICES0), rid)
    assert err.error_args == {"count": 2, "minimum": 3}
    rid = new_round(w, parts=w.parts[:3], start=False, threshold=3)
    err = assert_rejected(w, "TooFewParticipants", lambda: w.market.start(w.coord, rid, PRICES0), rid)
    assert err.error_args == {"count": 3, "minimum": 4}


# ----------------------------------------------------------------------------- rounds without a key (ProbeRule)
def keyless_params(w, **change) -> RoundParams:
    return RoundParams(rule=w.probe, slots=2, max_iterations=3, price_floor=[1], price_cap=[100],
                       grid_account=w.grid.address, windows=KEYLESS, **change)


def keyless_subs(rid, k, parts, values):
    return [submission(None, rid, k, p, v) for p, v in zip(parts, values)]


# ----------------------------------------------------------------------------- deadlines
def test_submission_after_the_deadline_is_rejected(w):
    deadline = w.market.round_info(w.rid)["deadline"]
    subs = subs_for(w, w.rid, 0, w.parts[:3])
    past(w.chain, deadline - 1)
    submit(w, w.rid, 0, subs[:1])  # in the deadline's block: on time
    s = subs[1]
    err = assert_rejected(w, "DeadlinePassed", lambda: w.market.submit(s["p"], w.rid, 0, s["ct"], s["cm"]))
    assert err.error_args == {"deadline": deadline}


def test_advance_before_the_deadline_is_rejected(w):
    deadline = w.market.round_info(w.rid)["deadline"]
    submit(w, w.rid, 0, subs_for(w, w.rid, 0, w.parts[:2]))
    err = assert_rejected(w, "DeadlineNotPassed", lambda: w.market.advance(w.outsider, w.rid, [w.parts[2]]))
    assert err.error_args == {"deadline": deadline}
    past(w.chain, deadline - 3)
    assert_rejected(w, "DeadlineNotPassed", lambda: w.market.advance(w.outsider, w.rid, [w.parts[2]]))


@pytest.fixture
def late(w):
    """A round of five where participants 1 and 2 miss iteration 0's deadline."""
    rid = new_round(w, parts=w.parts)
    subs = subs_for(w, rid, 0, w.parts)
    submit(w, rid, 0, [subs[i] for i in (0, 3, 4)])
    past(w.chain, w.market.round_info(rid)["deadline"])
    return w, rid, subs


@pytest.mark.parametrize("case, missing, error, args", [
    ("a participant that submitted", [1, 2, 3], "NotMissing", 3),
    ("unsorted", [2, 1], "NotMissing", 1),
    ("twice", [1, 1, 2], "NotMissing", 1),
    ("an outsider", ["outsider", 1, 2], "NotMissing", "outsider"),
    ("the grid account", [1, 2, "grid"], "NotMissing", "grid"),
    ("incomplete", [1], "MissingCount", {"given": 1, "expected": 2}),
    ("empty", [], "MissingCount", {"given": 0, "expected": 2}),
])
def test_advance_needs_exactly_the_missing_in_registration_order(late, case, missing, error, args):
    w, rid, _ = late
    who = lambda x: {"outsider": w.outsider, "grid": w.grid}.get(x) or w.parts[x]  # noqa: E731
    err = assert_rejected(w, error, lambda: w.market.advance(w.outsider, rid, [who(x) for x in missing]), rid)
    assert err.error_args == (args if isinstance(args, dict) else {"participant": who(args).address}), case


def test_advance_drops_the_missing_who_cannot_come_back(late):
    w, rid, subs = late
    receipt = w.market.advance(w.outsider, rid, [w.parts[1], w.parts[2]])  # anyone may call it
    assert events(w, receipt, "Dropped") == [
        {"roundId": rid, "iteration": 0, "participant": w.parts[i].address, "inMasks": True} for i in (1, 2)]
    block = receipt["blockNumber"]
    assert events(w, receipt, "StepChanged") == [{"roundId": rid, "iteration": 0, "phase": PHASE["Iterating"],
                                                  "step": STEP["Aggregating"], "deadline": block + WINDOWS.coordinator}]
    info = w.market.round_info(rid)
    assert (info["participant_count"], info["active"], info["submissions"], info["step"]) == (5, 3, 3, "Aggregating")
    assert [w.market.member(rid, p)["dropped_before_plus_one"] for p in w.parts] == [0, 1, 1, 0, 0]
    assert_rejected(w, "WrongStep", lambda: w.market.advance(w.outsider, rid, []), rid)
    kept = [subs[i] for i in (0, 3, 4)]
    agg, _ = aggregate_in_chunks(w, rid, kept, 1)  # the chunks skip the dropped
    assert int.from_bytes(agg, "big") == product(w.key, kept)
    m, rho = w.key.opening(agg)
    sums, _ = w.market.publish(w.coord, rid, agg, m, rho, PRICES0)
    assert sums == sums_of(kept)
    late_sub = subs_for(w, rid, 1, [w.parts[1]], seed=5)[0]
    err = assert_rejected(w, "NotActive", lambda: w.market.submit(w.parts[1], rid, 1, late_sub["ct"], late_sub["cm"]),
                          rid)
    assert err.error_args == {"participant": w.parts[1].address}
    # the next iteration needs the three that stayed only
    receipts = submit(w, rid, 1, subs_for(w, rid, 1, [w.parts[i] for i in (0, 3, 4)], seed=6))
    assert events(w, receipts[-1], "StepChanged")[0]["step"] == STEP["Aggregating"]


def test_dropping_below_three_closes_the_round_and_returns_every_deposit(w):
    submit(w, w.rid, 0, subs_for(w, w.rid, 0, w.parts[:2]))
    past(w.chain, w.market.round_info(w.rid)["deadline"])
    receipt = w.market.advance(w.parts[0], w.rid, [w.parts[2]])
    assert events(w, receipt, "PhaseChanged") == [{"roundId": w.rid, "from": PHASE["Iterating"],
                                                   "to": PHASE["Closed"]}]
    assert w.market.round_info(w.rid)["active"] == 2
    assert_rejected(w, "WrongPhase", lambda: w.market.advance(w.outsider, w.rid, []))
    assert_closed_and_refunded(w, w.rid, receipt, "TooFewParticipants", w.parts[0], w.parts[:3] + [w.grid])


def test_cancel_before_the_coordinators_deadline_is_rejected(w):
    err = assert_rejected(w, "DeadlineNotPassed", lambda: w.market.cancel(w.outsider, w.rid))
    assert err.error_args == {"deadline": UINT64_MAX}  # the participants' turn: the coordinator is never late
    rid = new_round(w, parts=w.parts[:3], start=False)
    late = w.market.coordinator_deadline(rid)
    assert late == w.market.round_info(rid)["deadline"] + WINDOWS.coordinator
    past(w.chain, late - 2)
    err = assert_rejected(w, "DeadlineNotPassed", lambda: w.market.cancel(w.outsider, rid), rid)
    assert err.error_args == {"deadline": late}


def test_coordinator_that_does_not_start_lets_anyone_cancel(w):
    rid = new_round(w, parts=w.parts[:3], start=False)
    late = w.market.coordinator_deadline(rid)
    past(w.chain, late)
    err = assert_rejected(w, "DeadlinePassed", lambda: w.market.start(w.coord, rid, PRICES0), rid)
    assert err.error_args == {"deadline": late}
    receipt = w.market.cancel(w.outsider, rid)
    assert events(w, receipt, "PhaseChanged") == [{"roundId": rid, "from": PHASE["Registering"],
                                                   "to": PHASE["Closed"]}]
    assert_closed_and_refunded(w, rid, receipt, "CoordinatorLate", w.outsider, w.parts[:3] + [w.grid])


def test_coordinator_that_does_not_publish_lets_anyone_cancel(w):
    subs = subs_for(w, w.rid, 0, w.parts[:3])
    receipts = submit(w, w.rid, 0, subs)
    agg, _ = aggregate(w, w.rid, subs)
    late = w.market.coordinator_deadline(w.rid)
    assert late == receipts[-1]["blockNumber"] + WINDOWS.coordinator
    m, rho = w.key.opening(agg)
    past(w.chain, late)
    for call in (lambda: w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0),
                 lambda: w.market.conclude(w.coord, w.rid, agg, m, rho)):
        err = assert_rejected(w, "DeadlinePassed", call)
        assert err.error_args == {"deadline": late}
    receipt = w.market.cancel(w.parts[1], w.rid)
    assert_closed_and_refunded(w, w.rid, receipt, "CoordinatorLate", w.parts[1], w.parts[:3] + [w.grid])


def test_coordinator_that_does_not_settle_lets_anyone_cancel(w):
    subs, agg, m, rho = run_iteration(w, w.rid, 0, w.parts[:3], last=True)
    info = w.market.round_info(w.rid)
    late = w.market.coordinator_deadline(w.rid)
    assert late == info["challenge_until"] + WINDOWS.coordinator
    past(w.chain, late - 2)
    assert_rejected(w, "DeadlineNotPassed", lambda: w.market.cancel(w.outsider, w.rid))
    past(w.chain, late)
    receipt = w.market.cancel(w.outsider, w.rid)
    assert events(w, receipt, "PhaseChanged") == [{"roundId": w.rid, "from": PHASE["Concluded"],
                                                   "to": PHASE["Closed"]}]
    assert_rejected(w, "WrongPhase", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert_closed_and_refunded(w, w.rid, receipt, "CoordinatorLate", w.outsider, w.parts[:3] + [w.grid])


# ----------------------------------------------------------------------------- settlement with dropouts (TariffRule)
DROPPED_VALUES = [1_500_000, -700_000, 0]  # what participant 3 last committed: a purchase, a sale, nothing


@pytest.fixture
def dropped(w):
    """A tariff round of four where participant 3 takes part in iteration 0 and misses iteration 1,
    which concludes; the challenge window is over."""
    parts = w.parts[:4]
    rid = new_round(w, parts=parts)
    rnd = random.Random(3)
    values0 = [[rnd.randint(-2_000_000, 2_000_000) for _ in range(T)] for _ in range(3)] + [DROPPED_VALUES]
    first, _, _, _ = run_iteration(w, rid, 0, parts, values=values0)
    final = subs_for(w, rid, 1, parts[:3], seed=9)
    submit(w, rid, 1, final)
    past(w.chain, w.market.round_info(rid)["deadline"])
    w.market.advance(w.outsider, rid, [parts[3]])
    agg, _ = aggregate(w, rid, final)
    m, rho = w.key.opening(agg)
    sums, _ = w.market.conclude(w.coord, rid, agg, m, rho)
    assert sums == sums_of(final)
    past(w.chain, w.market.round_info(rid)["challenge_until"])
    return w, rid, parts, first, final


def test_dropped_participant_without_a_reveal_pays_nothing(dropped):
    w, rid, parts, first, final = dropped
    prices = w.market.prices(rid)
    values = [s["values"] for s in final] + [[0] * T]
    amounts, grid = settlement(values, prices, FLOOR, CAP, [0, 0, 0, STANDING["DroppedSilent"]])
    assert amounts == settlement(values[:3], prices, FLOOR, CAP)[0] + [0]  # the others trade as if it never was
    result = w.market.settle(w.outsider, rid, reveals(final) + [None])
    assert result.payments == {**{p.address: a for p, a in zip(parts, amounts)}, w.grid.address: grid}
    assert result.payments[parts[3].address] == 0 and sum(result.payments.values()) == 0
    assert w.market.balance(rid, parts[3]) == DEPOSIT


def test_dropped_participant_that_reveals_trades_its_last_commitment_with_the_grid(dropped):
    w, rid, parts, first, final = dropped
    prices = w.market.prices(rid)
    values = [s["values"] for s in final] + [DROPPED_VALUES]
    standing = [0, 0, 0, STANDING["DroppedRevealed"]]
    amounts, grid = settlement(values, prices, FLOOR, CAP, standing)
    # it buys 1.5 kWh at retail (the band's cap) and sells 0.7 kWh at feed-in (the band's floor)
    assert amounts[3] == (1_500_000 * CAP[0] - 700_000 * FLOOR[1]) * UNIT > 0
    assert amounts[:3] == settlement(values[:3], prices, FLOOR, CAP)[0]
    assert w.market.quote(rid, values) == (amounts, {w.grid.address: grid}, [])
    result = w.market.settle(w.outsider, rid, reveals(final) + [reveal(first[3])])
    assert result.payments == {**{p.address: a for p, a in zip(parts, amounts)}, w.grid.address: grid}
    assert sum(result.payments.values()) == 0
    assert w.market.balance(rid, parts[3]) == DEPOSIT - amounts[3]


def test_dropped_participant_must_open_its_last_commitment_or_reveal_nothing(dropped):
    w, rid, parts, first, final = dropped
    base = reveals(final)
    d = reveal(first[3])
    bad = {
        "other values": Reveal([v + 1 for v in d.values], d.salt, d.ciphertext_hash),
        "other salt": Reveal(d.values, secrets.token_bytes(32), d.ciphertext_hash),
        "other ciphertext": Reveal(d.values, d.salt, keccak(b"other")),
        "values without a salt": Reveal(d.values, b"\x00" * 32, d.ciphertext_hash),
    }
    for what, r in bad.items():
        err = assert_rejected(w, "CommitmentMismatch", lambda: w.market.settle(w.outsider, rid, base + [r]), rid)
        assert err.error_args == {"participant": parts[3].address}, what
    # "no reveal" is for the dropped only
    err = assert_rejected(w, "CommitmentMismatch",
                          lambda: w.market.settle(w.outsider, rid, base[:2] + [None, reveal(first[3])]), rid)
    assert err.error_args == {"participant": parts[2].address}
    # a survivor's reveal of iteration 0 (not its final commitment) does not open it
    err = assert_rejected(w, "CommitmentMismatch",
                          lambda: w.market.settle(w.outsider, rid, [reveal(first[0])] + base[1:] + [None]), rid)
    assert err.error_args == {"participant": parts[0].address}


def test_the_rule_sees_each_participants_standing(w):
    """ProbeRule bills [member index, reveal length, first price, standing]: participant 1 missed
    iteration 0 (no reveal: DroppedSilent), participant 3 missed iteration 1 (it reveals its
    iteration-0 commitment: DroppedRevealed); the sums of a keyless round do not apply."""
    parts = w.parts[:5]
    rid = new_round(w, keyless_params(w), parts=parts, prices=[7])
    first = keyless_subs(rid, 0, parts, [[10 * i + 1, 0] for i in range(5)])
    submit(w, rid, 0, [first[i] for i in (0, 2, 3, 4)])
    past(w.chain, w.market.round_info(rid)["deadline"])
    w.market.advance(w.outsider, rid, [parts[1]])
    w.market.publish(w.coord, rid, b"", None, None, [7])
    final = keyless_subs(rid, 1, parts, [[100 * i + 2, 0] for i in range(5)])
    submit(w, rid, 1, [final[i] for i in (0, 2, 4)])
    past(w.chain, w.market.round_info(rid)["deadline"])
    receipt = w.market.advance(w.outsider, rid, [parts[3]])
    assert [e["iteration"] for e in events(w, receipt, "Dropped")] == [1]
    w.market.conclude(w.coord, rid, b"", None, None)
    result = w.market.settle(w.outsider, rid, [reveal(final[0]), None, reveal(final[2]), reveal(first[3]),
                                               reveal(final[4])])
    assert [result.bills[p.address][3] for p in parts] == [STANDING[s] for s in (
        "Final", "DroppedSilent", "Final", "DroppedRevealed", "Final")]
    assert [result.payments[p.address] for p in parts] == [2, 0, 202, 31, 402]


# ----------------------------------------------------------------------------- chunked aggregation
def test_aggregation_in_chunks_gives_the_aggregate_of_one_call(w):
    rid = new_round(w, parts=w.parts)
    subs = subs_for(w, rid, 0, w.parts)
    submit(w, rid, 0, subs)
    snap = w.chain.snapshot()
    whole, _ = aggregate(w, rid, subs)
    w.chain.revert(snap)
    agg, receipts = aggregate_in_chunks(w, rid, subs, 2)
    assert agg == whole and int.from_bytes(agg, "big") == product(w.key, subs)
    progress = [events(w, r, "AggregationProgress") for r in receipts]
    assert [[(e["absorbed"], int.from_bytes(e["soFar"], "big")) for e in p] for p in progress] == \
        [[(2, product(w.key, subs[:2]))], [(4, product(w.key, subs[:4]))], []]
    assert events(w, receipts[-1], "Aggregated") == [{"roundId": rid, "iteration": 0, "aggregate": agg}]
    print("aggregation gas, 1024-bit key: chunks of 2:", [r["gasUsed"] for r in receipts])
    m, rho = w.key.opening(agg)
    sums, _ = w.market.publish(w.coord, rid, agg, m, rho, PRICES0)
    assert sums == sums_of(subs)


def test_market_wrapper_aggregates_in_chunks(w):
    subs = subs_for(w, w.rid, 0, w.parts[:3])
    submit(w, w.rid, 0, subs)
    agg, receipts = w.market.aggregate(w.outsider, w.rid, [s["ct"] for s in subs], [s["cm"] for s in subs], chunk=2)
    assert len(receipts) == 2 and int.from_bytes(agg, "big") == product(w.key, subs)


def test_chunk_with_a_wrong_product_so_far_is_rejected(w):
    rid = new_round(w, parts=w.parts)
    subs = subs_for(w, rid, 0, w.parts)
    submit(w, rid, 0, subs)
    f = w.market.contract.functions
    call = lambda so_far, part: lambda: w.chain.transact(  # noqa: E731
        f.aggregate(rid, so_far, [s["ct"] for s in part], [s["cm"] for s in part]), w.outsider)
    err = assert_rejected(w, "AggregateMismatch", call(subs[0]["ct"], subs[1:3]), rid)  # the first chunk has none
    assert err.error_args == {"roundId": rid, "iteration": 0}
    receipt = call(b"", subs[:2])()
    so_far = bytes(events(w, receipt, "AggregationProgress")[0]["soFar"])
    wrong = w.key.ct(int.from_bytes(so_far, "big") + 1)
    for bad in (wrong, b"", so_far[:-1], subs[0]["ct"]):
        err = assert_rejected(w, "AggregateMismatch", call(bad, subs[2:4]), rid)
        assert err.error_args == {"roundId": rid, "iteration": 0}
    assert_rejected(w, "SubmissionMismatch", call(so_far, subs[1:3]), rid)  # the chunk must go on from the cursor
    err = assert_rejected(w, "SubmissionCount", call(so_far, subs[2:5] + subs[:1]), rid)
    assert err.error_args == {"given": 6, "expected": 5}
    m, rho = w.key.opening(product(w.key, subs))
    err = assert_rejected(w, "NotAggregated",  # not yet the aggregate
                          lambda: w.market.publish(w.coord, rid, so_far, m, rho, PRICES0), rid)
    receipt = call(so_far, subs[2:])()
    assert int.from_bytes(events(w, receipt, "Aggregated")[0]["aggregate"], "big") == product(w.key, subs)


# ----------------------------------------------------------------------------- opening challenges
def challenge_steps(w, rid, k, key, agg, m, rho, steps=1, sender=None):
    """Challenges an opening to its end by direct calls of ``steps`` 256-bit steps; the receipts."""
    data, words, done, acc, receipts = published(key, agg, m, rho), key.nbytes // 32, 0, b"", []
    while done < words:
        receipts.append(challenge_call(w, rid, k, data, acc, steps, sender))
        done = min(words, done + steps)
        acc = accumulator(key, rho, done)
    return receipts


def test_honest_opening_challenged_to_its_end_is_confirmed_and_the_round_goes_on(w):
    subs, agg, m, rho = run_iteration(w, w.rid, 0, w.parts[:3])
    receipts = challenge_steps(w, w.rid, 0, w.key, agg, m, rho, steps=1)  # 4 transactions at 1024 bits
    assert len(receipts) == w.key.nbytes // 32
    assert events(w, receipts[0], "Challenged") == [{"roundId": w.rid, "iteration": 0, "challenger": w.outsider.address}]
    assert all(events(w, r, "OpeningConfirmed") == [] for r in receipts[:-1])
    assert events(w, receipts[-1], "OpeningConfirmed") == [{"roundId": w.rid, "iteration": 0}]
    info = w.market.round_info(w.rid)
    assert (info["phase"], info["iteration"], info["challenge_iteration_plus_one"]) == ("Iterating", 1, 0)
    gas = [r["gasUsed"] for r in receipts]
    assert max(gas) < TX_GAS_CAP
    print(f"challenge, 1024-bit key, Prague pricing: {sum(gas)} gas in {len(gas)} tx of one step {gas}")
    # the round goes on; its final opening is challenged with the wrapper (one transaction) and it settles
    final, agg, m, rho = run_iteration(w, w.rid, 1, w.parts[:3], last=True)
    held, receipts = w.market.challenge(w.parts[0], w.rid, 1, agg, m, rho)
    assert held and len(receipts) == 1 and receipts[0]["gasUsed"] < TX_GAS_CAP
    print(f"challenge, 1024-bit key, Prague pricing: {receipts[0]['gasUsed']} gas in one tx")
    past(w.chain, w.market.round_info(w.rid)["challenge_until"])
    result = w.market.settle(w.outsider, w.rid, reveals(final))
    assert sum(result.payments.values()) == 0


@pytest.mark.parametrize("lie", ["opening", "plaintext"])
def test_false_opening_challenged_closes_the_round_and_returns_every_deposit(w, lie):
    """The coordinator publishes the right plaintext with a wrong (canonical) rho, or a wrong
    plaintext with the right rho: publish takes either, a challenge disproves it."""
    subs = subs_for(w, w.rid, 0, w.parts[:3])
    submit(w, w.rid, 0, subs)
    agg, _ = aggregate(w, w.rid, subs)
    m, rho = w.key.opening(agg)
    m, rho = (m, rho - 1) if lie == "opening" else (m + 1, rho)
    sums, _ = w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0)  # accepted: openings are optimistic
    receipts = challenge_steps(w, w.rid, 0, w.key, agg, m, rho, steps=3, sender=w.parts[2])
    assert len(receipts) == 2
    assert events(w, receipts[-1], "OpeningConfirmed") == []
    assert events(w, receipts[-1], "OpeningDisproved") == [{"roundId": w.rid, "iteration": 0,
                                                            "challenger": w.parts[2].address}]
    assert max(r["gasUsed"] for r in receipts) < TX_GAS_CAP
    assert_rejected(w, "WrongPhase", lambda: challenge_steps(w, w.rid, 0, w.key, agg, m, rho, steps=4))
    assert_closed_and_refunded(w, w.rid, receipts[-1], "OpeningDisproved", w.parts[2], w.parts[:3] + [w.grid])


def test_false_final_opening_challenged_after_conclusion_closes_the_round(w):
    subs = subs_for(w, w.rid, 0, w.parts[:3])
    submit(w, w.rid, 0, subs)
    agg, _ = aggregate(w, w.rid, subs)
    m, rho = w.key.opening(agg)
    w.market.conclude(w.coord, w.rid, agg, m, rho + 1)
    held, receipts = w.market.challenge(w.outsider, w.rid, 0, agg, m, rho + 1)
    assert not held
    assert_rejected(w, "WrongPhase", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert_closed_and_refunded(w, w.rid, receipts[-1], "OpeningDisproved", w.outsider, w.parts[:3] + [w.grid])


def test_settlement_waits_for_the_challenge_window(w):
    final, agg, m, rho = run_iteration(w, w.rid, 0, w.parts[:3], last=True)
    until = w.market.round_info(w.rid)["challenge_until"]
    err = assert_rejected(w, "ChallengeWindowOpen", lambda: w.market.settle(w.outsider, w.rid, reveals(final)))
    assert err.error_args == {"until": until}
    past(w.chain, until - 1)
    assert_rejected(w, "ChallengeWindowOpen", lambda: w.market.settle(w.outsider, w.rid, reveals(final)))  # at `until`
    assert w.chain.block_number == until
    data = published(w.key, agg, m, rho)
    err = assert_rejected(w, "ChallengeWindowClosed", lambda: challenge_call(w, w.rid, 0, data, b"", 1))
    assert err.error_args == {"until": until}
    w.market.settle(w.outsider, w.rid, reveals(final))
    assert w.market.round_info(w.rid)["phase"] == "Settled"


def test_challenge_in_progress_holds_the_settlement_until_it_ends(w):
    final, agg, m, rho = run_iteration(w, w.rid, 0, w.parts[:3], last=True)
    data = published(w.key, agg, m, rho)
    challenge_call(w, w.rid, 0, data, b"", 1)  # started, one step of four
    assert w.market.round_info(w.rid)["challenge_iteration_plus_one"] == 1
    until = w.market.round_info(w.rid)["challenge_until"]
    past(w.chain, until)
    err = assert_rejected(w, "ChallengeInProgress", lambda: w.market.settle(w.outsider, w.rid, reveals(final)))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}
    receipt = challenge_call(w, w.rid, 0, data, accumulator(w.key, rho, 1), 3, w.coord)  # anyone may finish it
    assert events(w, receipt, "OpeningConfirmed") == [{"roundId": w.rid, "iteration": 0}]
    w.market.settle(w.outsider, w.rid, reveals(final))


def test_an_abandoned_challenge_is_void_one_window_later(w):
    """Starting a challenge at the end of the window and walking away cannot hold the round: the
    challenge may finish within one more window, after which the round settles and it cannot."""
    final, agg, m, rho = run_iteration(w, w.rid, 0, w.parts[:3], last=True)
    data = published(w.key, agg, m, rho)
    info = w.market.round_info(w.rid)
    past(w.chain, info["challenge_until"] - 2)
    challenge_call(w, w.rid, 0, data, b"", 1)  # the last block of the window, one step of four
    last = info["challenge_until"] + info["windows"].challenge
    past(w.chain, last)
    err = assert_rejected(w, "ChallengeWindowClosed",
                          lambda: challenge_call(w, w.rid, 0, data, accumulator(w.key, rho, 1), 3))
    assert err.error_args == {"until": last}
    w.market.settle(w.outsider, w.rid, reveals(final))
    assert w.market.round_info(w.rid)["phase"] == "Settled"


def test_challenge_of_something_else_than_the_published_opening_is_rejected(w):
    subs, agg, m, rho = run_iteration(w, w.rid, 0, w.parts[:3])
    good = published(w.key, agg, m, rho)
    nb = w.key.nbytes
    cases = {
        "another rho": published(w.key, agg, m, rho + 1),
        "another plaintext": published(w.key, agg, m + 1, rho),
        "another aggregate": published(w.key, w.key.ct(int.from_bytes(agg, "big") + 1), m, rho),
        "too short": good[:-32],
        "too long": good + bytes(32),
        "without the aggregate": good[2 * nb:],
    }
    for what, data in cases.items():
        err = assert_rejected(w, "ChallengeMismatch", lambda: challenge_call(w, w.rid, 0, data, b"", 1))
        assert err.error_args == {"roundId": w.rid, "iteration": 0}, what
    assert_rejected(w, "ChallengeMismatch", lambda: challenge_call(w, w.rid, 0, good, b"", 0))  # no steps
    assert_rejected(w, "ChallengeMismatch", lambda: challenge_call(w, w.rid, 1, good, b"", 1))  # not published yet
    assert_rejected(w, "ChallengeMismatch",  # a challenge starts from no accumulator
                    lambda: challenge_call(w, w.rid, 0, good, accumulator(w.key, rho, 1), 1))
    challenge_call(w, w.rid, 0, good, b"", 1)
    for what, acc in {"restart": b"", "wrong accumulator": accumulator(w.key, rho + 1, 1),
                      "accumulator of two steps": accumulator(w.key, rho, 2)}.items():
        err = assert_rejected(w, "ChallengeMismatch", lambda: challenge_call(w, w.rid, 0, good, acc, 1))
        assert err.error_args == {"roundId": w.rid, "iteration": 0}, what
    # one challenge at a time
    final, agg1, m1, rho1 = run_iteration(w, w.rid, 1, w.parts[:3], seed=1)
    err = assert_rejected(w, "ChallengeInProgress",
                          lambda: challenge_call(w, w.rid, 1, published(w.key, agg1, m1, rho1), b"", 1))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}
    receipt = challenge_call(w, w.rid, 0, good, accumulator(w.key, rho, 1), 8)
    assert events(w, receipt, "OpeningConfirmed")


# ----------------------------------------------------------------------------- rounds with dropout recovery
def test_round_with_recovery_shares_drops_recovers_and_corrects(w):
    """threshold = 2: start opens the sharing step; who does not share is dropped before any mask
    includes it; submissions carry the next mask point; the survivors' recovery partials close each
    iteration; publish removes the recovery's corrections (mod 2^B) from the decoded sums."""
    parts = w.parts[:4]
    rid = new_round(w, parts=parts, start=False, threshold=2)
    receipt = w.market.start(w.coord, rid, PRICES0)
    assert events(w, receipt, "PhaseChanged") == [{"roundId": rid, "from": PHASE["Registering"],
                                                   "to": PHASE["Sharing"]}]
    info = w.market.round_info(rid)
    assert (info["phase"], info["step"], info["threshold"]) == ("Sharing", "Submitting", 2)
    bad_points = {"none": b"", "short": POINT[:32], "prefix 04": b"\x04" + POINT[1:],
                  "x not on the curve": b"\x02" + (5).to_bytes(32, "big"),
                  "x not below p": b"\x02" + (secagg.P + 1).to_bytes(32, "big")}
    for what, material in bad_points.items():
        err = assert_rejected(w, "MaskPointInvalid", lambda: w.market.share_many([(parts[0], rid, material)]), rid)
        assert err.error_args == {"participant": parts[0].address}, what
    err = assert_rejected(w, "SharesLength", lambda: w.market.share_many([(parts[0], rid, POINT + bytes(24_000))]), rid)
    assert err.error_args == {"given": 24_033, "maximum": 24_000}
    assert_rejected(w, "NotRegistered", lambda: w.market.share_many([(w.outsider, rid, POINT)]), rid)
    receipts = w.market.share_many([(p, rid, POINT + b"sealed shares %d" % i) for i, p in enumerate(parts[:3])])
    assert events(w, receipts[0], "Shared") == [{"roundId": rid, "participant": parts[0].address,
                                                 "material": POINT + b"sealed shares 0"}]
    assert_rejected(w, "AlreadyShared", lambda: w.market.share_many([(parts[0], rid, POINT)]), rid)
    past(w.chain, w.market.round_info(rid)["deadline"])
    receipt = w.market.advance(w.outsider, rid, [parts[3]])
    assert events(w, receipt, "Dropped") == [{"roundId": rid, "iteration": 0, "participant": parts[3].address,
                                              "inMasks": False}]
    assert w.market.member(rid, parts[3])["dropped_before_plus_one"] == 1
    info = w.market.round_info(rid)
    assert (info["phase"], info["step"], info["active"], info["submissions"]) == ("Iterating", "Submitting", 3, 0)
    assert [w.market.member(rid, p)["shared"] for p in parts] == [True, True, True, False]

    # iteration 0: each value carries a self mask that the recovery removes (here: the corrections)
    rnd = random.Random(4)
    masks = [[rnd.randrange(1 << B) for _ in range(T)] for _ in range(3)]
    values = [[rnd.randint(-1_000_000, 1_000_000) for _ in range(T)] for _ in range(3)]
    subs = [submission(w.key, rid, 0, p, v, masks=mk) for p, v, mk in zip(parts, values, masks)]
    s = subs[0]
    for point in (b"", POINT[:-1]):
        assert_rejected(w, "MaskPointInvalid", lambda: w.market.submit(s["p"], rid, 0, s["ct"], s["cm"], b"", point),
                        rid)
    receipts = submit(w, rid, 0, subs, POINT)
    assert events(w, receipts[0], "MaskPoint") == [{"roundId": rid, "iteration": 1, "participant": parts[0].address,
                                                    "point": POINT}]
    info = w.market.round_info(rid)
    assert (info["step"], info["deadline"]) == ("Recovering", receipts[-1]["blockNumber"] + WINDOWS.recovery)
    assert w.market.coordinator_deadline(rid) == info["deadline"] + WINDOWS.coordinator
    err = assert_rejected(w, "DeadlineNotPassed", lambda: aggregate(w, rid, subs), rid)  # partials still due
    assert err.error_args == {"deadline": info["deadline"]}
    recover = lambda p, k=0, data=b"partials": lambda: w.market.recover_many([(p, rid, k, data)])  # noqa: E731
    assert_rejected(w, "SubmissionMissing", recover(parts[3]), rid)
    assert_rejected(w, "SubmissionMissing", recover(w.outsider), rid)
    assert_rejected(w, "WrongIteration", recover(parts[0], 1), rid)
    assert_rejected(w, "SharesLength", recover(parts[0], 0, bytes(24_001)), rid)
    receipts = w.market.recover_many([(p, rid, 0, b"partials %d" % i) for i, p in enumerate(parts[:3])])
    assert events(w, receipts[0], "Recovered") == [{"roundId": rid, "iteration": 0, "participant": parts[0].address,
                                                    "partials": b"partials 0"}]
    assert_rejected(w, "WrongStep", recover(parts[0]), rid)
    assert w.market.round_info(rid)["step"] == "Aggregating"
    agg, _ = aggregate(w, rid, subs)
    m, rho = w.key.opening(agg)
    err = assert_rejected(w, "CorrectionsLength", lambda: w.market.publish(w.coord, rid, agg, m, rho, PRICES0), rid)
    assert err.error_args == {"given": 0, "expected": T}
    corrections = [sum(mk[t] for mk in masks) % (1 << B) for t in range(T)]
    true_sums = [sum(v[t] for v in values) for t in range(T)]
    snap = w.chain.snapshot()
    masked, _ = w.market.publish(w.coord, rid, agg, m, rho, PRICES0, corrections=[0] * T)
    assert masked != true_sums
    w.chain.revert(snap)
    sums, receipt = w.market.publish(w.coord, rid, agg, m, rho, PRICES0, corrections=corrections)
    assert sums == true_sums
    assert list(events(w, receipt, "Published")[0]["corrections"]) == corrections

    # iteration 1: one survivor posts no partials; the coordinator goes on after the recovery deadline
    final = [submission(w.key, rid, 1, p, v) for p, v in zip(parts[:3], [[1, 2, 3], [4, 5, 6], [7, 8, 9]])]
    submit(w, rid, 1, final, POINT)
    w.market.recover_many([(p, rid, 1, b"partials") for p in parts[:2]])
    assert_rejected(w, "AlreadyRecovered", recover(parts[0], 1), rid)
    deadline = w.market.round_info(rid)["deadline"]
    assert_rejected(w, "DeadlineNotPassed", lambda: aggregate(w, rid, final), rid)
    past(w.chain, deadline)
    assert_rejected(w, "DeadlinePassed", recover(parts[2], 1), rid)
    agg, receipts = aggregate(w, rid, final)
    step = events(w, receipts[0], "StepChanged")
    assert step == [{"roundId": rid, "iteration": 1, "phase": PHASE["Iterating"], "step": STEP["Aggregating"],
                     "deadline": deadline + WINDOWS.coordinator}]
    m, rho = w.key.opening(agg)
    sums, _ = w.market.conclude(w.coord, rid, agg, m, rho, corrections=[0] * T)
    assert sums == [12, 15, 18]
    past(w.chain, w.market.round_info(rid)["challenge_until"])
    # dropped while sharing: it never committed, so it reveals nothing (whatever salt it shows)
    junk = Reveal([0] * T, secrets.token_bytes(32), keccak(b""))
    result = w.market.settle(w.outsider, rid, reveals(final) + [junk])
    assert result.payments[parts[3].address] == 0 and sum(result.payments.values()) == 0


def test_dropping_to_the_threshold_closes_the_round(w):
    rid = new_round(w, parts=w.parts[:4], threshold=3)
    w.market.share_many([(p, rid, POINT) for p in w.parts[:3]])
    past(w.chain, w.market.round_info(rid)["deadline"])
    receipt = w.market.advance(w.outsider, rid, [w.parts[3]])  # 3 left: enough for privacy, not above t = 3
    assert_closed_and_refunded(w, rid, receipt, "TooFewParticipants", w.outsider, w.parts[:4] + [w.grid])


# ----------------------------------------------------------------------------- gas
def test_submit_gas_with_the_ciphertext_checks(w):
    """What a submission costs with and without a key: the keyed one pays for the ciphertext's
    bytes, its range and residue checks (c mod n: one MODEXP with exponent 1) and the slot that
    remembers it (for CiphertextRepeated). Printed; bounded loosely."""
    keyless = new_round(w, keyless_params(w), parts=w.parts[:3], prices=[7])
    (plain,) = submit(w, keyless, 0, keyless_subs(keyless, 0, w.parts[:1], [[1, 2]]))
    (keyed,) = submit(w, w.rid, 0, subs_for(w, w.rid, 0, w.parts[:1]))
    big = keygen(2048)
    rid = new_round(w, parts=w.parts[:3], n=big.n)
    (keyed2048,) = submit(w, rid, 0, subs_for(w, rid, 0, w.parts[:1], key=big))
    gas = {"no key": plain["gasUsed"], "1024-bit key": keyed["gasUsed"], "2048-bit key": keyed2048["gasUsed"]}
    print("submit gas (not the last of an iteration), Prague pricing:", gas,
          "difference 1024-bit - no key:", gas["1024-bit key"] - gas["no key"])
    assert gas["no key"] < gas["1024-bit key"] < gas["2048-bit key"] < 120_000, gas
