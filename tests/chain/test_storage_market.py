"""StorageRule (paper A: shared storage + P2P) on the generic round core, and the core's pair
messages, allow-list and dropouts (a dropped participant is not settled), on the embedded chain."""
from __future__ import annotations

import dataclasses
import random

import pytest
from eth_utils import keccak

from offchain.chain.market import Reveal, RoundParams, Windows, deploy_rule, encode_abi, pack_pair_messages, \
    unpack_pair_messages
from offchain.mechanisms.storage.settlement import ITEMS, TERMS_ABI, StorageTerms, settlement_amounts
from offchain.privacy.packing import SlotLayout

from .helpers import (STANDING, ZERO, Crew, aggregate, assert_rejected, bad_parameters, deploy_env, events, fund,
                      keygen, open_round, past, reveal_all, reveals, submit)

T = 2  # periods of the day
SLOTS = 3 + T  # slots per ciphertext: C^E, C^P, throughput, net grid per period
B, W = 40, 48
UNIT = 10**6
RENTS = [100_000, 50_000]  # s^E per kWh, s^P per kW
BAND = ([0, 0], [1_000_000, 1_000_000])
WINDOWS = Windows(registration=50, submission=100, coordinator=100, challenge=0)  # openings unchecked
FEES = [  # pair fee, row-major [buyer][seller] by member index (asymmetric on purpose)
    0, 5_000, 6_000,
    7_000, 0, 8_000,
    9_000, 10_000, 0,
]

# Reveals in REGISTRATION order (members register as 2, 0, 1): 3 + T + 2 T (count - 1) = 13 values.
# [C^E, C^P, throughput, net0, net1, (trade0, trade1, half0, half1) per other participant]
VALUES = [
    [2_000_000, 1_000_000, 3_000_000, 1_000_000, -500_000,
     400_000, -100_000, 60_000, 70_000,   # with participant 1
     0, 200_000, 50_000, 55_000],         # with participant 2
    [1_000_000, 500_000, 0, -2_000_000, 0,
     -400_000, 100_000, 65_000, 72_000,   # with participant 0
     300_000, 0, 58_000, 61_000],         # with participant 2
    [0, 0, 0, 0, 250_000,
     0, -200_000, 52_000, 57_000,         # with participant 0
     -300_000, 0, 59_000, 60_000],        # with participant 1
]
REVEAL = 3 + T + 2 * T * 2


def encode(terms: StorageTerms) -> bytes:
    return encode_abi(TERMS_ABI, terms.as_tuple())


def reference(terms: StorageTerms, rents, reveals, members, pairs: bool, grid: str):
    """The settlement by the off-chain mirror of the rule's arithmetic (one test below also works
    a bill out by hand); positive = paid."""
    s = settlement_amounts(terms, rents, reveals, pairs, members)
    payees = {terms.operator: s.payees["operator"], terms.centre: s.payees["centre"], grid: s.payees["grid"]}
    return s.amounts, payees, s.items


def bill_lists(items):
    return [[it[k] for k in ITEMS] for it in items]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env():
    e = deploy_env(parts=0, more=27)
    e.centre, e.members, e.more = e.more[0], e.more[1:4], e.more[4:]  # member index 0, 1, 2
    e.key = keygen(1024)
    e.storage = deploy_rule(e.chain, "StorageRule", e.op)
    e.watch.append(e.centre.address)
    e.terms = make_terms(e, 3)
    e.params = params_for(e, e.terms, e.members)
    e.parts = [e.members[2], e.members[0], e.members[1]]  # registration order
    e.member_idx = [2, 0, 1]
    e.rid, e.crew = open_round(e, e.params, e.parts, e.key, deposit=10**24, prices=RENTS)
    return e


def make_terms(e, M, T_=T, **change) -> StorageTerms:
    kw = dict(operator=e.coord.address, centre=e.centre.address,
              energy_cap=3_000_000, power_cap=2_000_000, capacity_slack=1_000, usage_price=20_000,
              storage_fee=[10_000, 20_000, 30_000][:M] if M <= 3 else [10_000 + i for i in range(M)],
              pair_fee=FEES if M == 3 else [1_000 + i for i in range(M * M)],
              grid_buy=[300_000, 250_000] if T_ == T else [300_000] * T_,
              grid_sell=[50_000, 40_000] if T_ == T else [50_000] * T_)
    kw.update(change)
    return StorageTerms(**kw)


