"""Issue 15, "No party can steal, stall or cheat unnamed": each attack it lists, on chain (embedded,
Prague rules), rejected with its custom error and no state change, or ending in the outcome the
protocol names (a drop, a forfeit and who it compensates). Rounds of four participants under the
test-only ProbeRule (two slots and the check slot in a 1024-bit key; each participant pays its
first revealed value to the grid account), with real masks, encryptions and openings (Crew)."""
from __future__ import annotations

import dataclasses

import pytest
from eth_utils import keccak

from offchain.chain.market import Reveal, RoundParams, Windows, blame_key, dispute_key
from offchain.privacy import secagg

from .helpers import (CLOSE, DROP, INT64_MAX, INT64_MIN, PHASE, STEP, Crew, aggregate, assert_rejected, call_input,
                      compensated, deploy_env, events, fund, keygen, open_round, past, past_challenge_window,
                      reveal_all, submit, sums_of)

KEY = keygen(1024)
SLOTS, B, W = 2, 40, 48
WINDOWS = Windows(registration=40, submission=12, coordinator=12, challenge=6)
COLLATERAL, BOND = 10**18, 5 * 10**18
PRICES = [7]
VALUES = [[100, -5], [200, 7], [300, 0], [400, 1]]
BOUND = ((1 << (B - 1)) - 1) // 4  # the largest |value| each of the four may encrypt in a slot
G_X = secagg.GENERATOR.format()[1:]
BAD_POINTS = {  # compressed points the contract refuses
    "x = N + 2: on the curve, but x at least the group order": b"\x02" + (secagg.Q + 2).to_bytes(32, "big"),
    "x off the curve": b"\x02" + (7).to_bytes(32, "big"),
    "prefix 04": b"\x04" + G_X,
}
FORGERIES = ["re-randomised copy", "1 + n", "n^2 - 1"]


@pytest.fixture(scope="module")
def env():
    e = deploy_env(parts=4, more=2)
    e.params = RoundParams(rule=e.probe, slots=SLOTS, max_iterations=3, price_floor=[1], price_cap=[100],
                           grid_account=e.grid.address, n=KEY.n, slot_bits=B, slot_width=W, collateral=COLLATERAL,
                           bond=BOND, windows=WINDOWS)
    e.rid, e.crew = open_round(e, e.params, e.parts, KEY, deposit=COLLATERAL, prices=PRICES)
    assert BOUND == e.crew.layout.max_abs_value
    return e


def addresses(accounts):
    return [a.address for a in accounts]


def shares(pool: int, accounts) -> dict[str, int]:
    """The contract's equal shares of ``pool`` (the remainder to the first)."""
    each = pool // len(accounts)
    return {a.address: each + (pool - each * len(accounts) if i == 0 else 0) for i, a in enumerate(accounts)}


def forge(kind: str, victim: bytes) -> tuple[bytes, tuple[int, int] | None]:
    """A ciphertext that carries no masks of its sender, and its opening if the sender knows one."""
    if kind == "re-randomised copy":  # another's ciphertext times a fresh r^n
        return KEY.ct(KEY.public.add(int.from_bytes(victim, "big"), KEY.enc(0))), None
    if kind == "1 + n":  # the encryption of 1 with randomness 1
        return KEY.ct(1 + KEY.n), (1, 1)
    return KEY.ct(KEY.nsq - 1), (0, KEY.n - 1)  # -1: the encryption of 0 with randomness n - 1


def dispute_with(w, kind: str):
    """Iteration 0 where participant 3 submits a forgery; the coordinator opens the dispute."""
    subs = w.crew.submissions(0, VALUES)
    ct, opening = forge(kind, subs[0].ct)
    subs[3] = w.crew.seal(3, 0, VALUES[3], ciphertext=ct, opening=opening)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    receipt = w.market.dispute(w.coord, w.rid, agg, m, rho)
    return subs, agg, m, rho, receipt


def open_with_a_liar(w, subs):
    """Participants 0-2 open honestly, participant 3 with false check values that add up; the
    neighbour whose claim differs from participant 3's, its check values and participant 3's."""
    lie = w.crew.false_checks(subs[3])
    w.market.open_check_many([w.crew.check_opening(s) for s in subs[:3]] + [w.crew.check_opening(subs[3], lie)])
    q = next(q for q, (a, b) in enumerate(zip(lie, w.crew.checks(subs[3]))) if a != b)
    accuser = w.parts[w.crew.plan.active_neighbours(3, w.crew.active)[q]]
    return accuser, w.crew.checks(subs[w.crew.index(accuser)]), lie


def conclude(w, subs):
    """Submits, aggregates and concludes ``subs``; waits out the challenge window. The sums."""
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    sums, _ = w.market.conclude(w.coord, w.rid, agg, m, rho)
    past_challenge_window(w)
    return sums


def settle_by_outsider(w, final: dict[int, object]):
    """Settles with the reveals of ``final`` (position -> submission; the others count zeros)."""
    return w.market.settle(w.outsider, w.rid, [final[i].reveal() if i in final else None for i in range(4)])


def retry_and_settle(w, attempt: int):
    """The active participants submit again (attempt ``attempt``, masked among themselves), the
    round concludes, they reveal and the outsider settles."""
    subs = w.crew.submissions(0, VALUES, attempt)
    assert conclude(w, subs) == sums_of(subs, SLOTS)
    reveal_all(w, subs)
    return settle_by_outsider(w, {w.crew.index(s.p): s for s in subs})


def dispute_deadline(w):
    return w.market.round_info(w.rid)["deadline"]


# ----------------------------------------------------------------------------- keys and mask points
@pytest.mark.parametrize("where", ["key A", "mask point Y(0)"])
@pytest.mark.parametrize("bad", list(BAD_POINTS))
def test_a_key_or_first_mask_point_off_the_curve_or_with_x_at_least_n_is_rejected_at_register(w, where, bad):
    rid, _ = open_round(w, w.params, [])
    keys = Crew(w.market, rid, w.parts[:1], KEY).keys(0)
    point = BAD_POINTS[bad]
    keys = point + keys[33:] if where == "key A" else keys[:33] + point
    err = assert_rejected(w, "MaskPointInvalid", lambda: w.market.register(w.parts[0], rid, keys), rid)
    assert err.error_args == {"participant": w.parts[0].address}


