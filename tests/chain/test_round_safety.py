"""The round contract's safety against hostile or absent parties, on the embedded chain (Prague
rules): hostile ciphertexts and replays, registrations; deadlines, dropouts (another attempt
without them) and cancellation; settlement with dropped participants; chunked aggregation;
optimistic openings and their challenges. Every rejection is checked to name its custom error and
to change nothing. The attacks of issue 15 (disputes, the blame step, forfeits) are in
test_attacks.py."""
from __future__ import annotations

import dataclasses
import random
import secrets

import pytest
from eth_utils import keccak

from offchain.chain.market import Reveal, RoundParams, Windows, aggregate_key
from offchain.mechanisms.tariff.market import settlement

from .helpers import (CLOSE, DROP, PHASE, STANDING, STEP, TX_GAS_CAP, UINT64_MAX, Crew, aggregate, assert_rejected,
                      commit, deploy_env, events, fund, keygen, open_round, past, past_challenge_window, product,
                      reveal_all, reveals, submit, sums_of)

T, B, W = 3, 40, 48
FLOOR = [50_000, 60_000, 40_000]
CAP = [300_000, 280_000, 320_000]
PRICES0 = [100_000] * T
UNIT = 10**6
DEPOSIT = 10**24
WINDOWS = Windows(registration=40, submission=30, coordinator=40, challenge=10)
KEYLESS = dataclasses.replace(WINDOWS, challenge=0)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env():
    e = deploy_env(parts=5, more=8)
    e.key = keygen(1024)
    e.params = RoundParams(rule=e.tariff, slots=T, max_iterations=3, price_floor=FLOOR, price_cap=CAP,
                           grid_account=e.grid.address, n=e.key.n, slot_bits=B, slot_width=W, collateral=DEPOSIT,
                           windows=WINDOWS)
    e.rid, e.crew = open_round(e, e.params, e.parts[:3], e.key, deposit=DEPOSIT, prices=PRICES0)  # the main round
    return e


def new_round(e, p: RoundParams | None = None, parts=(), start=True, deposit=DEPOSIT, prices=PRICES0, **change):
    """A round of ``parts`` (registration order) with deposits of each and of the grid account,
    started unless ``start`` is False; ``change`` alters the main round's parameters. The round
    and its crew."""
    p = dataclasses.replace(p or e.params, **change)
    return open_round(e, p, parts, e.key, deposit=deposit, prices=prices if start else None)


def values_for(k: int, n: int, seed: int = 0) -> list[list[int]]:
    rnd = random.Random(seed * 100 + k)
    return [[rnd.randint(-2_000_000, 2_000_000) for _ in range(T)] for _ in range(n)]


def run_iteration(e, rid, crew, k, last=False, values=None, seed=0, attempt=0):
    """Iteration ``k`` of the crew's active participants: submitted, aggregated, published (or
    concluded); the submissions, the aggregate and its opening."""
    subs = crew.submissions(k, values or values_for(k, len(crew.parts), seed), attempt)
    submit(e, subs, rid)
    agg, _ = aggregate(e, subs, rid)
    m, rho = e.key.opening(agg)
    if last:
        e.market.conclude(e.coord, rid, agg, m, rho)
    else:
        e.market.publish(e.coord, rid, agg, m, rho, PRICES0)
    return subs, agg, m, rho


def aggregate_in_chunks(e, rid, subs, chunk):
    """The submissions multiplied in chunks of ``chunk`` by direct calls (each passing on the
    AggregationProgress product); the aggregate and the receipts."""
    f = e.market.contract.functions
    so_far, receipts = b"", []
    for i in range(0, len(subs), chunk):
        part = subs[i:i + chunk]
        receipt = e.chain.transact(f.aggregate(rid, so_far, [s.ct for s in part], [s.cm for s in part]), e.outsider)
        receipts.append(receipt)
        done = events(e, receipt, "Aggregated")
        so_far = bytes(done[0]["aggregate"] if done else events(e, receipt, "AggregationProgress")[0]["soFar"])
    return so_far, receipts


def published(key, agg: bytes, m: int, rho: int) -> bytes:
    return bytes(agg) + key.word(m) + key.word(rho)


def accumulator(key, rho: int, done: int) -> bytes:
    """The challenge's accumulator after ``done`` 256-bit steps: rho^(n's top ``done`` words) mod n^2."""
    words = key.nbytes // 32
    return pow(rho, key.n >> (256 * (words - done)), key.nsq).to_bytes(2 * key.nbytes, "big")


def challenge_call(e, rid, key_id, data: bytes, acc: bytes, steps: int, sender=None):
    return e.chain.transact(e.market.contract.functions.challengeOpening(rid, key_id, data, acc, steps),
                            sender or e.outsider)


def challenge_steps(w, rid, key_id, key, agg, m, rho, steps=1, sender=None):
    """Challenges an opening to its end by direct calls of ``steps`` 256-bit steps; the receipts."""
    data, words, done, acc, receipts = published(key, agg, m, rho), key.nbytes // 32, 0, b"", []
    while done < words:
        receipts.append(challenge_call(w, rid, key_id, data, acc, steps, sender))
        done = min(words, done + steps)
        acc = accumulator(key, rho, done)
    return receipts


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


