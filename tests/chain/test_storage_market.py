"""StorageMarket (paper A: shared storage + P2P) and the generic round's pair messages on the embedded chain."""
from __future__ import annotations

import random
import secrets

import pytest
from eth_utils import keccak

from offchain.chain.backends import ContractRevert, connect
from offchain.chain.market import (Market, Reveal, RoundParams, StorageMarket, StorageTerms, commitment,
                                   pack_pair_messages, unpack_pair_messages)
from offchain.mechanisms.storage_settlement import settlement_amounts
from offchain.privacy.packing import SlotLayout
from offchain.privacy.paillier import generate_keypair

T = 2  # periods of the day
PERIODS = 3 + T  # slots per ciphertext: C^E, C^P, throughput, net grid per period
B, W = 40, 48
UNIT = 10**6
RENTS = [100_000, 50_000]  # s^E per kWh, s^P per kW
BAND = ([0, 0], [1_000_000, 1_000_000])
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


def _pack(values, masks, bits=B, width=W) -> int:
    return SlotLayout(len(values), bits, width, participants=1).pack(values, masks)


def reference(terms: StorageTerms, rents, reveals, members, pairs: bool, grid: str):
    """The settlement by the off-chain mirror of the contract's arithmetic (one test below also
    works a bill out by hand)."""
    s = settlement_amounts(terms, rents, reveals, pairs, members)
    payees = {terms.operator: s.payees["operator"], terms.centre: s.payees["centre"], grid: s.payees["grid"]}
    return s.amounts, payees, s.items


# ----------------------------------------------------------------------------- fixtures
class Env:
    pass


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.chain = connect()
    accts = e.chain.accounts(32, offset=40)
    e.op, e.coord, e.centre, e.grid, e.outsider = accts[:5]
    e.members = accts[5:8]  # member index 0, 1, 2
    e.more = accts[8:32]
    e.public, e.private = generate_keypair(1024)
    e.market = StorageMarket.deploy(e.chain, e.op)
    e.terms = make_terms(e, e.members)
    e.params = params_for(e, e.terms)
    e.rid, _ = e.market.create_round(e.coord, e.params)
    e.parts = [e.members[2], e.members[0], e.members[1]]  # registration order
    e.member_idx = [2, 0, 1]
    for i, p in enumerate(e.parts):
        e.market.register(p, e.rid, bytes([i + 1]) * 32)
    e.market.token.mint_many(e.op, [(a, 10**30) for a in e.parts + [e.grid, e.coord, e.centre, e.outsider]])
    for a in e.parts + [e.grid]:
        e.market.deposit(a, e.rid, 10**24)
    e.market.start(e.coord, e.rid, RENTS)
    return e


def make_terms(e, accounts, T_=T, **change) -> StorageTerms:
    M = len(accounts)
    kw = dict(operator=e.coord.address, centre=e.centre.address, members=[m.address for m in accounts],
              energy_cap=3_000_000, power_cap=2_000_000, capacity_slack=1_000, usage_price=20_000,
              storage_fee=[10_000, 20_000, 30_000][:M] if M <= 3 else [10_000 + i for i in range(M)],
              pair_fee=FEES if M == 3 else [1_000 + i for i in range(M * M)],
              grid_buy=[300_000, 250_000] if T_ == T else [300_000] * T_,
              grid_sell=[50_000, 40_000] if T_ == T else [50_000] * T_)
    kw.update(change)
    return StorageTerms(**kw)


def params_for(e, st: StorageTerms, pair_lanes=None, **change) -> RoundParams:
    kw = dict(n=e.public.n, periods=3 + st.periods, slot_bits=B, slot_width=W, max_iterations=3,
              price_floor=BAND[0], price_cap=BAND[1], grid_account=e.grid.address, verify_openings=False,
              mechanism='{"mechanism": "storage"}',
              pair_lanes=st.periods if pair_lanes is None else pair_lanes, terms=st.encode())
    kw.update(change)
    return RoundParams(**kw)


def state(e, rid=None):
    rid = rid or e.rid
    m = e.market
    accounts = e.members + [e.outsider, e.grid, e.coord, e.centre]
    return (
        m.round_info(rid), m.tariff(rid), m.final_sums(rid), m.participants(rid),
        [m.member(rid, a) for a in accounts], [m.balance(rid, a) for a in accounts],
        [m.token.balance_of(a) for a in accounts], m.contract.functions.roundCount().call(),
    )


def assert_rejected(e, name, fn, rid=None):
    before = state(e, rid)
    with pytest.raises(ContractRevert) as err:
        fn()
    assert err.value.name == name, str(err.value)
    assert state(e, rid) == before
    return err.value


def pair_blob(e, rid, lanes=T, seed=0):
    count = len(e.market.participants(rid))
    rnd = random.Random(seed)
    return pack_pair_messages([[rnd.randrange(1 << 64) for _ in range(lanes)] for _ in range(count - 1)])