@pytest.mark.parametrize("keyed, lanes, length, expected", [
    (True, 0, 0, 66), (True, 0, 33, 66), (True, 0, 65, 66), (True, 0, 67, 66), (True, 0, 99, 66),
    (False, 0, 33, 0), (False, 0, 66, 0), (False, 1, 0, 33), (False, 1, 66, 33),
], ids=lambda v: str(v))
def test_keys_of_the_wrong_length_are_rejected(w, keyed, lanes, length, expected):
    p = w.params if keyed else dataclasses.replace(w.params, n=None, slot_bits=0, slot_width=0, pair_lanes=lanes,
                                           windows=Windows(40, 12, 12, 0))
    rid, _ = open_round(w, p, [])
    keys = (Crew(w.market, rid, w.parts[:1], KEY).keys(0) * 2)[:length]
    err = assert_rejected(w, "KeysLength", lambda: w.market.register(w.parts[0], rid, keys), rid)
    assert err.error_args == {"given": length, "expected": expected}


def test_a_keyless_round_with_pair_lanes_takes_a_valid_key_only(w):
    p = dataclasses.replace(w.params, n=None, slot_bits=0, slot_width=0, pair_lanes=1, windows=Windows(40, 12, 12, 0))
    rid, _ = open_round(w, p, [])
    crew = Crew(w.market, rid, w.parts[:1], lanes=True)
    far = BAD_POINTS["x = N + 2: on the curve, but x at least the group order"]
    assert_rejected(w, "MaskPointInvalid", lambda: w.market.register(w.parts[0], rid, far), rid)
    receipt = w.market.register(w.parts[0], rid, crew.keys(0))
    assert events(w, receipt, "Registered")[0]["keys"] == crew.members[0].key
    assert w.market.member(rid, w.parts[0])["key_hash"] == keccak(crew.members[0].key)[:16]


@pytest.mark.parametrize("bad", [*BAD_POINTS, "none", "32 bytes", "34 bytes"])
def test_a_next_mask_point_off_the_curve_or_with_x_at_least_n_is_rejected_at_submit(w, bad):
    g = secagg.GENERATOR.format()
    point = {**BAD_POINTS, "none": b"", "32 bytes": g[:-1], "34 bytes": g + b"\x00"}[bad]
    s = w.crew.seal(0, 0, VALUES[0], point=point)
    err = assert_rejected(w, "MaskPointInvalid", lambda: submit(w, [s]))
    assert err.error_args == {"participant": w.parts[0].address}


def test_a_false_next_mask_point_is_named_by_the_next_iterations_dispute(w):
    """Participant 3 posts a next mask point that is not a H_1 (a point of another logarithm): its
    iteration-1 masks do not cancel with its neighbours'; it cannot prove its own point, its
    neighbour proves it wrong."""
    other = secagg.multiply(secagg.GENERATOR, secagg.random_scalar())
    subs = w.crew.submissions(0, VALUES, hostile={3: dict(point=other)})
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    w.market.publish(w.coord, w.rid, agg, m, rho, PRICES)  # iteration 0's masks cancelled
    subs = w.crew.submissions(1, VALUES)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    assert w.crew.layout.unpack(m)[1] != 0
    w.market.dispute(w.coord, w.rid, agg, m, rho)
    items = [w.crew.check_opening(s) for s in subs]  # every one opens its own view honestly
    w.market.open_check_many(items)
    mine, theirs = items[0][4], items[3][4]
    liar = lambda: w.market.accuse(w.parts[3], w.rid, w.parts[0], theirs, mine,  # noqa: E731
                                   w.crew.accusation(w.parts[3], w.parts[0], 1))
    err = assert_rejected(w, "AccusationInvalid", liar)
    assert err.error_args == {"accuser": w.parts[3].address, "part": 1}  # its own mask point
    proof = w.crew.accusation(w.parts[0], w.parts[3], 1)
    receipt = w.market.accuse(w.parts[0], w.rid, w.parts[3], mine, theirs, proof)
    assert w.market.blamed(receipt) == {w.parts[3].address: (COLLATERAL, "FalseCheck")}


# ----------------------------------------------------------------------------- reveals
def test_a_reveal_beyond_the_slot_bound_or_int64_is_refused_and_its_sender_withholds(w):
    """Participant 3 committed to a value beyond the slot bound (it encrypted zeros): it cannot
    reveal, so it withholds: at settlement it forfeits and the blame step runs for the others,
    whose reveals at the bound itself are taken."""
    values = [[BOUND, -BOUND], [-BOUND, BOUND], [0, 1], [BOUND + 1, 0]]
    subs = w.crew.submissions(0, values, hostile={3: dict(encrypted=[0, 0])})
    assert conclude(w, subs) == [0, 1]
    p3 = w.parts[3]
    for bad, index in [(values[3], 0), ([0, -BOUND - 1], 1), ([INT64_MAX + 1, 0], 0), ([0, INT64_MIN - 1], 1)]:
        err = assert_rejected(w, "RevealOutOfRange", lambda: w.market.reveal_many(
            [(p3, w.rid, Reveal(bad, subs[3].salt, keccak(subs[3].ct)))]))
        assert err.error_args == {"participant": p3.address, "index": index}
    reveal_all(w, subs[:3])
    until = w.market.round_info(w.rid)["reveal_until"]
    err = assert_rejected(w, "RevealWindowOpen", lambda: settle_by_outsider(w, dict(enumerate(subs[:3]))))
    assert err.error_args == {"until": until}
    past(w.chain, until)
    result = settle_by_outsider(w, dict(enumerate(subs[:3])))
    assert w.market.blamed(result.receipt) == {p3.address: (COLLATERAL, "WithheldReveal")}
    assert w.market.blame_started(result.receipt) and result.payments == {}
    w.market.open_blame_many([w.crew.blame_opening(s) for s in subs[:3]])
    past_challenge_window(w)
    result = settle_by_outsider(w, dict(enumerate(subs[:3])))
    assert result.payments == {**dict(zip(addresses(w.parts), [BOUND, -BOUND, 0, 0])), w.grid.address: 0}
    assert compensated(w, result.receipt) == shares(COLLATERAL, w.parts[:3])