def params_for(e, st: StorageTerms, members, pair_lanes=None, **change) -> RoundParams:
    kw = dict(rule=e.storage, n=e.key.n, slots=3 + st.periods, slot_bits=B, slot_width=W, max_iterations=3,
              price_floor=BAND[0], price_cap=BAND[1], grid_account=e.grid.address, windows=WINDOWS,
              mechanism='{"mechanism": "storage-p2p"}',
              pair_lanes=st.periods if pair_lanes is None else pair_lanes, terms=encode(st),
              members=[m.address for m in members])
    kw.update(change)
    return RoundParams(**kw)


def pair_blob(e, rid, lanes=T, seed=0):
    count = e.market.round_info(rid)["active"]  # one block per other active participant
    rnd = random.Random(seed)
    return pack_pair_messages([[rnd.randrange(1 << 64) for _ in range(lanes)] for _ in range(count - 1)])


def make_subs(e, values, crew=None, committed=None, k=0, attempt=0, pair_lanes=T):
    """The submissions of the crew's active participants (default: the main round's): ``values``
    encrypted (their first slots) and committed (or ``committed``), with pair messages."""
    crew = crew or e.crew
    return [crew.seal(i, k, committed[i] if committed is not None else values[i], attempt,
                      encrypted=values[i][:crew.layout.periods],
                      pm=pair_blob(e, crew.rid, pair_lanes, seed=i) if pair_lanes else b"")
            for i in sorted(crew.active)]


def conclude_with(e, values, crew=None, committed=None, **kw):
    """Iteration 0 of a round with ``values``, concluded (storage rounds have no challenge
    window) and revealed by every participant."""
    crew = crew or e.crew
    subs = make_subs(e, values, crew, committed, **kw)
    receipts = submit(e, subs, crew.rid)
    agg, _ = aggregate(e, subs, crew.rid)
    m, rho = e.key.opening(agg)
    sums, _ = e.market.conclude(e.coord, crew.rid, agg, m, rho)
    reveal_all(e, subs, crew.rid)
    return subs, sums, receipts


def pair_messages(e, receipt):
    return [ev["messages"] for ev in events(e, receipt, "PairMessages")]


def storage_round(e, parts, members, terms=None, pair_lanes=0, prices=RENTS, **change):
    """A storage round of ``members`` (allow-list) with ``parts`` registered in that order, deposits
    of them and of the grid account, started at ``prices``; the round's crew and terms."""
    terms = terms or make_terms(e, len(members))
    p = params_for(e, terms, members, pair_lanes=pair_lanes, **change)
    _, crew = open_round(e, p, parts, e.key, deposit=10**27, prices=prices)
    return crew, terms


# ----------------------------------------------------------------------------- creation and registration
def test_round_keeps_terms_members_and_pair_lanes(w):
    assert w.market.terms(w.rid) == encode(w.terms)
    rule = w.chain.contract("StorageRule", w.storage)
    assert StorageTerms.from_tuple(rule.functions.decodeTerms(w.market.terms(w.rid)).call()) == w.terms
    assert [w.market.member_index(w.rid, m) for m in w.members] == [0, 1, 2]
    assert w.market.member_index(w.rid, w.outsider) is None
    info = w.market.round_info(w.rid)
    assert (info["pair_lanes"], info["slots"], info["phase"], info["rule"], info["allow_list"]) == \
        (T, SLOTS, "Iterating", w.storage, True)
    assert w.market.contract.functions.priceBand(w.rid).call() == [BAND[0], BAND[1]]
    assert w.market.prices(w.rid) == RENTS


def test_storage_rule_is_named_and_lists_its_bill_items(env):
    rule = env.chain.contract("StorageRule", env.storage)
    assert rule.functions.mechanism().call() == "storage-p2p"
    assert rule.functions.billItems().call() == list(ITEMS)
    assert rule.functions.revealLength(SLOTS, T, 3).call() == REVEAL
    assert rule.functions.revealLength(SLOTS, 0, 3).call() == SLOTS
    assert rule.functions.revealLength(SLOTS, T, 1).call() == SLOTS