def keyless_params(w, **change) -> RoundParams:
    return RoundParams(rule=w.probe, slots=2, max_iterations=3, price_floor=[1], price_cap=[100],
                       grid_account=w.grid.address, windows=KEYLESS, **change)


# ----------------------------------------------------------------------------- hostile submissions
def test_ciphertext_one_is_rejected(w):
    """c = 1 is the encryption of 0 with randomness 1: no randomness, and none of the participant's
    masks (the others' would no longer cancel in the sum)."""
    s = dataclasses.replace(w.crew.seal(0, 0, [1, 2, 3]), ct=w.key.ct(1))
    err = assert_rejected(w, "CiphertextIsOne", lambda: submit(w, [s]))
    assert err.error_args == {"participant": s.p.address}


@pytest.mark.parametrize("multiple", [1, 2, "largest"])
def test_ciphertext_that_is_a_multiple_of_n_is_rejected(w, multiple):
    """Multiples of n are no units mod n^2: one of them in the product makes every later
    decryption of the round junk."""
    k = w.key.n - 1 if multiple == "largest" else multiple
    s = dataclasses.replace(w.crew.seal(0, 0, [1, 2, 3]), ct=w.key.ct(k * w.key.n))
    err = assert_rejected(w, "CiphertextMultipleOfN", lambda: submit(w, [s]))
    assert err.error_args == {"participant": s.p.address}


def test_ciphertexts_just_off_the_refused_values_are_accepted(w):
    """The checks refuse exactly 1 and the multiples of n: n + 1 (an encryption of 1) and 2 pass."""
    subs = w.crew.submissions(0, values_for(0, 3))
    submit(w, [dataclasses.replace(subs[0], ct=w.key.ct(w.key.n + 1)), dataclasses.replace(subs[1], ct=w.key.ct(2))])
    assert w.market.round_info(w.rid)["submissions"] == 2


def test_a_replayed_ciphertext_is_taken_but_its_stale_masks_do_not_cancel(w):
    """A ciphertext of iteration 0 (one's own or another's) sent again in iteration 1 passes every
    check of a submission, but its masks are iteration 0's: the check slot shows it."""
    first, _, _, _ = run_iteration(w, w.rid, w.crew, 0)
    again = w.crew.submissions(1, values_for(1, 3))
    again[2] = dataclasses.replace(again[2], ct=first[0].ct)
    submit(w, again)
    agg, _ = aggregate(w, again)
    m, rho = w.key.opening(agg)
    check = w.crew.layout.unpack(m)[1]
    assert check != 0
    err = assert_rejected(w, "MasksDoNotCancel", lambda: w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0))
    assert err.error_args == {"roundId": w.rid, "iteration": 1, "check": check}


def test_non_canonical_openings_are_rejected_at_publish(w):
    """rho + n is an opening as good as rho (the same rho^n mod n^2), rho = 0 none at all: publish
    takes only 0 < rho < n, so that each aggregate has one opening. A 1000-bit key leaves room for
    rho + n in the modulus' 128 bytes."""
    key = keygen(1000)
    assert key.nbytes == 128
    rid, crew = open_round(w, dataclasses.replace(w.params, n=key.n), w.parts[:3], key, deposit=DEPOSIT,
                           prices=PRICES0)
    subs = crew.submissions(0, values_for(0, 3))
    submit(w, subs, rid)
    agg, _ = aggregate(w, subs, rid)
    m, rho = key.opening(agg)
    assert key.public.verify_opening(int.from_bytes(agg, "big"), m, rho)
    assert (1 + m * key.n) * pow(rho + key.n, key.n, key.nsq) % key.nsq == int.from_bytes(agg, "big")
    for bad in (rho + key.n, 0, key.n):
        for call in (lambda: w.market.publish(w.coord, rid, agg, m, bad, PRICES0),
                     lambda: w.market.conclude(w.coord, rid, agg, m, bad),
                     lambda: w.market.dispute(w.coord, rid, agg, m, bad)):
            err = assert_rejected(w, "OpeningNotCanonical", call, rid)
            assert err.error_args == {"roundId": rid, "iteration": 0}
    w.market.publish(w.coord, rid, agg, m, rho, PRICES0)
    # a modulus that does not fill its top word is challenged like any other
    held, _ = w.market.challenge(w.outsider, rid, aggregate_key(0, 0), agg, m, rho)
    assert held


# ----------------------------------------------------------------------------- membership
def test_outsider_cannot_register_in_an_allow_list_round(w):
    rid, crew = new_round(w, start=False, deposit=0, members=[p.address for p in w.parts[:3]])
    keys = Crew(w.market, rid, [w.outsider, w.parts[0]], w.key).keys
    err = assert_rejected(w, "NotMember", lambda: w.market.register(w.outsider, rid, keys(0)), rid)
    assert err.error_args == {"account": w.outsider.address}
    err = assert_rejected(w, "BadSignature", lambda: w.market.register_many(  # no signatures in allow-list rounds
        [(w.parts[0], rid, keys(1), 0, w.market.member_signature(w.coord, rid, w.parts[0], 0))]), rid)
    assert err.error_args == {"account": w.parts[0].address}


def signed_round(w, p=None, parts=()):
    """A round with signed membership (not started); ``parts`` only name the crew's order."""
    rid, _ = new_round(w, p, start=False, deposit=0, signed_members=True)
    return rid, Crew(w.market, rid, list(parts) or w.parts[:3], w.key if (p or w.params).n else None)