# ----------------------------------------------------------------------------- forged ciphertexts and disputes
@pytest.mark.parametrize("kind", FORGERIES)
def test_a_forged_ciphertext_is_taken_but_its_masks_do_not_cancel_and_a_dispute_opens(w, kind):
    subs = w.crew.submissions(0, VALUES)
    ct, _ = forge(kind, subs[0].ct)
    subs[3] = w.crew.seal(3, 0, VALUES[3], ciphertext=ct)
    receipts = submit(w, subs)  # no check of a submission can tell
    assert events(w, receipts[3], "Submitted")[0]["ciphertextHash"] == keccak(ct)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    sums, check = w.crew.layout.unpack(m)
    assert check != 0
    for call in (lambda: w.market.publish(w.coord, w.rid, agg, m, rho, PRICES),
                 lambda: w.market.conclude(w.coord, w.rid, agg, m, rho)):
        err = assert_rejected(w, "MasksDoNotCancel", call)
        assert err.error_args == {"roundId": w.rid, "iteration": 0, "check": check}
    assert_rejected(w, "NotCoordinator", lambda: w.market.dispute(w.outsider, w.rid, agg, m, rho))
    receipt = w.market.dispute(w.coord, w.rid, agg, m, rho)
    assert events(w, receipt, "Disputed") == [{"roundId": w.rid, "iteration": 0, "attempt": 0,
                                               "plaintext": KEY.word(m), "opening": KEY.word(rho), "check": check}]
    deadline = receipt["blockNumber"] + 2 * WINDOWS.submission  # openings, then accusations
    assert events(w, receipt, "StepChanged") == [{"roundId": w.rid, "iteration": 0, "phase": PHASE["Iterating"],
                                                  "step": STEP["Disputing"], "attempt": 0, "deadline": deadline}]
    info = w.market.round_info(w.rid)
    assert (info["step"], info["attempt"], info["submissions"], info["deadline"]) == ("Disputing", 0, 0, deadline)
    err = assert_rejected(w, "WrongStep", lambda: w.market.dispute(w.coord, w.rid, agg, m, rho))
    assert err.error_args == {"roundId": w.rid, "current": STEP["Disputing"], "expected": STEP["Aggregating"]}


@pytest.mark.parametrize("attack", ["a copy", "a cheat"])
def test_a_round_whose_openings_are_unchecked_closes_instead_of_disputing_or_blaming(w, attack):
    """Without a challenge window nobody could prove an opening false: masks that do not cancel
    close the round (MasksDoNotCancel), so do reveals that do not add up (RevealsDoNotAddUp)."""
    rid, crew = open_round(w, dataclasses.replace(w.params, windows=Windows(40, 12, 12, 0)), w.parts, KEY,
                           deposit=COLLATERAL, prices=PRICES)
    hostile = {3: dict(encrypted=[v + 1 for v in VALUES[3]])} if attack == "a cheat" else {}
    subs = crew.submissions(0, VALUES, hostile=hostile)
    if attack == "a copy":
        subs[3] = crew.seal(3, 0, VALUES[3], ciphertext=forge("re-randomised copy", subs[0].ct)[0])
    submit(w, subs, rid)
    agg, _ = aggregate(w, subs, rid)
    m, rho = KEY.opening(agg)
    if attack == "a copy":
        receipt = w.market.dispute(w.coord, rid, agg, m, rho)
    else:
        w.market.conclude(w.coord, rid, agg, m, rho)
        reveal_all(w, subs, rid)
        receipt = w.market.settle(w.outsider, rid, [s.reveal() for s in subs]).receipt
    reason = "MasksDoNotCancel" if attack == "a copy" else "RevealsDoNotAddUp"
    assert [e["reason"] for e in events(w, receipt, "Closed")] == [CLOSE[reason]]
    assert w.market.blamed(receipt) == {} and w.market.round_info(rid)["phase"] == "Closed"


def test_masks_that_cancel_cannot_be_disputed(w):
    subs = w.crew.submissions(0, VALUES)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    err = assert_rejected(w, "MasksCancel", lambda: w.market.dispute(w.coord, w.rid, agg, m, rho))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}
    item = w.crew.check_opening(subs[0])  # no dispute: nothing to open or accuse
    err = assert_rejected(w, "WrongStep", lambda: w.market.open_check_many([item]))
    assert err.error_args == {"roundId": w.rid, "current": STEP["Aggregating"], "expected": STEP["Disputing"]}
    assert_rejected(w, "WrongStep", lambda: w.market.accuse(w.parts[0], w.rid, w.parts[1], item[4], item[4],
                                                            w.crew.accusation(w.parts[0], w.parts[1], 0)))