BAD_TERMS = [  # (id, terms change, members (None: the three), round parameter change, reason), in the rule's order
    ("no key", {}, None, dict(n=None, slot_bits=0, slot_width=0), "key"),
    ("no grid prices", dict(grid_buy=[], grid_sell=[]), None, dict(slots=3), "grid prices length"),
    ("grid prices of two lengths", dict(grid_sell=[50_000]), None, {}, "grid prices length"),
    ("slots not 3 + T", {}, None, dict(slots=SLOTS + 1), "slots"),
    ("pair lanes neither 0 nor T", {}, None, dict(pair_lanes=1), "pair lanes"),
    ("three rents", {}, None, dict(price_floor=[0, 0, 0], price_cap=[1, 1, 1]), "price band length"),
    ("one member", dict(storage_fee=[1], pair_fee=[0]), 1, {}, "members"),
    ("open round", {}, 0, {}, "members"),
    ("storage fee per member", dict(storage_fee=[1, 2]), None, {}, "storage fee length"),
    ("pair fee per member pair", dict(pair_fee=FEES[:-1]), None, {}, "pair fee length"),
    ("grid sells above buy", dict(grid_sell=[50_000, 250_001]), None, {}, "grid sell above buy"),
    ("operator not the coordinator", "operator", None, {}, "operator"),
    ("no centre", dict(centre=ZERO), None, {}, "centre"),
    ("duplicate member", {}, "duplicate", {}, "members"),  # the core's check
    ("zero member", {}, "zero", {}, "members"),  # the core's check
]


@pytest.mark.parametrize("change, members, param_change, reason", [c[1:] for c in BAD_TERMS],
                         ids=[c[0] for c in BAD_TERMS])
def test_bad_terms_are_rejected(w, change, members, param_change, reason):
    change = dict(operator=w.outsider.address) if change == "operator" else change
    terms = make_terms(w, 3, **change)
    accounts = {None: w.members, 1: w.members[:1], 0: [], "duplicate": [w.members[0], w.members[1], w.members[0]],
                "zero": w.members[:2]}[members]
    p = params_for(w, terms, accounts, **param_change)
    if members == "zero":
        p = dataclasses.replace(p, members=p.members + [ZERO])
    bad_parameters(w, lambda: w.market.create_round(w.coord, p), reason)


def _malformed(good: bytes, which: str) -> bytes:
    head = [int.from_bytes(good[i:i + 32], "big") for i in range(0, 11 * 32, 32)]  # tuple offset, then 10 fields
    word = lambda i, v: good[:32 * i] + v.to_bytes(32, "big") + good[32 * (i + 1):]  # noqa: E731
    return {
        "empty": b"",
        "short": b"\x01" * 31,
        "head only": good[:11 * 32],  # the arrays' offsets point past the data
        "offset": word(1 + 6, 1 << 200),  # storageFee array offset far outside the data
        # gridSell claims more elements than there are bytes
        "long array": good[:32 + head[1 + 9]] + (10**6).to_bytes(32, "big") + good[32 + head[1 + 9] + 32:],
        "wide uint64": word(1 + 2, 1 << 64),  # energyCap
        "wide address": word(1 + 1, 1 << 160),  # centre
        "truncated": good[:-32],
    }[which]


@pytest.mark.parametrize("which", ["empty", "short", "head only", "offset", "long array", "wide uint64",
                                   "wide address", "truncated"])
def test_malformed_terms_encoding_is_rejected(w, which):
    p = dataclasses.replace(w.params, terms=_malformed(encode(w.terms), which))
    bad_parameters(w, lambda: w.market.create_round(w.coord, p), "terms encoding")


def test_only_members_register(w):
    rid, _ = w.market.create_round(w.coord, w.params)
    keys = Crew(w.market, rid, [w.members[1], w.outsider, w.more[0]], w.key).keys
    err = assert_rejected(w, "NotMember", lambda: w.market.register(w.outsider, rid, keys(1)), rid)
    assert err.error_args == {"account": w.outsider.address}
    assert_rejected(w, "NotMember", lambda: w.market.register(w.more[0], rid, keys(2)), rid)
    w.market.register(w.members[1], rid, keys(0))
    assert w.market.participants(rid) == [w.members[1].address]
    assert_rejected(w, "AlreadyRegistered", lambda: w.market.register(w.members[1], rid, keys(0)), rid)


def test_tariff_rule_rejects_storage_terms(w):
    p = RoundParams(rule=w.tariff, slots=5, max_iterations=3, price_floor=[1] * 5, price_cap=[2] * 5,
                    grid_account=w.grid.address, n=w.key.n, slot_bits=B, slot_width=W, terms=encode(w.terms),
                    windows=WINDOWS, members=[m.address for m in w.members])
    bad_parameters(w, lambda: w.market.create_round(w.coord, p), "terms")