def make_subs(e, values, rid=None, parts=None, committed=None, iteration=0, periods=PERIODS, bits=B, width=W,
              pair_lanes=T):
    rid = rid or e.rid
    parts = parts or e.parts
    rnd = random.Random(len(values) * 7 + iteration)
    masks = [[rnd.randrange(1 << bits) for _ in range(periods)] for _ in parts[:-1]]
    masks.append([(-sum(m[t] for m in masks)) % (1 << bits) for t in range(periods)])
    subs = []
    for i, (p, v, mk) in enumerate(zip(parts, values, masks)):
        shown = committed[i] if committed is not None else v
        salt = secrets.token_bytes(32)
        ct = e.public.to_bytes(e.public.encrypt(_pack(v[:periods], mk, bits, width)))
        pm = pair_blob(e, rid, pair_lanes, seed=i) if pair_lanes else b""
        subs.append(dict(p=p, values=shown, salt=salt, ct=ct, pm=pm,
                         cm=commitment(rid, iteration, p.address, shown, salt)))
    return subs


def conclude_with(e, values, rid=None, parts=None, committed=None, **kw):
    rid = rid or e.rid
    subs = make_subs(e, values, rid, parts, committed, **kw)
    receipts = e.market.submit_many([(s["p"], rid, 0, s["ct"], s["cm"], s["pm"]) for s in subs])
    agg, _ = e.market.aggregate(e.outsider, rid, [s["ct"] for s in subs], [s["cm"] for s in subs])
    m, rho = e.private.opening(int.from_bytes(agg, "big"))
    sums, _ = e.market.conclude(e.coord, rid, agg, m, rho)
    return subs, sums, receipts


def reveals(subs):
    return [Reveal(s["values"], s["salt"], keccak(s["ct"])) for s in subs]


# ----------------------------------------------------------------------------- creation and registration
def test_round_keeps_terms_members_and_pair_lanes(w):
    assert w.market.terms(w.rid) == w.terms
    assert [w.market.member_index(w.rid, m) for m in w.members] == [0, 1, 2]
    assert w.market.member_index(w.rid, w.outsider) is None
    info = w.market.round_info(w.rid)
    assert info["pair_lanes"] == T and info["periods"] == PERIODS and info["phase"] == "Iterating"
    assert w.market.contract.functions.priceBand(w.rid).call() == [BAND[0], BAND[1]]
    assert w.market.tariff(w.rid) == RENTS