def test_a_copier_cannot_open_is_dropped_and_the_others_settle_without_it(w):
    subs, *_ = dispute_with(w, "re-randomised copy")
    receipts = w.market.open_check_many([w.crew.check_opening(s) for s in subs[:3]])
    (ev,) = events(w, receipts[0], "CheckOpened")
    assert (ev["participant"], ev["plaintext"], ev["opening"], list(ev["checks"])) == \
        (w.parts[0].address, KEY.word(subs[0].m), KEY.word(subs[0].rho), w.crew.checks(subs[0]))
    assert w.market.round_info(w.rid)["submissions"] == 3  # the openings
    deadline = dispute_deadline(w)
    err = assert_rejected(w, "DeadlineNotPassed", lambda: w.market.advance(w.outsider, w.rid, [w.parts[3]]))
    assert err.error_args == {"deadline": deadline}
    past(w.chain, deadline)
    err = assert_rejected(w, "MissingCount", lambda: w.market.advance(w.outsider, w.rid, []))
    assert err.error_args == {"given": 0, "expected": 1}
    assert_rejected(w, "NotMissing", lambda: w.market.advance(w.outsider, w.rid, [w.parts[0]]))
    receipt = w.market.advance(w.outsider, w.rid, [w.parts[3]])
    assert events(w, receipt, "Dropped") == [{"roundId": w.rid, "iteration": 0, "participant": w.parts[3].address,
                                              "reason": DROP["MissedOpening"]}]
    assert events(w, receipt, "StepChanged") == [{"roundId": w.rid, "iteration": 0, "phase": PHASE["Iterating"],
                                                  "step": STEP["Submitting"], "attempt": 1,
                                                  "deadline": receipt["blockNumber"] + WINDOWS.submission}]
    assert w.market.blamed(receipt) == {}  # missing an opening is no proof of fault
    w.crew.drop(w.parts[3])
    result = retry_and_settle(w, attempt=1)
    assert result.payments == {**dict(zip(addresses(w.parts), [100, 200, 300, 0])), w.grid.address: -600}
    assert w.market.balance(w.rid, w.parts[3]) == COLLATERAL  # settled by the fallback: it revealed nothing


@pytest.mark.parametrize("kind", ["1 + n", "n^2 - 1"])
def test_false_check_claims_are_proven_wrong_and_the_retry_without_the_liar_settles(w, kind):
    """Participant 3 sent a deterministic encryption (no masks) and opens it with check values
    made to add up to its plaintext's check slot: its neighbour whose claim differs proves its own
    value; participant 3 forfeits, is dropped and the iteration is tried again without it."""
    subs, *_ = dispute_with(w, kind)
    accuser, mine, lie = open_with_a_liar(w, subs)
    truth = [w.crew.checks(s) for s in subs]
    p3 = w.parts[3]
    err = assert_rejected(w, "AccusationInvalid", lambda: w.market.accuse(  # the liar cannot prove its claim
        p3, w.rid, accuser, lie, mine, w.crew.accusation(p3, accuser, 0)))
    assert err.error_args == {"accuser": p3.address, "part": 4}
    err = assert_rejected(w, "NoMismatch", lambda: w.market.accuse(  # honest neighbours agree
        w.parts[1], w.rid, w.parts[2], truth[1], truth[2], w.crew.accusation(w.parts[1], w.parts[2], 0)))
    assert err.error_args == {"accuser": w.parts[1].address, "accused": w.parts[2].address}
    assert_rejected(w, "AccusationInvalid", lambda: w.market.accuse(  # claims other than those opened
        accuser, w.rid, p3, mine, truth[3], w.crew.accusation(accuser, p3, 0)))
    assert_rejected(w, "NotInDispute", lambda: w.market.accuse(
        w.outsider, w.rid, p3, mine, lie, w.crew.accusation(accuser, p3, 0)))
    receipt = w.market.accuse(accuser, w.rid, p3, mine, lie, w.crew.accusation(accuser, p3, 0))
    assert events(w, receipt, "Accused") == [{"roundId": w.rid, "iteration": 0, "accused": p3.address,
                                              "accuser": accuser.address}]
    assert w.market.blamed(receipt) == {p3.address: (COLLATERAL, "FalseCheck")}
    assert w.market.member(w.rid, p3)["culprit"] and w.market.balance(w.rid, p3) == 0
    assert w.market.round_info(w.rid)["forfeited"] == COLLATERAL
    err = assert_rejected(w, "AlreadyCulprit", lambda: w.market.accuse(
        accuser, w.rid, p3, mine, lie, w.crew.accusation(accuser, p3, 0)))
    assert err.error_args == {"participant": p3.address}
    past(w.chain, dispute_deadline(w))
    err = assert_rejected(w, "DeadlinePassed", lambda: w.market.accuse(  # accusations end with the dispute
        w.parts[1], w.rid, w.parts[0], truth[1], truth[0], w.crew.accusation(w.parts[1], w.parts[0], 0)))
    assert err.error_args == {"deadline": dispute_deadline(w)}
    receipt = w.market.advance(w.outsider, w.rid, [])
    assert events(w, receipt, "Dropped") == [{"roundId": w.rid, "iteration": 0, "participant": p3.address,
                                              "reason": DROP["Culprit"]}]
    assert w.market.round_info(w.rid)["attempt"] == 1
    w.crew.drop(p3)
    result = retry_and_settle(w, attempt=1)
    assert result.payments[p3.address] == 0
    assert compensated(w, result.receipt) == shares(COLLATERAL, w.parts[:3])
    assert w.market.round_info(w.rid)["forfeited"] == 0


def test_openings_that_do_not_hold_are_rejected(w):
    subs, *_ = dispute_with(w, "re-randomised copy")
    s = subs[0]
    item = w.crew.check_opening(s)
    cases = {  # (sender, commitment, opened, checks) -> (error, its arguments)
        "another commitment": ((s.p, w.rid, keccak(b"x"), item[3], item[4]), "CheckOpeningInvalid", 0),
        "another ciphertext": ((s.p, w.rid, s.cm, subs[1].ct + item[3][2 * KEY.nbytes:], item[4]),
                               "CheckOpeningInvalid", 0),
        "a check value off": ((s.p, w.rid, s.cm, item[3], [item[4][0] + 1] + item[4][1:]), "CheckOpeningInvalid", 1),
        "a check value of B bits": ((s.p, w.rid, s.cm, item[3], [1 << B] + item[4][1:]), "CheckOpeningInvalid", 1),
    }
    for what, (bad, name, part) in cases.items():
        err = assert_rejected(w, name, lambda: w.market.open_check_many([bad]))
        assert err.error_args == {"participant": s.p.address, "part": part}, what
    err = assert_rejected(w, "ChecksLength", lambda: w.market.open_check_many([(*item[:4], item[4][:2])]))
    assert err.error_args == {"given": 2, "expected": 3}
    err = assert_rejected(w, "OpeningLength", lambda: w.market.open_check_many([(*item[:3], item[3][:-1], item[4])]))
    assert err.error_args == {"given": 4 * KEY.nbytes - 1, "expected": 4 * KEY.nbytes}
    assert_rejected(w, "NotInDispute", lambda: w.market.open_check_many([(w.outsider, *item[1:])]))
    w.market.open_check_many([item])
    err = assert_rejected(w, "AlreadyOpened", lambda: w.market.open_check_many([item]))
    assert err.error_args == {"participant": s.p.address}
    past(w.chain, dispute_deadline(w) - WINDOWS.submission)
    err = assert_rejected(w, "DeadlinePassed", lambda: w.market.open_check_many([w.crew.check_opening(subs[1])]))
    assert err.error_args == {"deadline": dispute_deadline(w) - WINDOWS.submission}