# ----------------------------------------------------------------------------- pair messages
def test_submission_emits_decodable_pair_messages(w):
    s = make_subs(w, VALUES)[0]
    blocks = [[1, 2], [(1 << 64) - 1, 12345]]
    s.pm = pack_pair_messages(blocks)
    (receipt,) = submit(w, [s])
    (ev,) = events(w, receipt, "PairMessages")
    assert (ev["roundId"], ev["iteration"], ev["participant"]) == (w.rid, 0, s.p.address)
    assert unpack_pair_messages(ev["messages"], T) == blocks
    assert pair_messages(w, receipt) == [pack_pair_messages(blocks)]
    # the pair messages are not part of the stored submission hash
    assert w.market.member(w.rid, s.p)["submission_hash"] == keccak(keccak(s.ct) + s.cm)[:24]
    # ~90k at 1024 bits: the ciphertext's range and residue checks and the next mask point's curve check
    assert receipt["gasUsed"] < 110_000, receipt["gasUsed"]


@pytest.mark.parametrize("length", [0, 8, 2 * T * 8 - 1, 2 * T * 8 + 8])
def test_pair_messages_of_wrong_length_are_rejected(w, length):
    s = dataclasses.replace(make_subs(w, VALUES)[0], pm=b"\x07" * length)
    err = assert_rejected(w, "PairMessagesLength", lambda: submit(w, [s]))
    assert err.error_args == {"given": length, "expected": (3 - 1) * T * 8}


# ----------------------------------------------------------------------------- settlement
def test_round_settles_with_hand_computed_payments(w):
    subs, sums, receipts = conclude_with(w, VALUES)
    assert sums == [sum(v[t] for v in VALUES) for t in range(SLOTS)]
    assert all(len(pair_messages(w, r)) == 1 for r in receipts)
    exp_amounts, exp_payees, exp_bills = reference(w.terms, RENTS, VALUES, w.member_idx, True, w.grid.address)
    # participant 2 (member 1), by hand: imports 0.25 kWh at 0.25; buys 0.2 kWh from participant 0 at
    # 0.055 + 0.057 (fee row 1, seller member 2: 0.008) and 0.3 kWh from participant 1 at 0.058 + 0.059
    # (fee row 1, seller member 0: 0.007); positive = paid
    assert exp_bills[2] == dict(rent=0, usage=0, grid=250_000 * 250_000 * UNIT,
                                p2p=(112_000 * 200_000 + 117_000 * 300_000) * UNIT,
                                transmission=(8_000 * 200_000 + 7_000 * 300_000) * UNIT)
    assert exp_amounts[2] == 123_700_000_000_000_000
    # participant 0 (member 2): rent 2 kWh x 0.1 + 1 kW x 0.05; usage 3 kWh x 0.02; store fee 0.03
    assert exp_bills[0]["rent"] == (100_000 * 2_000_000 + 50_000 * 1_000_000) * UNIT
    assert exp_bills[0]["usage"] == 20_000 * 3_000_000 * UNIT
    assert exp_bills[0]["grid"] == (300_000 * 1_000_000 - 40_000 * 500_000) * UNIT
    # the operator and the centre earn: they are credited (negative)
    assert exp_payees[w.coord.address] < 0 and exp_payees[w.centre.address] < 0

    assert w.market.quote(w.rid, VALUES) == (exp_amounts, exp_payees, bill_lists(exp_bills))
    before = {a.address: w.market.balance(w.rid, a) for a in w.parts + [w.grid, w.coord, w.centre]}
    result = w.market.settle(w.outsider, w.rid, reveals(subs))
    assert result.payments == {**{p.address: a for p, a in zip(w.parts, exp_amounts)}, **exp_payees}
    assert sum(result.payments.values()) == 0
    for addr, amount in result.payments.items():
        assert w.market.balance(w.rid, addr) == before[addr] - amount
    assert result.bills == {p.address: b for p, b in zip(w.parts, bill_lists(exp_bills))}
    assert [e["participant"] for e in events(w, result.receipt, "Bill")] == [p.address for p in w.parts]
    assert [e["account"] for e in events(w, result.receipt, "Payment")] == \
        [p.address for p in w.parts] + [w.coord.address, w.centre.address, w.grid.address]
    assert events(w, result.receipt, "Settled") == [{"roundId": w.rid, "iteration": 0}]
    assert w.market.round_info(w.rid)["phase"] == "Settled"
    # payees withdraw what they earned
    for a in (w.coord, w.centre):
        tok = w.market.token.balance_of(a)
        w.market.withdraw(a, w.rid)
        assert w.market.token.balance_of(a) == tok - result.payments[a.address]