def test_signed_membership_needs_the_creators_signature(w):
    rid, crew = signed_round(w)
    assert w.market.round_info(rid)["signed_members"] is True
    p, keys, sig = w.parts[0], crew.keys(0), lambda *a: w.market.member_signature(*a)
    err = assert_rejected(w, "BadSignature", lambda: w.market.register(p, rid, keys), rid)
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
                              lambda: w.market.register_many([(p, rid, keys, index, signature)]), rid)
        assert err.error_args == {"account": p.address}, what
    receipt = w.market.register_many([(p, rid, keys, 4, sig(w.coord, rid, p, 4))])[0]
    assert events(w, receipt, "Registered") == [{"roundId": rid, "participant": p.address, "position": 1,
                                                 "keys": keys}]
    m = w.market.member(rid, p)
    assert (m["position"], m["member_index_plus_one"]) == (1, 5)
    # the signature admits its account once
    assert_rejected(w, "AlreadyRegistered",
                    lambda: w.market.register_many([(p, rid, keys, 4, sig(w.coord, rid, p, 4))]), rid)


@pytest.mark.parametrize("indices", [[7, 0, 300], [0, 1, 65535]], ids=["any order", "the largest index"])
def test_signed_member_indices_reach_the_rule(w, indices):
    order = w.parts[:3]
    rid, crew = signed_round(w, keyless_params(w), order)
    w.market.register_many([(p, rid, crew.keys(i), idx, w.market.member_signature(w.coord, rid, p, idx))
                            for i, (p, idx) in enumerate(zip(order, indices))])
    fund(w, rid, order + [w.grid], DEPOSIT)
    w.market.start(w.coord, rid, [7])
    assert [b[0] for b in w.market.quote(rid, [[0, 0]] * 3)[2]] == indices
    subs = [commit(rid, 0, p, v) for p, v in zip(order, [[1, 0], [2, 0], [3, 0]])]
    submit(w, subs, rid)
    w.market.conclude(w.coord, rid, b"", None, None)
    reveal_all(w, subs, rid)
    result = w.market.settle(w.outsider, rid, reveals(subs))
    assert [result.bills[p.address][0] for p in order] == indices


# ----------------------------------------------------------------------------- deadlines
def test_submission_after_the_deadline_is_rejected(w):
    deadline = w.market.round_info(w.rid)["deadline"]
    subs = w.crew.submissions(0, values_for(0, 3))
    past(w.chain, deadline - 1)
    submit(w, subs[:1])  # in the deadline's block: on time
    err = assert_rejected(w, "DeadlinePassed", lambda: submit(w, subs[1:2]))
    assert err.error_args == {"deadline": deadline}


def test_advance_before_the_deadline_or_while_aggregating_is_rejected(w):
    deadline = w.market.round_info(w.rid)["deadline"]
    subs = w.crew.submissions(0, values_for(0, 3))
    submit(w, subs[:2])
    err = assert_rejected(w, "DeadlineNotPassed", lambda: w.market.advance(w.outsider, w.rid, [w.parts[2]]))
    assert err.error_args == {"deadline": deadline}
    past(w.chain, deadline - 3)
    assert_rejected(w, "DeadlineNotPassed", lambda: w.market.advance(w.outsider, w.rid, [w.parts[2]]))
    submit(w, subs[2:])
    past(w.chain, w.market.round_info(w.rid)["deadline"])
    err = assert_rejected(w, "WrongStep", lambda: w.market.advance(w.outsider, w.rid, []))  # the coordinator's turn
    assert err.error_args == {"roundId": w.rid, "current": STEP["Aggregating"], "expected": STEP["Submitting"]}


@pytest.fixture
def late(w):
    """A round of five where participants 1 and 2 miss attempt 0 of iteration 0."""
    rid, crew = new_round(w, parts=w.parts)
    subs = crew.submissions(0, values_for(0, 5))
    submit(w, [subs[i] for i in (0, 3, 4)], rid)
    past(w.chain, w.market.round_info(rid)["deadline"])
    return w, rid, crew, subs


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
    w, rid, _, _ = late
    who = lambda x: {"outsider": w.outsider, "grid": w.grid}.get(x) or w.parts[x]  # noqa: E731
    err = assert_rejected(w, error, lambda: w.market.advance(w.outsider, rid, [who(x) for x in missing]), rid)
    assert err.error_args == (args if isinstance(args, dict) else {"participant": who(args).address}), case