def test_a_false_dispute_opening_is_disproved_by_a_challenge_and_its_sender_forfeits(w):
    subs, *_ = dispute_with(w, "re-randomised copy")
    w.market.open_check_many([w.crew.check_opening(subs[0]), w.crew.check_opening(subs[1], rho=subs[1].rho + 1),
                              w.crew.check_opening(subs[2])])  # participant 1 opens with another rho
    held, receipts = w.market.challenge(w.parts[2], w.rid, dispute_key(0, 0, 1), subs[0].ct, subs[0].m, subs[0].rho)
    assert held and events(w, receipts, "OpeningConfirmed") == [{"roundId": w.rid, "key": dispute_key(0, 0, 1)}]
    key = dispute_key(0, 0, 2)
    held, receipts = w.market.challenge(w.parts[2], w.rid, key, subs[1].ct, subs[1].m, subs[1].rho + 1)
    assert not held
    assert events(w, receipts, "OpeningDisproved") == [{"roundId": w.rid, "key": key,
                                                        "challenger": w.parts[2].address}]
    assert w.market.blamed(receipts) == {w.parts[1].address: (COLLATERAL, "FalseOpening")}
    assert w.market.round_info(w.rid)["phase"] == "Iterating"  # a participant's false opening names it only
    past(w.chain, dispute_deadline(w))
    receipt = w.market.advance(w.outsider, w.rid, [w.parts[3]])
    assert [(e["participant"], e["reason"]) for e in events(w, receipt, "Dropped")] == \
        [(w.parts[3].address, DROP["MissedOpening"]), (w.parts[1].address, DROP["Culprit"])]
    (closed,) = events(w, receipt, "Closed")
    assert closed["reason"] == CLOSE["TooFewParticipants"]
    # closed: the culprit's deposit goes to everyone that is no culprit
    others = [w.parts[i] for i in (0, 2, 3)]
    assert compensated(w, receipt) == shares(COLLATERAL, others)
    w.market.withdraw_many(others, w.rid)
    assert_rejected(w, "ZeroAmount", lambda: w.market.withdraw(w.parts[1], w.rid))


def test_a_dispute_that_names_nobody_closes_the_round(w):
    """The coordinator claims masks that do not cancel (a plaintext whose check slot is not zero)
    for an honest attempt: every participant opens, nobody's claims differ, nobody is dropped."""
    subs = w.crew.submissions(0, VALUES)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    w.market.dispute(w.coord, w.rid, agg, m + (1 << (SLOTS * W)), rho)
    w.market.open_check_many([w.crew.check_opening(s) for s in subs])
    past(w.chain, dispute_deadline(w))
    receipt = w.market.advance(w.outsider, w.rid, [])
    assert events(w, receipt, "Closed")[0]["reason"] == CLOSE["DisputeUnresolved"]
    assert events(w, receipt, "Dropped") == []


def test_a_false_decryption_claimed_in_a_dispute_is_disproved_and_costs_the_coordinator_its_bond(w):
    subs = w.crew.submissions(0, VALUES)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    false = m + (1 << (SLOTS * W))
    w.market.dispute(w.coord, w.rid, agg, false, rho)
    held, receipts = w.market.challenge(w.parts[0], w.rid, 0, agg, false, rho)
    assert not held
    assert w.market.blamed(receipts) == {w.coord.address: (BOND, "CoordinatorFalseOpening")}
    assert events(w, receipts, "Closed")[0]["reason"] == CLOSE["OpeningDisproved"]
    assert compensated(w, receipts) == shares(BOND, w.parts)


def test_a_challenge_abandoned_in_a_dispute_holds_the_advance_for_one_window_only(w):
    subs, *_ = dispute_with(w, "re-randomised copy")
    w.market.open_check_many([w.crew.check_opening(s) for s in subs[:3]])
    deadline = dispute_deadline(w)
    past(w.chain, deadline - 1)
    opened, key = w.crew.opened(subs[0]), dispute_key(0, 0, 1)
    f = w.market.contract.functions
    receipt = w.chain.transact(f.challengeOpening(w.rid, key, opened, b"", 1), w.outsider)  # 1 step of 4, in time
    assert w.market.round_info(w.rid)["challenge_key_plus_one"] == key + 1
    err = assert_rejected(w, "ChallengeInProgress", lambda: w.market.advance(w.outsider, w.rid, [w.parts[3]]))
    assert err.error_args == {"roundId": w.rid, "key": key}
    past(w.chain, receipt["blockNumber"] + WINDOWS.challenge)  # the challenge is void now
    acc = pow(subs[0].rho, KEY.n >> (256 * 3), KEY.nsq).to_bytes(2 * KEY.nbytes, "big")
    err = assert_rejected(w, "ChallengeWindowClosed",
                          lambda: w.chain.transact(f.challengeOpening(w.rid, key, opened, acc, 3), w.outsider))
    assert err.error_args == {"until": deadline}
    receipt = w.market.advance(w.outsider, w.rid, [w.parts[3]])
    assert events(w, receipt, "StepChanged")[0]["attempt"] == 1