def test_fees_follow_member_indices_not_registration_order(w):
    """Members 2, 0 and 3 register (in that order), member 1 never does: each pays the storage fee
    of its own index in the allow-list."""
    members = w.members + [w.more[0]]
    order = [members[2], members[0], members[3]]
    terms = make_terms(w, 4, storage_fee=[10_000, 20_000, 30_000, 40_000])
    crew, _ = storage_round(w, order, members, terms=terms)
    vals = [[0, 0, 1_000_000, 0, 0], [0, 0, 2_000_000, 0, 0], [0, 0, 3_000_000, 0, 0]]  # throughput only
    subs, _, _ = conclude_with(w, vals, crew, pair_lanes=0)
    result = w.market.settle(w.outsider, crew.rid, reveals(subs))
    transmission = ITEMS.index("transmission")
    assert result.bills[order[0].address][transmission] == 30_000 * 1_000_000 * UNIT  # storage_fee[2]
    assert result.bills[order[1].address][transmission] == 10_000 * 2_000_000 * UNIT  # storage_fee[0]
    assert result.bills[order[2].address][transmission] == 40_000 * 3_000_000 * UNIT  # storage_fee[3]
    exp_amounts, exp_payees, exp_bills = reference(terms, RENTS, vals, [2, 0, 3], False, w.grid.address)
    assert result.payments == {**{p.address: a for p, a in zip(order, exp_amounts)}, **exp_payees}
    assert result.bills == {p.address: b for p, b in zip(order, bill_lists(exp_bills))}
    # registration order would have charged other fees
    assert reference(terms, RENTS, vals, [0, 1, 2], False, w.grid.address)[0] != exp_amounts