def test_advance_drops_the_missing_and_the_others_submit_again_masked_among_themselves(late):
    w, rid, crew, subs = late
    receipt = w.market.advance(w.outsider, rid, [w.parts[1], w.parts[2]])  # anyone may call it
    assert events(w, receipt, "Dropped") == [
        {"roundId": rid, "iteration": 0, "participant": w.parts[i].address, "reason": DROP["MissedSubmission"]}
        for i in (1, 2)]
    block = receipt["blockNumber"]
    assert events(w, receipt, "StepChanged") == [{"roundId": rid, "iteration": 0, "phase": PHASE["Iterating"],
                                                  "step": STEP["Submitting"], "attempt": 1,
                                                  "deadline": block + WINDOWS.submission}]
    info = w.market.round_info(rid)
    assert (info["participant_count"], info["active"], info["submissions"], info["step"], info["attempt"]) == \
        (5, 3, 0, "Submitting", 1)
    assert [w.market.member(rid, p)["dropped_before_plus_one"] for p in w.parts] == [0, 1, 1, 0, 0]
    err = assert_rejected(w, "DeadlineNotPassed", lambda: w.market.advance(w.outsider, rid, []), rid)
    assert err.error_args == {"deadline": block + WINDOWS.submission}
    late_sub = crew.seal(1, 0, [1, 2, 3], attempt=1)
    err = assert_rejected(w, "NotActive", lambda: submit(w, [late_sub], rid), rid)
    assert err.error_args == {"participant": w.parts[1].address}
    crew.drop(w.parts[1], w.parts[2])
    kept = crew.submissions(0, values_for(0, 5, seed=1), attempt=1)
    receipts = submit(w, kept, rid)
    assert [e["attempt"] for e in events(w, receipts, "Submitted")] == [1, 1, 1]
    assert events(w, receipts[-1], "StepChanged")[0]["step"] == STEP["Aggregating"]
    assert_rejected(w, "WrongStep", lambda: submit(w, kept[:1], rid), rid)
    old = [subs[i] for i in (0, 3, 4)]  # attempt 0's ciphertexts are not the attempt's
    assert_rejected(w, "SubmissionMismatch", lambda: aggregate(w, old, rid), rid)
    agg, _ = aggregate_in_chunks(w, rid, kept, 1)  # the chunks skip the dropped
    assert int.from_bytes(agg, "big") == product(w.key, kept)
    m, rho = w.key.opening(agg)
    sums, _ = w.market.publish(w.coord, rid, agg, m, rho, PRICES0)  # the masks of the three cancel
    assert sums == sums_of(kept, T)
    # the next iteration needs the three that stayed only
    receipts = submit(w, crew.submissions(1, values_for(1, 5)), rid)
    assert events(w, receipts[-1], "StepChanged")[0]["step"] == STEP["Aggregating"]


def test_a_second_attempt_of_an_iteration_takes_one_submission_each(late):
    w, rid, crew, subs = late
    w.market.advance(w.outsider, rid, [w.parts[1], w.parts[2]])
    crew.drop(w.parts[1], w.parts[2])
    s = crew.seal(0, 0, [1, 2, 3], attempt=1)
    submit(w, [s], rid)
    err = assert_rejected(w, "AlreadySubmitted", lambda: submit(w, [s], rid), rid)
    assert err.error_args == {"participant": w.parts[0].address, "iteration": 0}
    m = w.market.member(rid, w.parts[0])
    assert (m["submitted_iteration_plus_one"], m["submitted_attempt"]) == (1, 1)


def test_dropping_below_three_closes_the_round_and_returns_every_deposit(w):
    submit(w, w.crew.submissions(0, values_for(0, 3))[:2])
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
    rid, _ = new_round(w, parts=w.parts[:3], start=False)
    late = w.market.coordinator_deadline(rid)
    assert late == w.market.round_info(rid)["deadline"] + WINDOWS.coordinator
    past(w.chain, late - 2)
    err = assert_rejected(w, "DeadlineNotPassed", lambda: w.market.cancel(w.outsider, rid), rid)
    assert err.error_args == {"deadline": late}


def test_coordinator_that_does_not_start_lets_anyone_cancel(w):
    rid, _ = new_round(w, parts=w.parts[:3], start=False)
    late = w.market.coordinator_deadline(rid)
    past(w.chain, late)
    err = assert_rejected(w, "DeadlinePassed", lambda: w.market.start(w.coord, rid, PRICES0), rid)
    assert err.error_args == {"deadline": late}
    receipt = w.market.cancel(w.outsider, rid)
    assert events(w, receipt, "PhaseChanged") == [{"roundId": rid, "from": PHASE["Registering"],
                                                   "to": PHASE["Closed"]}]
    assert w.market.blamed(receipt) == {w.coord.address: (0, "CoordinatorLate")}  # no bond in this round
    assert_closed_and_refunded(w, rid, receipt, "CoordinatorLate", w.outsider, w.parts[:3] + [w.grid])


def test_coordinator_that_does_not_publish_lets_anyone_cancel(w):
    subs = w.crew.submissions(0, values_for(0, 3))
    receipts = submit(w, subs)
    agg, _ = aggregate(w, subs)
    late = w.market.coordinator_deadline(w.rid)
    assert late == receipts[-1]["blockNumber"] + WINDOWS.coordinator
    m, rho = w.key.opening(agg)
    past(w.chain, late)
    for call in (lambda: w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0),
                 lambda: w.market.conclude(w.coord, w.rid, agg, m, rho),
                 lambda: w.market.dispute(w.coord, w.rid, agg, m, rho + 1)):
        err = assert_rejected(w, "DeadlinePassed", call)
        assert err.error_args == {"deadline": late}
    receipt = w.market.cancel(w.parts[1], w.rid)
    assert_closed_and_refunded(w, w.rid, receipt, "CoordinatorLate", w.parts[1], w.parts[:3] + [w.grid])