# ----------------------------------------------------------------------------- deposits, start and close
def test_start_drops_whoever_lacks_the_collateral_and_needs_the_coordinators_bond(w):
    parts = w.parts + w.more[:1]
    rid, _ = open_round(w, w.params, parts, KEY, bond=False)
    fund(w, rid, parts[:4], COLLATERAL)
    fund(w, rid, parts[4:], COLLATERAL - 1)
    err = assert_rejected(w, "InsufficientDeposit", lambda: w.market.start(w.coord, rid, PRICES), rid)
    assert err.error_args == {"account": w.coord.address, "balance": 0, "needed": BOND}
    fund(w, rid, [w.coord], BOND - 1)
    err = assert_rejected(w, "InsufficientDeposit", lambda: w.market.start(w.coord, rid, PRICES), rid)
    assert err.error_args == {"account": w.coord.address, "balance": BOND - 1, "needed": BOND}
    fund(w, rid, [w.coord], 1)
    receipt = w.market.start(w.coord, rid, PRICES)
    assert events(w, receipt, "Dropped") == [{"roundId": rid, "iteration": 0, "participant": parts[4].address,
                                              "reason": DROP["NoCollateral"]}]
    assert events(w, receipt, "RoundStarted")[0]["participants"] == 4
    info = w.market.round_info(rid)
    assert (info["participant_count"], info["active"], info["collateral"], info["bond"]) == (5, 4, COLLATERAL, BOND)
    crew = Crew(w.market, rid, parts, KEY, w.crew.layout)
    late = crew.seal(4, 0, VALUES[0])
    err = assert_rejected(w, "NotActive", lambda: submit(w, [late], rid), rid)
    assert err.error_args == {"participant": parts[4].address}


def test_start_needs_three_participants_with_their_collateral(w):
    rid, _ = open_round(w, w.params, w.parts[:3], KEY)
    fund(w, rid, w.parts[:2] + [w.coord], COLLATERAL + BOND)
    err = assert_rejected(w, "TooFewParticipants", lambda: w.market.start(w.coord, rid, PRICES), rid)
    assert err.error_args == {"count": 2, "minimum": 3}


def test_deposits_stay_locked_until_the_end_and_a_concluded_round_cannot_be_closed(w):
    registering, _ = open_round(w, w.params, w.parts[:1], KEY, deposit=COLLATERAL)
    for rid, phase in [(registering, "Registering"), (w.rid, "Iterating")]:
        err = assert_rejected(w, "WrongPhase", lambda: w.market.withdraw(w.parts[0], rid), rid)
        assert err.error_args == {"roundId": rid, "current": PHASE[phase], "expected": PHASE["Settled"]}
    subs = w.crew.submissions(0, VALUES)
    conclude(w, subs)
    assert_rejected(w, "WrongPhase", lambda: w.market.withdraw(w.coord, w.rid))
    err = assert_rejected(w, "NoBlame", lambda: w.market.open_blame_many([w.crew.blame_opening(subs[0])]))
    assert err.error_args == {"roundId": w.rid}
    err = assert_rejected(w, "WrongPhase", lambda: w.market.close(w.coord, w.rid))
    assert err.error_args == {"roundId": w.rid, "current": PHASE["Concluded"], "expected": PHASE["Iterating"]}
    reveal_all(w, subs)
    settle_by_outsider(w, dict(enumerate(subs)))
    assert_rejected(w, "AlreadySettled", lambda: w.market.close(w.coord, w.rid))
    before = w.market.token.balance_of(w.coord)
    w.market.withdraw_many([w.coord] + w.parts, w.rid)
    assert w.market.token.balance_of(w.coord) == before + BOND  # the bond, whole


def test_a_late_coordinator_forfeits_its_bond_to_the_participants(w):
    submit(w, w.crew.submissions(0, VALUES))  # then the coordinator does nothing
    late = w.market.coordinator_deadline(w.rid)
    past(w.chain, late - 1)
    assert_rejected(w, "DeadlineNotPassed", lambda: w.market.cancel(w.outsider, w.rid))
    receipt = w.market.cancel(w.outsider, w.rid)
    assert w.market.blamed(receipt) == {w.coord.address: (BOND, "CoordinatorLate")}
    assert events(w, receipt, "Closed")[0]["reason"] == CLOSE["CoordinatorLate"]
    assert compensated(w, receipt) == shares(BOND, w.parts)
    before = [w.market.token.balance_of(p) for p in w.parts]
    w.market.withdraw_many(w.parts, w.rid)
    assert [w.market.token.balance_of(p) - b for p, b in zip(w.parts, before)] == [COLLATERAL + BOND // 4] * 4
    assert_rejected(w, "ZeroAmount", lambda: w.market.withdraw(w.coord, w.rid))


# ----------------------------------------------------------------------------- anyone may move the round on
def test_an_outsider_may_aggregate_and_advance_first_and_the_coordinator_finds_it_done(w):
    subs = w.crew.submissions(0, VALUES)
    submit(w, subs)
    agg, _ = aggregate(w, subs, sender=w.outsider)
    err = assert_rejected(w, "AlreadyAggregated", lambda: aggregate(w, subs, sender=w.coord))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}
    m, rho = KEY.opening(agg)
    w.market.publish(w.coord, w.rid, agg, m, rho, PRICES)
    subs = w.crew.submissions(1, VALUES)
    submit(w, subs[:3])
    past(w.chain, w.market.round_info(w.rid)["deadline"])
    receipt = w.market.advance(w.outsider, w.rid, [w.parts[3]])
    assert events(w, receipt, "Dropped")[0]["reason"] == DROP["MissedSubmission"]
    deadline = receipt["blockNumber"] + WINDOWS.submission
    err = assert_rejected(w, "DeadlineNotPassed", lambda: w.market.advance(w.coord, w.rid, [w.parts[3]]))
    assert err.error_args == {"deadline": deadline}  # the client takes the new attempt as the advance done
    info = w.market.round_info(w.rid)
    assert (info["iteration"], info["attempt"], info["active"]) == (1, 1, 3)