def _bad_terms(e):
    three = e.members
    return [
        (dict(grid_buy=[], grid_sell=[]), {}, "grid prices length"),
        (dict(grid_sell=[50_000]), {}, "grid prices length"),
        ({}, dict(periods=PERIODS + 1), "periods"),
        ({}, dict(pair_lanes=1), "pair lanes"),
        ({}, dict(price_floor=[0, 0, 0], price_cap=[1, 1, 1]), "price band length"),
        (dict(members=[three[0].address], storage_fee=[1], pair_fee=[0]), {}, "members"),
        (dict(storage_fee=[1, 2]), {}, "storage fee length"),
        (dict(pair_fee=FEES[:-1]), {}, "pair fee length"),
        (dict(grid_sell=[50_000, 250_001]), {}, "grid sell above buy"),
        (dict(operator=e.outsider.address), {}, "operator"),
        (dict(centre="0x" + "00" * 20), {}, "centre"),
        (dict(members=[three[0].address, three[1].address, three[0].address]), {}, "duplicate member"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_terms_are_rejected(w, case):
    change, param_change, reason = _bad_terms(w)[case]
    terms = make_terms(w, w.members, **change)
    params = params_for(w, terms, **param_change)
    err = assert_rejected(w, "BadParameters", lambda: w.market.create_round(w.coord, params))
    assert err.error_args["reason"] == reason


@pytest.mark.parametrize("terms", [b"", b"\x01" * 31, b"\x00" * 352 + b"\x01",
                                   "offset", "long array", "wide uint64", "wide address"],
                         ids=["empty", "short", "head", "offset", "long array", "wide uint64", "wide address"])
def test_malformed_terms_encoding_is_rejected(w, terms):
    good = w.terms.encode()
    head = [int.from_bytes(good[i:i + 32], "big") for i in range(0, 12 * 32, 32)]
    word = lambda i, v: good[:32 * i] + v.to_bytes(32, "big") + good[32 * (i + 1):]  # noqa: E731
    if terms == "offset":  # members array offset far outside the data
        terms = word(1 + 2, 1 << 200)
    elif terms == "long array":  # gridSell claims more elements than there are bytes
        terms = good[:32 + head[1 + 10]] + (10**6).to_bytes(32, "big") + good[32 + head[1 + 10] + 32:]
    elif terms == "wide uint64":
        terms = word(1 + 3, 1 << 64)
    elif terms == "wide address":
        terms = word(1 + 1, 1 << 160)
    params = params_for(w, w.terms, terms=terms)
    err = assert_rejected(w, "BadParameters", lambda: w.market.create_round(w.coord, params))
    assert err.error_args["reason"] == "terms encoding"


def test_only_members_register(w):
    rid, _ = w.market.create_round(w.coord, w.params)
    err = assert_rejected(w, "NotMember", lambda: w.market.register(w.outsider, rid, b"\x01" * 32), rid)
    assert err.error_args == {"account": w.outsider.address}
    w.market.register(w.members[1], rid, b"\x01" * 32)
    assert w.market.participants(rid)[0][0] == w.members[1].address


def test_tariff_market_rejects_storage_terms(w):
    tariff = Market.deploy(w.chain, w.op, token_address=w.market.token.address)
    params = RoundParams(w.public.n, 5, B, W, 3, [1] * 5, [2] * 5, w.grid.address, False, "", 0, w.terms.encode())
    with pytest.raises(ContractRevert) as err:
        tariff.create_round(w.coord, params)
    assert err.value.name == "BadParameters" and err.value.error_args["reason"] == "terms"


# ----------------------------------------------------------------------------- pair messages
def test_submission_emits_decodable_pair_messages(w):
    s = make_subs(w, VALUES)[0]
    blocks = [[1, 2], [(1 << 64) - 1, 12345]]
    receipt = w.market.submit(s["p"], w.rid, 0, s["ct"], s["cm"], pack_pair_messages(blocks))
    (ev,) = w.chain.events(receipt, w.market.contract, "PairMessages")
    assert (ev["args"]["roundId"], ev["args"]["iteration"], ev["args"]["participant"]) == (w.rid, 0, s["p"].address)
    assert unpack_pair_messages(ev["args"]["messages"], T) == blocks
    assert w.market.pair_messages(receipt) == [pack_pair_messages(blocks)]
    # the pair messages are not part of the stored submission hash
    assert w.market.member(w.rid, s["p"])[0] == keccak(keccak(s["ct"]) + s["cm"])[:26]
    assert receipt["gasUsed"] < 70_000, receipt["gasUsed"]


@pytest.mark.parametrize("length", [0, 8, 2 * T * 8 - 1, 2 * T * 8 + 8])
def test_pair_messages_of_wrong_length_are_rejected(w, length):
    s = make_subs(w, VALUES)[0]
    err = assert_rejected(w, "PairMessagesLength",
                          lambda: w.market.submit(s["p"], w.rid, 0, s["ct"], s["cm"], b"\x07" * length))
    assert err.error_args == {"given": length, "expected": (3 - 1) * T * 8}


# ----------------------------------------------------------------------------- settlement
def test_round_settles_with_hand_computed_payments(w):
    subs, sums, receipts = conclude_with(w, VALUES)
    assert sums == [sum(v[t] for v in VALUES) for t in range(PERIODS)]
    assert all(len(w.market.pair_messages(r)) == 1 for r in receipts)
    exp_amounts, exp_payees, exp_bills = reference(w.terms, RENTS, VALUES, w.member_idx, True, w.grid.address)
    # participant 2 (member 1), by hand: imports 0.25 kWh at 0.25; buys 0.2 kWh from participant 0 at
    # 0.055 + 0.057 (fee row 1, seller member 2: 0.008) and 0.3 kWh from participant 1 at 0.058 + 0.059
    # (fee row 1, seller member 0: 0.007)
    assert exp_bills[2] == dict(rent=0, usage=0, grid=-250_000 * 250_000 * UNIT,
                                p2p=-(112_000 * 200_000 + 117_000 * 300_000) * UNIT,
                                transmission=-(8_000 * 200_000 + 7_000 * 300_000) * UNIT)
    assert exp_amounts[2] == -123_700_000_000_000_000
    # participant 0 (member 2): rent 2 kWh x 0.1 + 1 kW x 0.05; usage 3 kWh x 0.02; store fee 0.03
    assert exp_bills[0]["rent"] == -(100_000 * 2_000_000 + 50_000 * 1_000_000) * UNIT
    assert exp_bills[0]["usage"] == -20_000 * 3_000_000 * UNIT
    assert exp_bills[0]["grid"] == -(300_000 * 1_000_000 - 40_000 * 500_000) * UNIT

    assert w.market.quote(w.rid, VALUES) == (exp_amounts, exp_payees)
    before = {a.address: w.market.balance(w.rid, a) for a in w.parts + [w.grid, w.coord, w.centre]}
    payments, receipt = w.market.settle(w.outsider, w.rid, reveals(subs))
    assert payments == {**{p.address: a for p, a in zip(w.parts, exp_amounts)}, **exp_payees}
    assert sum(payments.values()) == 0
    for addr, amount in payments.items():
        assert w.market.balance(w.rid, addr) == before[addr] + amount
    bills = w.market.bills(receipt)
    assert bills == {p.address: b for p, b in zip(w.parts, exp_bills)}
    assert [e["args"]["participant"] for e in w.chain.events(receipt, w.market.contract, "Bill")] == \
        [p.address for p in w.parts]
    (settled,) = w.chain.events(receipt, w.market.contract, "Settled")
    assert dict(settled["args"]) == {"roundId": w.rid, "iteration": 0}
    assert w.market.round_info(w.rid)["phase"] == "Settled"
    # payees withdraw what they earned
    for a in (w.coord, w.centre):
        tok = w.market.token.balance_of(a)
        w.market.withdraw(a, w.rid)
        assert w.market.token.balance_of(a) == tok + payments[a.address]


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
    subs, _, _ = conclude_with(w, VALUES)
    short = reveals(subs)
    short[1] = Reveal(short[1].values[:PERIODS], short[1].salt, short[1].ciphertext_hash)
    err = assert_rejected(w, "RevealLength", lambda: w.market.settle(w.outsider, w.rid, short))
    assert err.error_args == {"participant": w.parts[1].address, "given": PERIODS, "expected": 13}


def test_round_without_pair_lanes_settles_storage_and_grid_only(w):
    params = params_for(w, w.terms, pair_lanes=0)
    rid, _ = w.market.create_round(w.coord, params)
    parts = w.members[:2]
    w.market.register_many([(p, rid, b"\x01" * 32) for p in parts])
    w.market.deposit_many([(a, rid, 10**24) for a in parts + [w.grid]])
    w.market.start(w.coord, rid, RENTS)
    vals = [VALUES[0][:PERIODS], VALUES[1][:PERIODS]]
    s = make_subs(w, vals, rid=rid, parts=parts, pair_lanes=0)[0]
    assert_rejected(w, "PairMessagesLength", lambda: w.market.submit(s["p"], rid, 0, s["ct"], s["cm"], b"\0" * 16),
                    rid)
    subs, _, receipts = conclude_with(w, vals, rid=rid, parts=parts, pair_lanes=0)
    assert not any(w.market.pair_messages(r) for r in receipts)
    exp_amounts, exp_payees, exp_bills = reference(w.terms, RENTS, vals, [0, 1], False, w.grid.address)
    payments, receipt = w.market.settle(w.outsider, rid, reveals(subs))
    assert payments == {**{p.address: a for p, a in zip(parts, exp_amounts)}, **exp_payees}
    assert sum(payments.values()) == 0
    assert all(b["p2p"] == 0 for b in w.market.bills(receipt).values())


# ----------------------------------------------------------------------------- gas
def test_ten_members_twenty_four_periods_settle_well_under_the_block_limit(w):
    n, T_ = 10, 24
    bits, width = 32, 37  # 27 slots x 37 bits fit a 1024-bit key
    members = w.more[:n]
    terms = make_terms(w, members, T_=T_, energy_cap=10**9, power_cap=10**9)
    params = params_for(w, terms, periods=3 + T_, slot_bits=bits, slot_width=width)
    rid, receipt = w.market.create_round(w.coord, params)
    create_gas = receipt["gasUsed"]
    w.market.register_many([(p, rid, bytes([i + 1]) * 32) for i, p in enumerate(members)])
    w.market.token.mint_many(w.op, [(a, 10**30) for a in members])
    w.market.deposit_many([(a, rid, 10**27) for a in members + [w.grid]])
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
    subs, _, receipts = conclude_with(w, vals, rid=rid, parts=members, periods=3 + T_, bits=bits, width=width,
                                      pair_lanes=T_)
    submit_gas = max(r["gasUsed"] for r in receipts)
    exp_amounts, exp_payees, _ = reference(terms, RENTS, vals, list(range(n)), True, w.grid.address)
    payments, receipt = w.market.settle(w.outsider, rid, reveals(subs))
    assert payments == {**{p.address: a for p, a in zip(members, exp_amounts)}, **exp_payees}
    assert sum(payments.values()) == 0
    print(f"storage round, 10 members x 24 periods x 9 partners: createRound {create_gas}, "
          f"submit {submit_gas}, settle {receipt['gasUsed']} gas")
    assert receipt["gasUsed"] < 10_000_000, receipt["gasUsed"]
    assert submit_gas < 150_000, submit_gas


def test_runtime_code_leaves_headroom_under_the_eip170_limit(env):
    """The settlement arithmetic lives in StorageSettlement (created by the constructor), so
    StorageMarket's runtime code stays at least 3 KiB below the 24,576-byte limit."""
    code = env.chain.w3.eth.get_code(env.market.address)
    assert len(code) <= 24_576 - 3 * 1024, len(code)