def test_a_concluded_round_nobody_settles_may_be_cancelled(w):
    subs, agg, m, rho = run_iteration(w, w.rid, w.crew, 0, last=True)
    info = w.market.round_info(w.rid)
    late = w.market.coordinator_deadline(w.rid)
    assert late == info["reveal_until"] + WINDOWS.coordinator
    past(w.chain, late - 2)
    assert_rejected(w, "DeadlineNotPassed", lambda: w.market.cancel(w.outsider, w.rid))
    past(w.chain, late)
    receipt = w.market.cancel(w.outsider, w.rid)
    assert events(w, receipt, "PhaseChanged") == [{"roundId": w.rid, "from": PHASE["Concluded"],
                                                   "to": PHASE["Closed"]}]
    assert w.market.blamed(receipt) == {}  # anyone could have settled: nobody is named
    assert_rejected(w, "WrongPhase", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert_closed_and_refunded(w, w.rid, receipt, "NotSettled", w.outsider, w.parts[:3] + [w.grid])


# ----------------------------------------------------------------------------- settlement with dropouts (TariffRule)
DROPPED_VALUES = [1_500_000, -700_000, 0]  # what participant 3 last committed: a purchase, a sale, nothing


@pytest.fixture
def dropped(w):
    """A tariff round of four where participant 3 takes part in iteration 0 and misses iteration 1,
    which the three others conclude in its second attempt; the challenge window is over."""
    parts = w.parts[:4]
    rid, crew = new_round(w, parts=parts)
    values0 = values_for(0, 3, seed=3) + [DROPPED_VALUES]
    first, _, _, _ = run_iteration(w, rid, crew, 0, values=values0)
    submit(w, crew.submissions(1, values_for(1, 4, seed=9))[:3], rid)
    past(w.chain, w.market.round_info(rid)["deadline"])
    w.market.advance(w.outsider, rid, [parts[3]])
    crew.drop(parts[3])
    final, _, _, _ = run_iteration(w, rid, crew, 1, last=True, seed=9, attempt=1)
    assert w.market.final_sums(rid) == sums_of(final, T)
    past_challenge_window(w, rid)
    reveal_all(w, final, rid)
    return w, rid, parts, first, final


def test_dropped_participant_without_a_reveal_pays_nothing(dropped):
    w, rid, parts, first, final = dropped
    prices = w.market.prices(rid)
    values = [s.values for s in final] + [[0] * T]
    amounts, grid = settlement(values, prices, FLOOR, CAP, [0, 0, 0, STANDING["DroppedSilent"]])
    assert amounts == settlement(values[:3], prices, FLOOR, CAP)[0] + [0]  # the others trade as if it never was
    past(w.chain, w.market.round_info(rid)["reveal_until"])  # it may reveal until then
    result = w.market.settle(w.outsider, rid, reveals(final) + [None])
    assert result.payments == {**{p.address: a for p, a in zip(parts, amounts)}, w.grid.address: grid}
    assert result.payments[parts[3].address] == 0 and sum(result.payments.values()) == 0
    assert w.market.balance(rid, parts[3]) == DEPOSIT and w.market.blamed(result.receipt) == {}


def test_dropped_participant_that_reveals_trades_its_last_commitment_with_the_grid(dropped):
    w, rid, parts, first, final = dropped
    prices = w.market.prices(rid)
    values = [s.values for s in final] + [DROPPED_VALUES]
    standing = [0, 0, 0, STANDING["DroppedRevealed"]]
    amounts, grid = settlement(values, prices, FLOOR, CAP, standing)
    # it buys 1.5 kWh at retail (the band's cap) and sells 0.7 kWh at feed-in (the band's floor)
    assert amounts[3] == (1_500_000 * CAP[0] - 700_000 * FLOOR[1]) * UNIT > 0
    assert amounts[:3] == settlement(values[:3], prices, FLOOR, CAP)[0]
    assert w.market.quote(rid, values) == (amounts, {w.grid.address: grid}, [])
    reveal_all(w, first[3:], rid)  # the settlement goes on as soon as it revealed: every reveal is in
    result = w.market.settle(w.outsider, rid, reveals(final) + [first[3].reveal()])
    assert result.payments == {**{p.address: a for p, a in zip(parts, amounts)}, w.grid.address: grid}
    assert sum(result.payments.values()) == 0
    assert w.market.balance(rid, parts[3]) == DEPOSIT - amounts[3]


def test_dropped_participant_must_open_its_last_commitment_or_reveal_nothing(dropped):
    w, rid, parts, first, final = dropped
    d = first[3]
    bad = {
        "other values": Reveal([v + 1 for v in d.values], d.salt, keccak(d.ct)),
        "other salt": Reveal(d.values, secrets.token_bytes(32), keccak(d.ct)),
        "other ciphertext": Reveal(d.values, d.salt, keccak(b"other")),
        "values without a salt": Reveal(d.values, b"\x00" * 32, keccak(d.ct)),
    }
    for what, r in bad.items():
        err = assert_rejected(w, "CommitmentMismatch", lambda: w.market.reveal_many([(parts[3], rid, r)]), rid)
        assert err.error_args == {"participant": parts[3].address}, what
    # the settlement takes no reveal for it but the one it made: none
    past(w.chain, w.market.round_info(rid)["reveal_until"])
    err = assert_rejected(w, "RevealMismatch", lambda: w.market.settle(w.outsider, rid, reveals(final) + [d.reveal()]),
                          rid)
    assert err.error_args == {"participant": parts[3].address}


def test_a_survivor_reveals_its_final_commitment_only(w):
    """A participant's reveal opens the commitment of its last accepted submission: after two
    iterations, that of iteration 1."""
    first, _, _, _ = run_iteration(w, w.rid, w.crew, 0)
    final, _, _, _ = run_iteration(w, w.rid, w.crew, 1, last=True)
    past_challenge_window(w)
    err = assert_rejected(w, "CommitmentMismatch", lambda: reveal_all(w, first[:1]))
    assert err.error_args == {"participant": w.parts[0].address}
    reveal_all(w, final)


def test_the_rule_sees_each_participants_standing(w):
    """ProbeRule bills [member index, reveal length, first price, standing]: participant 1 missed
    iteration 0 (nothing to reveal: DroppedSilent), participant 3 missed iteration 1 (it reveals its
    iteration-0 commitment: DroppedRevealed); the sums of a keyless round do not apply."""
    parts = w.parts[:5]
    rid, crew = new_round(w, keyless_params(w), parts=parts, prices=[7])
    first = [commit(rid, 0, p, [10 * i + 1, 0]) for i, p in enumerate(parts)]
    submit(w, [first[i] for i in (0, 2, 3, 4)], rid)
    past(w.chain, w.market.round_info(rid)["deadline"])
    w.market.advance(w.outsider, rid, [parts[1]])
    first = [commit(rid, 0, p, [10 * i + 1, 0]) for i, p in enumerate(parts)]  # attempt 1, without participant 1
    submit(w, [first[i] for i in (0, 2, 3, 4)], rid)
    w.market.publish(w.coord, rid, b"", None, None, [7])
    final = [commit(rid, 1, p, [100 * i + 2, 0]) for i, p in enumerate(parts)]
    submit(w, [final[i] for i in (0, 2, 4)], rid)
    past(w.chain, w.market.round_info(rid)["deadline"])
    receipt = w.market.advance(w.outsider, rid, [parts[3]])
    assert [e["iteration"] for e in events(w, receipt, "Dropped")] == [1]
    final = [commit(rid, 1, p, [100 * i + 2, 0]) for i, p in enumerate(parts)]
    submit(w, [final[i] for i in (0, 2, 4)], rid)
    w.market.conclude(w.coord, rid, b"", None, None)
    err = assert_rejected(w, "NothingToReveal", lambda: reveal_all(w, [final[1]], rid), rid)
    assert err.error_args == {"participant": parts[1].address}
    reveal_all(w, [final[0], final[2], first[3], final[4]], rid)
    result = w.market.settle(w.outsider, rid, [final[0].reveal(), None, final[2].reveal(), first[3].reveal(),
                                               final[4].reveal()])
    assert [result.bills[p.address][3] for p in parts] == [STANDING[s] for s in (
        "Final", "DroppedSilent", "Final", "DroppedRevealed", "Final")]
    assert [result.payments[p.address] for p in parts] == [2, 0, 202, 31, 402]


# ----------------------------------------------------------------------------- chunked aggregation
def test_aggregation_in_chunks_gives_the_aggregate_of_one_call(w):
    rid, crew = new_round(w, parts=w.parts)
    subs = crew.submissions(0, values_for(0, 5))
    submit(w, subs, rid)
    snap = w.chain.snapshot()
    whole, _ = aggregate(w, subs, rid)
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
    assert sums == sums_of(subs, T)


def test_market_wrapper_aggregates_in_chunks(w):
    subs = w.crew.submissions(0, values_for(0, 3))
    submit(w, subs)
    agg, receipts = w.market.aggregate(w.outsider, w.rid, [s.ct for s in subs], [s.cm for s in subs], chunk=2)
    assert len(receipts) == 2 and int.from_bytes(agg, "big") == product(w.key, subs)


def test_chunk_with_a_wrong_product_so_far_is_rejected(w):
    rid, crew = new_round(w, parts=w.parts)
    subs = crew.submissions(0, values_for(0, 5))
    submit(w, subs, rid)
    f = w.market.contract.functions
    call = lambda so_far, part: lambda: w.chain.transact(  # noqa: E731
        f.aggregate(rid, so_far, [s.ct for s in part], [s.cm for s in part]), w.outsider)
    err = assert_rejected(w, "AggregateMismatch", call(subs[0].ct, subs[1:3]), rid)  # the first chunk has none
    assert err.error_args == {"roundId": rid, "iteration": 0}
    receipt = call(b"", subs[:2])()
    so_far = bytes(events(w, receipt, "AggregationProgress")[0]["soFar"])
    wrong = w.key.ct(int.from_bytes(so_far, "big") + 1)
    for bad in (wrong, b"", so_far[:-1], subs[0].ct):
        err = assert_rejected(w, "AggregateMismatch", call(bad, subs[2:4]), rid)
        assert err.error_args == {"roundId": rid, "iteration": 0}
    assert_rejected(w, "SubmissionMismatch", call(so_far, subs[1:3]), rid)  # the chunk must go on from the cursor
    err = assert_rejected(w, "SubmissionCount", call(so_far, subs[2:5] + subs[:1]), rid)
    assert err.error_args == {"given": 6, "expected": 5}
    m, rho = w.key.opening(product(w.key, subs))
    assert_rejected(w, "NotAggregated",  # not yet the aggregate
                    lambda: w.market.publish(w.coord, rid, so_far, m, rho, PRICES0), rid)
    receipt = call(so_far, subs[2:])()
    assert int.from_bytes(events(w, receipt, "Aggregated")[0]["aggregate"], "big") == product(w.key, subs)


# ----------------------------------------------------------------------------- opening challenges
def test_honest_opening_challenged_to_its_end_is_confirmed_and_the_round_goes_on(w):
    subs, agg, m, rho = run_iteration(w, w.rid, w.crew, 0)
    key0 = aggregate_key(0, 0)
    receipts = challenge_steps(w, w.rid, key0, w.key, agg, m, rho, steps=1)  # 4 transactions at 1024 bits
    assert len(receipts) == w.key.nbytes // 32
    assert events(w, receipts[0], "Challenged") == [{"roundId": w.rid, "key": key0, "challenger": w.outsider.address}]
    assert all(events(w, r, "OpeningConfirmed") == [] for r in receipts[:-1])
    assert events(w, receipts[-1], "OpeningConfirmed") == [{"roundId": w.rid, "key": key0}]
    info = w.market.round_info(w.rid)
    assert (info["phase"], info["iteration"], info["challenge_key_plus_one"]) == ("Iterating", 1, 0)
    gas = [r["gasUsed"] for r in receipts]
    assert max(gas) < TX_GAS_CAP
    print(f"challenge, 1024-bit key, Prague pricing: {sum(gas)} gas in {len(gas)} tx of one step {gas}")
    # the round goes on; its final opening is challenged with the wrapper (one transaction) and it settles
    final, agg, m, rho = run_iteration(w, w.rid, w.crew, 1, last=True)
    held, receipts = w.market.challenge(w.parts[0], w.rid, aggregate_key(1, 0), agg, m, rho)
    assert held and len(receipts) == 1 and receipts[0]["gasUsed"] < TX_GAS_CAP
    print(f"challenge, 1024-bit key, Prague pricing: {receipts[0]['gasUsed']} gas in one tx")
    past_challenge_window(w)
    reveal_all(w, final)
    result = w.market.settle(w.outsider, w.rid, reveals(final))
    assert sum(result.payments.values()) == 0


@pytest.mark.parametrize("lie", ["opening", "plaintext"])
def test_false_opening_challenged_closes_the_round_and_returns_every_deposit(w, lie):
    """The coordinator publishes the right plaintext with a wrong (canonical) rho, or a wrong
    plaintext with the right rho: publish takes either, a challenge disproves it."""
    subs = w.crew.submissions(0, values_for(0, 3))
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(agg)
    m, rho = (m, rho - 1) if lie == "opening" else (m + 1, rho)
    sums, _ = w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0)  # accepted: openings are optimistic
    receipts = challenge_steps(w, w.rid, 0, w.key, agg, m, rho, steps=3, sender=w.parts[2])
    assert len(receipts) == 2
    assert events(w, receipts[-1], "OpeningConfirmed") == []
    assert events(w, receipts[-1], "OpeningDisproved") == [{"roundId": w.rid, "key": 0,
                                                            "challenger": w.parts[2].address}]
    assert w.market.blamed(receipts[-1]) == {w.coord.address: (0, "CoordinatorFalseOpening")}  # no bond here
    assert max(r["gasUsed"] for r in receipts) < TX_GAS_CAP
    assert_rejected(w, "WrongPhase", lambda: challenge_steps(w, w.rid, 0, w.key, agg, m, rho, steps=4))
    assert_closed_and_refunded(w, w.rid, receipts[-1], "OpeningDisproved", w.parts[2], w.parts[:3] + [w.grid])