def test_anyone_settles_from_what_the_chain_shows_without_a_secret(w):
    """The outsider finds each reveal through its Revealed event and reads the values and the
    ciphertext hash from that transaction's input: nothing else is needed to settle."""
    subs = w.crew.submissions(0, VALUES)
    conclude(w, subs)
    reveal_all(w, subs)
    shown = {}
    for log in w.market.contract.events.Revealed.get_logs(argument_filters={"roundId": w.rid}, from_block=0):
        _, args = call_input(w, log["transactionHash"])
        shown[log["args"]["participant"]] = Reveal(list(args["values"]), b"", bytes(args["ciphertextHash"]))
    result = w.market.settle(w.outsider, w.rid, [shown[p.address] for p in w.parts])
    assert result.payments == {**dict(zip(addresses(w.parts), [100, 200, 300, 400])), w.grid.address: -1000}
    assert w.market.round_info(w.rid)["phase"] == "Settled"


# ----------------------------------------------------------------------------- the blame step
def test_a_cheat_cannot_open_in_the_blame_step_and_forfeits_its_deposit_to_the_others(w):
    subs = w.crew.submissions(0, VALUES, hostile={3: dict(encrypted=[v + 1 for v in VALUES[3]])})
    assert conclude(w, subs) == [v + 1 for v in sums_of(subs, SLOTS)]
    reveal_all(w, subs)
    result = settle_by_outsider(w, dict(enumerate(subs)))
    until = result.receipt["blockNumber"] + WINDOWS.submission
    assert events(w, result.receipt, "BlameStarted") == [{"roundId": w.rid, "iteration": 0, "until": until}]
    assert result.payments == {} and w.market.blamed(result.receipt) == {}
    info = w.market.round_info(w.rid)
    assert (info["phase"], info["blame_until"], info["challenge_until"]) == ("Concluded", until,
                                                                            until + WINDOWS.challenge)
    err = assert_rejected(w, "WrongPhase", lambda: w.market.close(w.coord, w.rid))  # no way out for the coordinator
    assert err.error_args["current"] == PHASE["Concluded"]
    revealed_until = w.market.round_info(w.rid)["reveal_until"]
    err = assert_rejected(w, "DeadlinePassed", lambda: reveal_all(w, subs[:1]))  # the reveals are over
    assert err.error_args == {"deadline": revealed_until}
    receipts = w.market.open_blame_many([w.crew.blame_opening(s) for s in subs[:3]])
    assert events(w, receipts, "BlameOpened") == [{"roundId": w.rid, "participant": p.address} for p in w.parts[:3]]
    assert [w.market.member(w.rid, p)["cleared"] for p in w.parts] == [True, True, True, False]
    err = assert_rejected(w, "BlameOpeningInvalid", lambda: w.market.open_blame_many([w.crew.blame_opening(subs[3])]))
    assert err.error_args == {"participant": w.parts[3].address, "part": 3 + 3}  # its plaintext less its masks
    assert_rejected(w, "AlreadyCleared", lambda: w.market.open_blame_many([w.crew.blame_opening(subs[0])]))
    err = assert_rejected(w, "ChallengeWindowOpen", lambda: settle_by_outsider(w, dict(enumerate(subs[:3]))))
    assert err.error_args == {"until": until + WINDOWS.challenge}
    past(w.chain, until)
    assert_rejected(w, "DeadlinePassed", lambda: w.market.open_blame_many([w.crew.blame_opening(subs[3])]))
    past_challenge_window(w)
    err = assert_rejected(w, "RevealMismatch", lambda: settle_by_outsider(w, dict(enumerate(subs))))
    assert err.error_args == {"participant": w.parts[3].address}  # it counts nothing now
    result = settle_by_outsider(w, dict(enumerate(subs[:3])))
    assert w.market.blamed(result.receipt) == {w.parts[3].address: (COLLATERAL, "SumCheated")}
    assert compensated(w, result.receipt) == shares(COLLATERAL, w.parts[:3])
    assert result.payments == {**dict(zip(addresses(w.parts), [100, 200, 300, 0])), w.grid.address: -600}


def test_a_challenge_abandoned_in_the_blame_step_holds_the_settlement_for_one_window_only(w):
    subs = w.crew.submissions(0, VALUES, hostile={3: dict(encrypted=[v + 1 for v in VALUES[3]])})
    conclude(w, subs)
    reveal_all(w, subs)
    settle_by_outsider(w, dict(enumerate(subs)))
    w.market.open_blame_many([w.crew.blame_opening(s) for s in subs[:3]])
    until = w.market.round_info(w.rid)["challenge_until"]
    past(w.chain, until - 1)
    key, f = blame_key(1), w.market.contract.functions
    receipt = w.chain.transact(f.challengeOpening(w.rid, key, w.crew.opened(subs[0]), b"", 1), w.outsider)
    err = assert_rejected(w, "ChallengeInProgress", lambda: settle_by_outsider(w, dict(enumerate(subs[:3]))))
    assert err.error_args == {"roundId": w.rid, "key": key}
    past(w.chain, receipt["blockNumber"] + WINDOWS.challenge)  # void from the next block on
    result = settle_by_outsider(w, dict(enumerate(subs[:3])))
    assert w.market.blamed(result.receipt) == {w.parts[3].address: (COLLATERAL, "SumCheated")}