def test_mismatched_trades_are_rejected(w):
    lie = [list(v) for v in VALUES]
    lie[2][9] = -299_999  # participant 2's view of its trade with participant 1, period 0
    subs, _, _ = conclude_with(w, VALUES, committed=lie)  # the encrypted slots still add up
    err = assert_rejected(w, "TradeMismatch", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert err.error_args == {"a": w.parts[1].address, "b": w.parts[2].address, "period": 0}


@pytest.mark.parametrize("which, index, value", [(0, 0, -1), (1, 2, -5)])
def test_negative_quantities_are_rejected(w, which, index, value):
    vals = [list(v) for v in VALUES]
    other = (which + 1) % 3  # keep the column sums of the capacities non-negative and in range
    vals[other][index] += vals[which][index] - value
    vals[which][index] = value
    subs, _, _ = conclude_with(w, vals)
    err = assert_rejected(w, "NegativeQuantity", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert err.error_args == {"participant": w.parts[which].address, "index": index}


@pytest.mark.parametrize("which", [0, 1])
def test_capacity_overbooking_is_rejected(w, which):
    vals = [list(v) for v in VALUES]
    cap = (w.terms.energy_cap, w.terms.power_cap)[which] + w.terms.capacity_slack
    total = sum(v[which] for v in vals)
    vals[2][which] += cap - total  # exactly at the limit: accepted by quote
    assert w.market.quote(w.rid, vals)[0]
    vals[2][which] += 1
    subs, _, _ = conclude_with(w, vals)
    err = assert_rejected(w, "CapacityExceeded", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert err.error_args == {"which": which, "total": cap + 1, "limit": cap}


def test_reveals_must_have_the_storage_length(w):
    subs = make_subs(w, VALUES)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    w.market.conclude(w.coord, w.rid, agg, *w.key.opening(agg))
    s = subs[1]
    err = assert_rejected(w, "RevealLength", lambda: w.market.reveal_many(
        [(s.p, w.rid, Reveal(s.values[:SLOTS], s.salt, keccak(s.ct)))]))
    assert err.error_args == {"participant": s.p.address, "given": SLOTS, "expected": REVEAL}
    reveal_all(w, subs)
    short = reveals(subs)
    short[1] = Reveal(short[1].values[:SLOTS], short[1].salt, short[1].ciphertext_hash)
    err = assert_rejected(w, "RevealLength", lambda: w.market.settle(w.outsider, w.rid, short))
    assert err.error_args == {"participant": ZERO, "given": 2 * REVEAL + SLOTS, "expected": 3 * REVEAL}


def test_round_without_pair_lanes_settles_storage_and_grid_only(w):
    parts = w.members
    crew, _ = storage_round(w, parts, w.members, terms=w.terms)
    vals = [v[:SLOTS] for v in VALUES]
    s = make_subs(w, vals, crew, pair_lanes=0)[0]
    s.pm = b"\0" * 16
    assert_rejected(w, "PairMessagesLength", lambda: submit(w, [s], crew.rid), crew.rid)
    subs, _, receipts = conclude_with(w, vals, crew, pair_lanes=0)
    assert not any(pair_messages(w, r) for r in receipts)
    exp_amounts, exp_payees, exp_bills = reference(w.terms, RENTS, vals, [0, 1, 2], False, w.grid.address)
    result = w.market.settle(w.outsider, crew.rid, reveals(subs))
    assert result.payments == {**{p.address: a for p, a in zip(parts, exp_amounts)}, **exp_payees}
    assert sum(result.payments.values()) == 0
    assert all(b[ITEMS.index("p2p")] == 0 for b in result.bills.values())


# ----------------------------------------------------------------------------- dropouts
@pytest.mark.parametrize("revealed", [True, False], ids=["dropped revealed", "dropped silent"])
def test_dropped_participant_is_not_settled_and_no_trade_with_it_counts(w, revealed):
    """Four members trade with pair lanes; member 3 misses iteration 1 and is dropped: the others
    submit again, their pair messages one block shorter, the survivors settle among themselves
    (their blocks for member 3, however they read, count for nothing), member 3 gets an empty
    bill and pays nothing, whether it reveals its last commitment or nothing."""
    members = w.members + [w.more[0]]
    terms = make_terms(w, 4)
    crew, _ = storage_round(w, members, members, terms=terms, pair_lanes=T)
    rid = crew.rid
    length = 3 + T + 2 * T * 3
    rnd = random.Random(17)

    def vals():
        out = []
        for i in range(4):
            v = [rnd.randint(0, 500_000), rnd.randint(0, 400_000), rnd.randint(0, 900_000)]
            v += [rnd.randint(-900_000, 900_000) for _ in range(T)]
            v += [0] * (length - len(v))
            out.append(v)
        for a in range(3):  # consistent trades among the survivors; member 3 claims trades nobody agreed to
            for c in range(a + 1, 3):
                q = [rnd.randint(-300_000, 300_000) for _ in range(T)]
                oa, oc = 3 + T + (c - 1) * 2 * T, 3 + T + a * 2 * T
                out[a][oa:oa + 2 * T] = q + [rnd.randint(40_000, 60_000) for _ in range(T)]
                out[c][oc:oc + 2 * T] = [-x for x in q] + [rnd.randint(40_000, 60_000) for _ in range(T)]
            out[a][3 + T + 2 * 2 * T:3 + T + 3 * 2 * T] = [123_456] * T + [50_000] * T  # a's block for member 3
        out[3][3 + T:] = [777_777] * (length - 3 - T)
        return out

    first = make_subs(w, vals(), crew)
    assert all(len(s.pm) == 3 * T * 8 for s in first)
    submit(w, first, rid)
    agg, _ = aggregate(w, first, rid)
    w.market.publish(w.coord, rid, agg, *w.key.opening(agg), RENTS)
    final = vals()
    submit(w, make_subs(w, final, crew, k=1)[:3], rid)  # member 3 does not submit
    past(w.chain, w.market.round_info(rid)["deadline"])
    receipt = w.market.advance(w.outsider, rid, [members[3]])
    assert events(w, receipt, "Dropped")[0]["participant"] == members[3].address
    assert w.market.member(rid, members[3])["dropped_before_plus_one"] == 2
    crew.drop(members[3])
    again = make_subs(w, final, crew, k=1, attempt=1)
    assert all(len(s.pm) == 2 * T * 8 for s in again)  # pair_blob counts the active participants
    err = assert_rejected(w, "PairMessagesLength", lambda: submit(w, [dataclasses.replace(again[0], pm=first[0].pm)],
                                                                  rid), rid)
    assert err.error_args == {"given": 3 * T * 8, "expected": 2 * T * 8}
    submit(w, again, rid)
    agg, _ = aggregate(w, again, rid)
    sums, _ = w.market.conclude(w.coord, rid, agg, *w.key.opening(agg))
    assert sums == [sum(v[t] for v in final[:3]) for t in range(SLOTS)]  # member 3 is in no sum
    reveal_all(w, again + (first[3:] if revealed else []), rid)
    dropped = first[3]
    values = final[:3] + [dropped.values if revealed else [0] * length]
    standing = [STANDING["Final"]] * 3 + [STANDING["DroppedRevealed" if revealed else "DroppedSilent"]]
    s = settlement_amounts(terms, RENTS, values, True, [0, 1, 2, 3], standing)
    exp_payees = {terms.operator: s.payees["operator"], terms.centre: s.payees["centre"],
                  w.grid.address: s.payees["grid"]}
    if not revealed:
        past(w.chain, w.market.round_info(rid)["reveal_until"])  # the dropped may reveal until then
    result = w.market.settle(w.outsider, rid, reveals(again) + [dropped.reveal() if revealed else None])
    assert result.payments == {**{p.address: a for p, a in zip(members, s.amounts)}, **exp_payees}
    assert result.payments[members[3].address] == 0 and result.bills[members[3].address] == [0] * len(ITEMS)
    assert sum(result.payments.values()) == 0
    # the survivors' trades with each other count, their blocks for member 3 do not
    assert any(b[ITEMS.index("p2p")] != 0 for b in result.bills.values())
    assert s.amounts[:3] == settlement_amounts(terms, RENTS, [[*v[:3 + T + 2 * 2 * T], *[0] * 2 * T] for v in final[:3]]
                                               + [[0] * length], True, [0, 1, 2, 3], standing).amounts[:3]


# ----------------------------------------------------------------------------- gas
def test_ten_members_twenty_four_periods_settle_well_under_the_block_limit(w):
    n, T_ = 10, 24
    bits, width = 32, 36  # 27 slots and the check slot x 36 bits fit a 1024-bit key
    members = w.more[:n]
    terms = make_terms(w, n, T_=T_, energy_cap=10**9, power_cap=10**9)
    p = params_for(w, terms, members, slots=3 + T_, slot_bits=bits, slot_width=width)
    rid, receipt = w.market.create_round(w.coord, p)
    create_gas = receipt["gasUsed"]
    crew = Crew(w.market, rid, members, w.key, SlotLayout(3 + T_, bits, width, n), lanes=True)
    w.market.register_many([(a, rid, crew.keys(i)) for i, a in enumerate(members)])
    fund(w, rid, members + [w.grid], 10**27)
    w.market.start(w.coord, rid, RENTS)
    rnd = random.Random(5)
    trades = {}
    for a in range(n):
        for c in range(a + 1, n):
            trades[a, c] = [rnd.randint(-500_000, 500_000) for _ in range(T_)]
    vals = []
    for i in range(n):
        v = [rnd.randint(0, 1_000_000), rnd.randint(0, 500_000), rnd.randint(0, 2_000_000)]
        v += [rnd.randint(-2_000_000, 2_000_000) for _ in range(T_)]
        for j in range(n):
            if j == i:
                continue
            trade = trades[i, j] if i < j else [-x for x in trades[j, i]]
            v += trade + [rnd.randint(40_000, 80_000) for _ in range(T_)]
        vals.append(v)
    subs, _, receipts = conclude_with(w, vals, crew, pair_lanes=T_)
    submit_gas = max(r["gasUsed"] for r in receipts)
    exp_amounts, exp_payees, _ = reference(terms, RENTS, vals, list(range(n)), True, w.grid.address)
    result = w.market.settle(w.outsider, rid, reveals(subs))
    assert result.payments == {**{p.address: a for p, a in zip(members, exp_amounts)}, **exp_payees}
    assert sum(result.payments.values()) == 0
    settle_gas = result.receipt["gasUsed"]
    print(f"storage round, 10 members x 24 periods x 9 partners: createRound {create_gas}, "
          f"submit {submit_gas}, settle {settle_gas} gas")
    assert settle_gas < 10_000_000, settle_gas
    assert submit_gas < 160_000, submit_gas