def test_false_final_opening_challenged_after_conclusion_closes_the_round(w):
    subs = w.crew.submissions(0, values_for(0, 3))
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(agg)
    w.market.conclude(w.coord, w.rid, agg, m, rho + 1)
    held, receipts = w.market.challenge(w.outsider, w.rid, 0, agg, m, rho + 1)
    assert not held
    assert_rejected(w, "WrongPhase", lambda: reveal_all(w, subs[:1]))
    assert_rejected(w, "WrongPhase", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert_closed_and_refunded(w, w.rid, receipts[-1], "OpeningDisproved", w.outsider, w.parts[:3] + [w.grid])


def test_reveals_wait_for_the_challenge_window(w):
    final, agg, m, rho = run_iteration(w, w.rid, w.crew, 0, last=True)
    until = w.market.round_info(w.rid)["challenge_until"]
    err = assert_rejected(w, "ChallengeWindowOpen", lambda: reveal_all(w, final[:1]))
    assert err.error_args == {"until": until}
    assert_rejected(w, "ChallengeWindowOpen", lambda: w.market.settle(w.outsider, w.rid, reveals(final)))
    past(w.chain, until - 1)
    assert_rejected(w, "ChallengeWindowOpen", lambda: reveal_all(w, final[:1]))  # at `until`
    assert w.chain.block_number == until
    data = published(w.key, agg, m, rho)
    err = assert_rejected(w, "ChallengeWindowClosed", lambda: challenge_call(w, w.rid, 0, data, b"", 1))
    assert err.error_args == {"until": until}
    reveal_all(w, final)
    w.market.settle(w.outsider, w.rid, reveals(final))
    assert w.market.round_info(w.rid)["phase"] == "Settled"


def test_challenge_in_progress_holds_the_reveals_until_it_ends(w):
    final, agg, m, rho = run_iteration(w, w.rid, w.crew, 0, last=True)
    data = published(w.key, agg, m, rho)
    past(w.chain, w.market.round_info(w.rid)["challenge_until"] - 2)
    challenge_call(w, w.rid, 0, data, b"", 1)  # started late in the window, one step of four
    assert w.market.round_info(w.rid)["challenge_key_plus_one"] == 1
    past_challenge_window(w)
    err = assert_rejected(w, "ChallengeInProgress", lambda: reveal_all(w, final[:1]))
    assert err.error_args == {"roundId": w.rid, "key": 0}
    receipt = challenge_call(w, w.rid, 0, data, accumulator(w.key, rho, 1), 3, w.coord)  # anyone may finish it
    assert events(w, receipt, "OpeningConfirmed") == [{"roundId": w.rid, "key": 0}]
    reveal_all(w, final)
    w.market.settle(w.outsider, w.rid, reveals(final))


def test_an_abandoned_challenge_is_void_one_window_later(w):
    """Starting a challenge at the end of the window and walking away cannot hold the round: the
    challenge may finish within one more window, after which the reveals go on and it cannot."""
    final, agg, m, rho = run_iteration(w, w.rid, w.crew, 0, last=True)
    data = published(w.key, agg, m, rho)
    info = w.market.round_info(w.rid)
    past(w.chain, info["challenge_until"] - 1)
    challenge_call(w, w.rid, 0, data, b"", 1)  # the last block of the window, one step of four
    last = info["challenge_until"] + info["windows"].challenge
    past(w.chain, last)
    err = assert_rejected(w, "ChallengeWindowClosed",
                          lambda: challenge_call(w, w.rid, 0, data, accumulator(w.key, rho, 1), 3))
    assert err.error_args == {"until": info["challenge_until"]}
    reveal_all(w, final)
    w.market.settle(w.outsider, w.rid, reveals(final))
    assert w.market.round_info(w.rid)["phase"] == "Settled"


def test_challenge_of_something_else_than_the_published_opening_is_rejected(w):
    subs, agg, m, rho = run_iteration(w, w.rid, w.crew, 0)
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
        assert err.error_args == {"roundId": w.rid, "key": 0}, what
    assert_rejected(w, "ChallengeMismatch", lambda: challenge_call(w, w.rid, 0, good, b"", 0))  # no steps
    assert_rejected(w, "ChallengeMismatch",  # iteration 1 is not published yet
                    lambda: challenge_call(w, w.rid, aggregate_key(1, 0), good, b"", 1))
    assert_rejected(w, "ChallengeMismatch", lambda: challenge_call(w, w.rid, 1, good, b"", 1))  # no attempt 1
    assert_rejected(w, "ChallengeMismatch",  # a challenge starts from no accumulator
                    lambda: challenge_call(w, w.rid, 0, good, accumulator(w.key, rho, 1), 1))
    challenge_call(w, w.rid, 0, good, b"", 1)
    for what, acc in {"restart": b"", "wrong accumulator": accumulator(w.key, rho + 1, 1),
                      "accumulator of two steps": accumulator(w.key, rho, 2)}.items():
        err = assert_rejected(w, "ChallengeMismatch", lambda: challenge_call(w, w.rid, 0, good, acc, 1))
        assert err.error_args == {"roundId": w.rid, "key": 0}, what
    # one challenge at a time
    final, agg1, m1, rho1 = run_iteration(w, w.rid, w.crew, 1, seed=1)
    err = assert_rejected(w, "ChallengeInProgress",
                          lambda: challenge_call(w, w.rid, 1 << 16, published(w.key, agg1, m1, rho1), b"", 1))
    assert err.error_args == {"roundId": w.rid, "key": 0}
    receipt = challenge_call(w, w.rid, 0, good, accumulator(w.key, rho, 1), 8)
    assert events(w, receipt, "OpeningConfirmed")


# ----------------------------------------------------------------------------- gas
def test_submit_gas_with_the_ciphertext_and_mask_point_checks(w):
    """What a submission costs with and without a key: the keyed one pays for the ciphertext's
    bytes, its range and residue checks (c mod n: one MODEXP with exponent 1) and its next mask
    point (a curve check: one small MODEXP, and its hash). Printed; bounded loosely."""
    keyless, _ = new_round(w, keyless_params(w), parts=w.parts[:3], prices=[7])
    (plain,) = submit(w, [commit(keyless, 0, w.parts[0], [1, 2])], keyless)
    (keyed,) = submit(w, [w.crew.seal(0, 0, [1, 2, 3])])
    big = keygen(2048)
    rid, crew = open_round(w, dataclasses.replace(w.params, n=big.n), w.parts[:3], big, deposit=DEPOSIT,
                           prices=PRICES0)
    (keyed2048,) = submit(w, [crew.seal(0, 0, [1, 2, 3])], rid)
    gas = {"no key": plain["gasUsed"], "1024-bit key": keyed["gasUsed"], "2048-bit key": keyed2048["gasUsed"]}
    print("submit gas (not the last of an iteration), Prague pricing:", gas,
          "difference 1024-bit - no key:", gas["1024-bit key"] - gas["no key"])
    assert gas["no key"] < gas["1024-bit key"] < gas["2048-bit key"] < 130_000, gas