def test_a_withheld_reveal_forfeits_and_a_false_blame_opening_is_disproved(w):
    subs = w.crew.submissions(0, VALUES)
    conclude(w, subs)
    reveal_all(w, subs[:3])  # participant 3 withholds its reveal
    past(w.chain, w.market.round_info(w.rid)["reveal_until"])
    result = settle_by_outsider(w, dict(enumerate(subs[:3])))
    assert w.market.blamed(result.receipt) == {w.parts[3].address: (COLLATERAL, "WithheldReveal")}
    assert w.market.blame_started(result.receipt)
    err = assert_rejected(w, "NotInBlame", lambda: w.market.open_blame_many([w.crew.blame_opening(subs[3])]))
    assert err.error_args == {"participant": w.parts[3].address}
    w.market.open_blame_many([w.crew.blame_opening(subs[0]), w.crew.blame_opening(subs[1], rho=subs[1].rho + 1),
                              w.crew.blame_opening(subs[2])])  # participant 1 opens with another rho: taken
    assert w.market.member(w.rid, w.parts[1])["cleared"]
    held, receipts = w.market.challenge(w.parts[0], w.rid, blame_key(2), subs[1].ct, subs[1].m, subs[1].rho + 1)
    assert not held
    assert w.market.blamed(receipts) == {w.parts[1].address: (COLLATERAL, "FalseOpening")}
    m = w.market.member(w.rid, w.parts[1])
    assert m["culprit"] and not m["cleared"]
    past_challenge_window(w)
    result = settle_by_outsider(w, {0: subs[0], 2: subs[2]})
    assert w.market.blamed(result.receipt) == {}  # both named already
    assert compensated(w, result.receipt) == shares(2 * COLLATERAL, [w.parts[0], w.parts[2]])
    assert result.payments == {**dict(zip(addresses(w.parts), [100, 0, 300, 0])), w.grid.address: -400}


def test_when_everyone_clears_itself_the_decrypted_sums_were_false_and_the_coordinator_forfeits_its_bond(w):
    subs = w.crew.submissions(0, VALUES)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = KEY.opening(agg)
    sums, _ = w.market.conclude(w.coord, w.rid, agg, m + 1, rho)  # slot 0 one more; unchallenged
    assert sums == [sums_of(subs, SLOTS)[0] + 1, sums_of(subs, SLOTS)[1]]
    past_challenge_window(w)
    reveal_all(w, subs)
    assert w.market.blame_started(settle_by_outsider(w, dict(enumerate(subs))).receipt)
    w.market.open_blame_many([w.crew.blame_opening(s) for s in subs])
    past_challenge_window(w)
    result = settle_by_outsider(w, dict(enumerate(subs)))
    assert w.market.blamed(result.receipt) == {w.coord.address: (BOND, "CoordinatorFalseSums")}
    assert compensated(w, result.receipt) == shares(BOND, w.parts)
    assert result.payments == {**dict(zip(addresses(w.parts), [100, 200, 300, 400])), w.grid.address: -1000}



def test_a_culprit_that_reveals_cannot_hold_up_the_settlement(w):
    """A participant proven at fault in a dispute forfeited its whole deposit and left the round.
    Whatever it reveals afterwards counts for nothing (a fallback that billed it could not be paid,
    and the settlement would revert for everyone): the others settle without it."""
    subs, *_ = dispute_with(w, "1 + n")
    accuser, mine, lie = open_with_a_liar(w, subs)
    w.market.accuse(accuser, w.rid, w.parts[3], mine, lie, w.crew.accusation(accuser, w.parts[3], 0))
    past(w.chain, dispute_deadline(w))
    w.market.advance(w.outsider, w.rid, [])
    w.crew.drop(w.parts[3])
    final = w.crew.submissions(0, VALUES, 1)
    conclude(w, final)
    reveal_all(w, final + subs[3:])  # the culprit reveals its last commitment: a purchase of 400
    err = assert_rejected(w, "RevealMismatch", lambda: settle_by_outsider(w, {**dict(enumerate(final)), 3: subs[3]}))
    assert err.error_args == {"participant": w.parts[3].address}  # its reveal must count as zeros
    result = settle_by_outsider(w, dict(enumerate(final)))
    assert result.payments == {**dict(zip(addresses(w.parts), [100, 200, 300, 0])), w.grid.address: -600}
    assert w.market.balance(w.rid, w.parts[3]) == 0


def test_a_participant_billed_more_than_its_deposit_cannot_stop_the_settlement(w):
    """A participant reveals (having encrypted it too, so the sums add up) a purchase its deposit
    cannot pay: instead of the whole settlement reverting with InsufficientDeposit, it forfeits
    what it holds (Overdrawn), is settled without its reveal, and the others settle."""
    p = dataclasses.replace(w.params, collateral=100)
    rid, crew = open_round(w, p, w.parts, KEY, deposit=350, prices=PRICES)
    subs = crew.submissions(0, VALUES)  # participant 3 buys 400 with 350 on its ledger
    submit(w, subs, rid)
    agg, _ = aggregate(w, subs, rid)
    m, rho = KEY.opening(agg)
    w.market.conclude(w.coord, rid, agg, m, rho)
    past_challenge_window(w, rid)
    reveal_all(w, subs, rid)
    result = w.market.settle(w.outsider, rid, [s.reveal() for s in subs])
    assert w.market.blamed(result.receipt) == {w.parts[3].address: (350, "Overdrawn")}
    assert result.payments == {**dict(zip(addresses(w.parts), [100, 200, 300, 0])), w.grid.address: -600}
    assert compensated(w, result.receipt) == shares(350, w.parts[:3])
    assert w.market.round_info(rid)["phase"] == "Settled"


def test_what_forfeits_nobody_may_share_goes_to_the_grid_account_not_locked(w):
    """Every participant stays to the end and withholds its reveal: each forfeits, nobody is left to
    share the pool, and it goes to the grid account instead of staying on the round for good."""
    subs = w.crew.submissions(0, VALUES)
    conclude(w, subs)
    past(w.chain, w.market.round_info(w.rid)["reveal_until"])
    started = settle_by_outsider(w, {})
    assert {f for _, f in w.market.blamed(started.receipt).values()} == {"WithheldReveal"}
    past_challenge_window(w)
    result = settle_by_outsider(w, {})
    assert compensated(w, result.receipt) == {w.grid.address: 4 * COLLATERAL}
    assert w.market.round_info(w.rid)["forfeited"] == 0 and w.market.round_info(w.rid)["phase"] == "Settled"
