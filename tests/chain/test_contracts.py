"""TariffMarket / PrivateRounds / BigMod / PackedSlots on the embedded chain (Prague rules)."""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

import pytest
from eth_utils import keccak

from offchain.chain.backends import ContractRevert, connect
from offchain.chain.market import Market, Reveal, RoundParams, commitment
from offchain.mechanisms.tariff import settlement
from offchain.privacy.packing import SlotLayout
from offchain.privacy.paillier import PrivateKey, PublicKey, generate_keypair

T, B, W = 6, 40, 48
FLOOR = [50_000, 60_000, 40_000, 50_000, 55_000, 45_000]
CAP = [300_000, 280_000, 320_000, 300_000, 310_000, 290_000]
TARIFF0 = [100_000] * T
UNIT = 10**6


# ----------------------------------------------------------------------------- Paillier helpers
@dataclass
class Key:
    """Test shorthand over offchain.privacy's key pair."""
    public: PublicKey
    private: PrivateKey

    n = property(lambda self: self.public.n)
    nsq = property(lambda self: self.public.n_sq)
    nbytes = property(lambda self: self.public.nbytes)

    def enc(self, m: int) -> int:
        return self.public.encrypt(m)

    def dec(self, c: int) -> int:
        return self.private.decrypt(c)

    def opening(self, c: int) -> tuple[int, int]:
        return self.private.opening(c)

    def ct(self, c: int) -> bytes:
        return self.public.to_bytes(c)


def keygen(bits: int) -> Key:
    return Key(*generate_keypair(bits))


def _layout(periods: int = T, bits: int = B, width: int = W) -> SlotLayout:
    return SlotLayout(periods, bits, width, participants=1)  # one participant: the full B-bit range


def pack(values, masks=None, bits=B, width=W) -> int:
    return _layout(len(values), bits, width).pack(values, masks)


def py_decode(m: int, periods: int, bits: int, width: int) -> list[int]:
    return _layout(periods, bits, width).unpack_sums(m)


# ----------------------------------------------------------------------------- fixtures
class Env:
    pass


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.chain = connect()
    accts = e.chain.accounts(40)
    e.op, e.coord, e.grid, e.outsider = accts[:4]
    e.parts = accts[4:7]  # three participants of the main round
    e.more = accts[7:40]
    e.key = keygen(1024)
    e.market = Market.deploy(e.chain, e.op)
    e.harness = e.chain.deploy("LibHarness", sender=e.op)
    e.params = RoundParams(e.key.n, T, B, W, 3, FLOOR, CAP, e.grid.address, True)
    e.rid, _ = e.market.create_round(e.coord, e.params)
    for i, p in enumerate(e.parts):
        e.market.register(p, e.rid, bytes([i + 1]) * 32)
    e.market.token.mint_many(e.op, [(a, 10**30) for a in e.parts + [e.grid, e.outsider]])
    for a in e.parts + [e.grid]:
        e.market.deposit(a, e.rid, 10**24)
    e.market.start(e.coord, e.rid, TARIFF0)
    return e


def state(e, rid=None):
    rid = rid or e.rid
    m = e.market
    return (
        m.round_info(rid), m.tariff(rid), m.final_sums(rid),
        [m.member(rid, a) for a in e.parts + [e.outsider]],
        [m.balance(rid, a) for a in e.parts + [e.grid, e.outsider]],
        [m.token.balance_of(a) for a in e.parts + [e.grid, e.outsider]],
        m.contract.functions.roundCount().call(),
    )


def assert_rejected(e, name, fn, rid=None):
    before = state(e, rid)
    with pytest.raises(ContractRevert) as err:
        fn()
    assert err.value.name == name, str(err.value)
    assert state(e, rid) == before
    return err.value


def make_submissions(e, iteration=0, values=None, rid=None, parts=None, masks=True, key=None):
    rid = rid or e.rid
    parts = parts or e.parts
    key = key or e.key
    rnd = random.Random(iteration * 1000 + len(parts))
    values = values or [[rnd.randint(-3_000_000, 3_000_000) for _ in range(T)] for _ in parts]
    mask = [[0] * T for _ in parts]
    if masks:  # pairwise-style masks that cancel modulo 2^B
        for i in range(len(parts) - 1):
            mask[i] = [rnd.randrange(1 << B) for _ in range(T)]
        mask[-1] = [(-sum(mask[i][t] for i in range(len(parts) - 1))) % (1 << B) for t in range(T)]
    subs = []
    for p, v, mk in zip(parts, values, mask):
        c = key.ct(key.enc(pack(v, mk)))
        salt = secrets.token_bytes(32)
        subs.append(dict(p=p, values=v, salt=salt, ct=c, cm=commitment(rid, iteration, p.address, v, salt)))
    return subs


def submit_all(e, subs, rid=None, iteration=0):
    return e.market.submit_many([(s["p"], rid or e.rid, iteration, s["ct"], s["cm"]) for s in subs])


def aggregate(e, subs, rid=None):
    return e.market.aggregate(e.outsider, rid or e.rid, [s["ct"] for s in subs], [s["cm"] for s in subs])


def reveals(subs):
    return [Reveal(s["values"], s["salt"], keccak(s["ct"])) for s in subs]


# ----------------------------------------------------------------------------- round set-up
def test_round_is_set_up_with_modulus_square_on_chain(w):
    info = w.market.round_info(w.rid)
    assert info["phase"] == "Iterating" and info["iteration"] == 0
    assert info["coordinator"] == w.coord.address
    assert int.from_bytes(w.market.contract.functions.modulus(w.rid).call(), "big") == w.key.n
    code = w.chain.w3.eth.get_code(info["key_data"])
    assert code[0] == 0 and int.from_bytes(code[1:1 + 2 * w.key.nbytes], "big") == w.key.n ** 2
    assert w.market.participants(w.rid) == [(p.address, bytes([i + 1]) * 32) for i, p in enumerate(w.parts)]
    assert w.market.tariff(w.rid) == TARIFF0


@pytest.mark.parametrize("change, reason", [
    (dict(n=0), "modulus length"),
    (dict(even=True), "modulus even"),
    (dict(periods=0), "periods"),
    (dict(slot_bits=65, slot_width=70), "slot bits"),
    (dict(slot_width=B), "slot width"),
    (dict(periods=30), "slots exceed plaintext"),
    (dict(max_iterations=0), "iteration cap"),
    (dict(price_floor=FLOOR[:-1]), "price band length"),
    (dict(price_floor=[CAP[0] + 1] + FLOOR[1:]), "price floor above cap"),
    (dict(grid_account="0x" + "00" * 20), "grid account"),
])
def test_bad_round_parameters_are_rejected(w, change, reason):
    kw = dict(n=w.key.n, periods=T, slot_bits=B, slot_width=W, max_iterations=3, price_floor=FLOOR,
              price_cap=CAP, grid_account=w.grid.address, verify_openings=False)
    even = change.pop("even", False)
    kw.update(change)
    if even:
        kw["n"] = w.key.n + 1
    if kw["periods"] == 30:
        kw["price_floor"], kw["price_cap"] = [1] * 30, [2] * 30
    if kw["periods"] == 0:
        kw["price_floor"], kw["price_cap"] = [], []
    if kw["n"] == 0:
        fn = lambda: w.chain.transact(w.market.contract.functions.createRound(
            (b"", T, B, W, 3, FLOOR, CAP, w.grid.address, False, "", 0, b"")), w.coord)
    else:
        fn = lambda: w.market.create_round(w.coord, RoundParams(**kw))
    err = assert_rejected(w, "BadParameters", fn)
    assert err.error_args["reason"] == reason


@pytest.mark.parametrize("change, reason", [
    (dict(price_floor=FLOOR[:-1], price_cap=CAP[:-1]), "price band length"),  # generic check passes
    (dict(price_floor=[], price_cap=[]), "price band length"),  # generic: at least one price
    (dict(pair_lanes=T), "pair lanes"),
    (dict(terms=b"\x01"), "terms"),
])
def test_tariff_market_rejects_parameters_of_other_mechanisms(w, change, reason):
    params = RoundParams(**{**w.params.__dict__, **change})
    err = assert_rejected(w, "BadParameters", lambda: w.market.create_round(w.coord, params))
    assert err.error_args["reason"] == reason


def test_tariff_round_info_has_no_pair_lanes(w):
    assert w.market.round_info(w.rid)["pair_lanes"] == 0


def test_tariff_round_rejects_pair_messages(w):
    s = make_submissions(w)[0]
    err = assert_rejected(w, "PairMessagesLength",
                          lambda: w.market.submit(s["p"], w.rid, 0, s["ct"], s["cm"], b"\0" * 8))
    assert err.error_args == {"given": 8, "expected": 0}


def test_unknown_round_is_rejected(w):
    err = assert_rejected(w, "UnknownRound", lambda: w.market.register(w.outsider, 999, b"\x01" * 32))
    assert str(err) == "UnknownRound(roundId=999)"


def test_registration_after_start_is_rejected(w):
    assert_rejected(w, "WrongPhase", lambda: w.market.register(w.outsider, w.rid, b"\x09" * 32))


def test_second_registration_is_rejected(w):
    rid, _ = w.market.create_round(w.coord, w.params)
    w.market.register(w.parts[0], rid, b"\x01" * 32)
    err = assert_rejected(w, "AlreadyRegistered", lambda: w.market.register(w.parts[0], rid, b"\x02" * 32), rid)
    assert err.error_args["participant"] == w.parts[0].address


def test_grid_account_cannot_register(w):
    rid, _ = w.market.create_round(w.coord, w.params)
    assert_rejected(w, "GridAccountCannotRegister", lambda: w.market.register(w.grid, rid, b"\x01" * 32), rid)


def test_too_many_participants_are_rejected(w):
    params = RoundParams(w.key.n, T, B, B + 2, 3, FLOOR, CAP, w.grid.address, False)  # headroom 2 bits: max 3
    rid, _ = w.market.create_round(w.coord, params)
    for p in w.more[:3]:
        w.market.register(p, rid, b"\x01" * 32)
    err = assert_rejected(w, "TooManyParticipants", lambda: w.market.register(w.more[3], rid, b"\x01" * 32), rid)
    assert err.error_args["maximum"] == 3


def test_start_needs_two_participants(w):
    rid, _ = w.market.create_round(w.coord, w.params)
    w.market.register(w.more[0], rid, b"\x01" * 32)
    assert_rejected(w, "TooFewParticipants", lambda: w.market.start(w.coord, rid, TARIFF0), rid)


def test_only_the_coordinator_starts_a_round(w):
    rid, _ = w.market.create_round(w.coord, w.params)
    for p in w.more[:2]:
        w.market.register(p, rid, b"\x01" * 32)
    err = assert_rejected(w, "NotCoordinator", lambda: w.market.start(w.outsider, rid, TARIFF0), rid)
    assert err.error_args == {"caller": w.outsider.address, "coordinator": w.coord.address}


def test_start_rejects_tariff_outside_band_or_of_wrong_length(w):
    rid, _ = w.market.create_round(w.coord, w.params)
    for p in w.more[:2]:
        w.market.register(p, rid, b"\x01" * 32)
    bad = list(TARIFF0)
    bad[2] = CAP[2] + 1
    err = assert_rejected(w, "TariffOutOfBand", lambda: w.market.start(w.coord, rid, bad), rid)
    assert err.error_args == {"period": 2, "price": CAP[2] + 1, "floor": FLOOR[2], "cap": CAP[2]}
    bad[2] = FLOOR[2] - 1
    assert_rejected(w, "TariffOutOfBand", lambda: w.market.start(w.coord, rid, bad), rid)
    assert_rejected(w, "TariffLength", lambda: w.market.start(w.coord, rid, TARIFF0[:-1]), rid)


def test_deposit_and_withdraw_guard_amounts_and_phases(w):
    assert_rejected(w, "ZeroAmount", lambda: w.chain.transact(w.market.contract.functions.deposit(w.rid, 0), w.outsider))
    assert_rejected(w, "WrongPhase", lambda: w.market.withdraw(w.parts[0], w.rid))
    rid, _ = w.market.create_round(w.coord, w.params)
    w.market.deposit(w.outsider, rid, 1234)
    assert w.market.balance(rid, w.outsider) == 1234
    before = w.market.token.balance_of(w.outsider)
    w.market.withdraw(w.outsider, rid)  # allowed before the round starts
    assert w.market.token.balance_of(w.outsider) == before + 1234
    assert_rejected(w, "ZeroAmount", lambda: w.market.withdraw(w.outsider, rid), rid)


# ----------------------------------------------------------------------------- submissions
def test_submission_stores_one_hash_and_emits_event(w):
    s = make_submissions(w)[0]
    receipt = w.market.submit(s["p"], w.rid, 0, s["ct"], s["cm"])
    h, pos, it = w.market.member(w.rid, s["p"])
    assert (pos, it) == (1, 1)
    assert h == keccak(keccak(s["ct"]) + s["cm"])[:26]
    ev = w.chain.events(receipt, w.market.contract, "Submitted")[0]["args"]
    assert (ev["roundId"], ev["iteration"], ev["participant"]) == (w.rid, 0, s["p"].address)


def test_unregistered_sender_cannot_submit(w):
    s = make_submissions(w)[0]
    err = assert_rejected(w, "NotRegistered", lambda: w.market.submit(w.outsider, w.rid, 0, s["ct"], s["cm"]))
    assert err.error_args["account"] == w.outsider.address


def test_wrong_iteration_is_rejected(w):
    s = make_submissions(w)[0]
    err = assert_rejected(w, "WrongIteration", lambda: w.market.submit(s["p"], w.rid, 1, s["ct"], s["cm"]))
    assert err.error_args == {"given": 1, "current": 0}


def test_submission_to_unknown_round_is_rejected(w):
    s = make_submissions(w)[0]
    assert_rejected(w, "UnknownRound", lambda: w.market.submit(s["p"], 77, 0, s["ct"], s["cm"]))


def test_second_submission_is_rejected(w):
    s = make_submissions(w)[0]
    w.market.submit(s["p"], w.rid, 0, s["ct"], s["cm"])
    err = assert_rejected(w, "AlreadySubmitted", lambda: w.market.submit(s["p"], w.rid, 0, s["ct"], s["cm"]))
    assert str(err) == f"AlreadySubmitted(participant={s['p'].address}, iteration=0)"


def test_ciphertext_of_wrong_length_is_rejected(w):
    s = make_submissions(w)[0]
    err = assert_rejected(w, "CiphertextLength", lambda: w.market.submit(s["p"], w.rid, 0, s["ct"][1:], s["cm"]))
    assert err.error_args == {"given": 2 * w.key.nbytes - 1, "expected": 2 * w.key.nbytes}


@pytest.mark.parametrize("which", ["zero", "n_squared", "above"])
def test_ciphertext_outside_range_is_rejected(w, which):
    value = {"zero": 0, "n_squared": w.key.nsq, "above": (1 << (16 * w.key.nbytes)) - 1}[which]
    s = make_submissions(w)[0]
    assert_rejected(w, "CiphertextOutOfRange", lambda: w.market.submit(s["p"], w.rid, 0, w.key.ct(value), s["cm"]))


def test_submission_before_start_is_rejected(w):
    rid, _ = w.market.create_round(w.coord, w.params)
    w.market.register(w.more[0], rid, b"\x01" * 32)
    s = make_submissions(w)[0]
    err = assert_rejected(w, "WrongPhase", lambda: w.market.submit(w.more[0], rid, 0, s["ct"], s["cm"]), rid)
    assert err.error_args["current"] == 0 and err.error_args["expected"] == 1


# ----------------------------------------------------------------------------- aggregation
def test_onchain_aggregate_equals_python_product(w):
    subs = make_submissions(w)
    submit_all(w, subs)
    agg, receipt = aggregate(w, subs)
    expected = 1
    for s in subs:
        expected = expected * int.from_bytes(s["ct"], "big") % w.key.nsq
    assert int.from_bytes(agg, "big") == expected
    # and it decrypts to the packed sums (masks cancel)
    m = w.key.dec(expected)
    assert py_decode(m, T, B, W) == [sum(s["values"][t] for s in subs) for t in range(T)]
    assert w.market.round_info(w.rid)["aggregated"] is True


def test_aggregation_before_all_submitted_is_rejected(w):
    subs = make_submissions(w)
    submit_all(w, subs[:2])
    err = assert_rejected(w, "SubmissionMissing", lambda: aggregate(w, subs))
    assert err.error_args == {"participant": w.parts[2].address, "iteration": 0}


def test_aggregate_rejects_substituted_ciphertext_or_wrong_count(w):
    subs = make_submissions(w)
    submit_all(w, subs)
    forged = [dict(s) for s in subs]
    forged[1]["ct"] = w.key.ct(w.key.enc(5))
    err = assert_rejected(w, "SubmissionMismatch", lambda: aggregate(w, forged))
    assert err.error_args["participant"] == w.parts[1].address
    swapped = [subs[1], subs[0], subs[2]]
    assert_rejected(w, "SubmissionMismatch", lambda: aggregate(w, swapped))
    assert_rejected(w, "SubmissionCount", lambda: aggregate(w, subs[:2]))


def test_aggregating_twice_is_rejected(w):
    subs = make_submissions(w)
    submit_all(w, subs)
    aggregate(w, subs)
    assert_rejected(w, "AlreadyAggregated", lambda: aggregate(w, subs))


# ----------------------------------------------------------------------------- publish / conclude
@pytest.fixture
def aggregated(w):
    subs = make_submissions(w)
    submit_all(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(int.from_bytes(agg, "big"))
    return w, subs, agg, m, rho


def test_publish_or_conclude_before_aggregation_is_rejected(w):
    subs = make_submissions(w)
    submit_all(w, subs)
    fake = w.key.ct(1)
    assert_rejected(w, "NotAggregated", lambda: w.market.publish(w.coord, w.rid, fake, 0, 1, TARIFF0))
    assert_rejected(w, "NotAggregated", lambda: w.market.conclude(w.coord, w.rid, fake, 0, 1))


def test_publish_decodes_sums_and_opens_next_iteration(aggregated):
    w, subs, agg, m, rho = aggregated
    nxt = [120_000] * T
    sums, receipt = w.market.publish(w.coord, w.rid, agg, m, rho, nxt)
    assert sums == [sum(s["values"][t] for s in subs) for t in range(T)]
    ev = w.chain.events(receipt, w.market.contract, "Published")[0]["args"]
    assert ev["iteration"] == 0 and list(ev["nextTariff"]) == nxt
    assert int.from_bytes(ev["opening"], "big") == rho and int.from_bytes(ev["plaintext"], "big") == m
    info = w.market.round_info(w.rid)
    assert info["iteration"] == 1 and info["aggregated"] is False
    assert w.market.tariff(w.rid) == nxt
    # iteration 1 accepts fresh submissions
    subs1 = make_submissions(w, iteration=1)
    submit_all(w, subs1, iteration=1)


def test_only_the_coordinator_publishes(aggregated):
    w, subs, agg, m, rho = aggregated
    assert_rejected(w, "NotCoordinator", lambda: w.market.publish(w.outsider, w.rid, agg, m, rho, TARIFF0))
    assert_rejected(w, "NotCoordinator", lambda: w.market.conclude(w.outsider, w.rid, agg, m, rho))


def test_opening_check_accepts_correct_and_rejects_wrong_opening(aggregated):
    w, subs, agg, m, rho = aggregated
    err = assert_rejected(w, "InvalidOpening", lambda: w.market.publish(w.coord, w.rid, agg, m, rho + 1, TARIFF0))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}
    assert_rejected(w, "InvalidOpening", lambda: w.market.publish(w.coord, w.rid, agg, m + 1, rho, TARIFF0))
    assert_rejected(w, "InvalidOpening", lambda: w.market.conclude(w.coord, w.rid, agg, m, 0))
    sums, receipt = w.market.publish(w.coord, w.rid, agg, m, rho, TARIFF0)
    assert receipt["gasUsed"] > 350_000  # the r^n mod n^2 check ran (1024-bit key)


def test_publish_rejects_wrong_aggregate_plaintext_and_tariff(aggregated):
    w, subs, agg, m, rho = aggregated
    other = w.key.ct(int.from_bytes(agg, "big") - 1)
    assert_rejected(w, "AggregateMismatch", lambda: w.market.publish(w.coord, w.rid, other, m, rho, TARIFF0))
    fn = w.market.contract.functions.publish
    nb = w.key.nbytes
    assert_rejected(w, "PlaintextLength", lambda: w.chain.transact(
        fn(w.rid, agg, m.to_bytes(nb + 32, "big"), rho.to_bytes(nb, "big"), TARIFF0), w.coord))
    assert_rejected(w, "OpeningLength", lambda: w.chain.transact(
        fn(w.rid, agg, m.to_bytes(nb, "big"), b"", TARIFF0), w.coord))
    assert_rejected(w, "PlaintextOutOfRange", lambda: w.market.publish(w.coord, w.rid, agg, w.key.n, rho, TARIFF0))
    bad = list(TARIFF0)
    bad[0] = FLOOR[0] - 1
    assert_rejected(w, "TariffOutOfBand", lambda: w.market.publish(w.coord, w.rid, agg, m, rho, bad))
    assert_rejected(w, "TariffLength", lambda: w.market.publish(w.coord, w.rid, agg, m, rho, TARIFF0 + [1]))


def test_iteration_cap_is_enforced(w):
    for k in range(2):  # max_iterations = 3: publish at 0 and 1, then only conclude
        subs = make_submissions(w, iteration=k)
        submit_all(w, subs, iteration=k)
        agg, _ = aggregate(w, subs)
        m, rho = w.key.opening(int.from_bytes(agg, "big"))
        w.market.publish(w.coord, w.rid, agg, m, rho, TARIFF0)
    subs = make_submissions(w, iteration=2)
    submit_all(w, subs, iteration=2)
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(int.from_bytes(agg, "big"))
    err = assert_rejected(w, "IterationCapReached", lambda: w.market.publish(w.coord, w.rid, agg, m, rho, TARIFF0))
    assert err.error_args == {"maxIterations": 3}
    sums, _ = w.market.conclude(w.coord, w.rid, agg, m, rho)
    assert w.market.round_info(w.rid)["phase"] == "Concluded"


def test_round_without_opening_check_accepts_any_opening(w):
    params = RoundParams(w.key.n, T, B, W, 3, FLOOR, CAP, w.grid.address, False)
    rid, _ = w.market.create_round(w.coord, params)
    parts = w.more[:2]
    for p in parts:
        w.market.register(p, rid, b"\x01" * 32)
    w.market.start(w.coord, rid, TARIFF0)
    subs = make_submissions(w, rid=rid, parts=parts)
    submit_all(w, subs, rid=rid)
    agg, _ = aggregate(w, subs, rid=rid)
    m, _ = w.key.opening(int.from_bytes(agg, "big"))
    sums, receipt = w.market.publish(w.coord, rid, agg, m, 12345, TARIFF0)
    assert sums == [sum(s["values"][t] for s in subs) for t in range(T)]
    assert receipt["gasUsed"] < 300_000


# ----------------------------------------------------------------------------- settlement
def conclude_with(w, values, committed=None):
    """Runs iteration 0 with `values` encrypted (and `committed` committed) and concludes."""
    subs = make_submissions(w, values=values)
    if committed is not None:
        for s, v in zip(subs, committed):
            s["values"] = v
            s["cm"] = commitment(w.rid, 0, s["p"].address, v, s["salt"])
    submit_all(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(int.from_bytes(agg, "big"))
    sums, _ = w.market.conclude(w.coord, w.rid, agg, m, rho)
    return subs, sums


SCENARIO = [  # per participant, per period (1e-6 kWh): shortage, surplus, balanced, extremes
    [2_000_001, -1_000_000, 500_000, 0, 1_234_567, -3],
    [1_000_000, -2_500_000, -500_000, 0, -999_999, 7],
    [-1_500_000, 400_000, 0, 0, 333_333, -2],
]


def test_settlement_follows_the_rule_and_sums_to_zero(w):
    subs, sums = conclude_with(w, SCENARIO)
    tariff = w.market.tariff(w.rid)
    exp_amounts, exp_grid = settlement(SCENARIO, tariff, FLOOR, CAP)
    assert w.market.quote(w.rid, SCENARIO) == (exp_amounts, {w.grid.address: exp_grid})
    bal_before = {a.address: w.market.balance(w.rid, a) for a in w.parts + [w.grid]}
    payments, receipt = w.market.settle(w.outsider, w.rid, reveals(subs))
    assert payments == {**{p.address: a for p, a in zip(w.parts, exp_amounts)}, w.grid.address: exp_grid}
    assert sum(payments.values()) == 0
    # grid absorbs rounding: never more than one base unit per participant and period away from exact
    for addr, amount in payments.items():
        assert w.market.balance(w.rid, addr) == bal_before[addr] + amount
    assert w.market.round_info(w.rid)["phase"] == "Settled"
    ev = w.chain.events(receipt, w.market.contract, "Payment")
    assert len(ev) == 4 and all(e["args"]["iteration"] == 0 for e in ev)
    assert ev[-1]["args"]["account"] == w.grid.address  # participants in registration order, then the payees
    (settled,) = w.chain.events(receipt, w.market.contract, "Settled")
    assert dict(settled["args"]) == {"roundId": w.rid, "iteration": 0}
    # withdrawals pay the ledger balance out in tokens
    for a in w.parts + [w.grid]:
        tok = w.market.token.balance_of(a)
        ledger = w.market.balance(w.rid, a)
        w.market.withdraw(a, w.rid)
        assert w.market.token.balance_of(a) == tok + ledger
        assert w.market.balance(w.rid, a) == 0
    assert w.market.token.balance_of(w.market.address) == 0


def test_settlement_rounding_stays_within_one_unit_per_trade(w):
    vals = [[1, -1, 3, 0, 0, 0], [1, -1, -1, 0, 0, 0], [1, 1, -1, 0, 0, 0]]
    amounts, grid = settlement(vals, TARIFF0, FLOOR, CAP)
    subs, _ = conclude_with(w, vals)
    payments, _ = w.market.settle(w.outsider, w.rid, reveals(subs))
    assert [payments[p.address] for p in w.parts] == amounts and payments[w.grid.address] == grid
    assert sum(payments.values()) == 0


def test_quote_checks_the_shape_of_the_values(w):
    with pytest.raises(ContractRevert) as err:
        w.market.quote(w.rid, SCENARIO[:2])
    assert err.value.name == "RevealCount"
    with pytest.raises(ContractRevert) as err:
        w.market.quote(w.rid, [v[:-1] for v in SCENARIO])
    assert err.value.name == "RevealLength" and err.value.error_args["expected"] == T


def test_settlement_twice_is_rejected(w):
    subs, _ = conclude_with(w, SCENARIO)
    w.market.settle(w.outsider, w.rid, reveals(subs))
    assert_rejected(w, "AlreadySettled", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert_rejected(w, "AlreadySettled", lambda: w.market.deposit(w.outsider, w.rid, 5))


def test_settlement_before_conclusion_is_rejected(w):
    subs = make_submissions(w, values=SCENARIO)
    assert_rejected(w, "WrongPhase", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))


def test_reveal_not_matching_commitment_is_rejected(w):
    subs, _ = conclude_with(w, SCENARIO)
    bad = reveals(subs)
    bad[1] = Reveal(bad[1].values, secrets.token_bytes(32), bad[1].ciphertext_hash)
    err = assert_rejected(w, "CommitmentMismatch", lambda: w.market.settle(w.outsider, w.rid, bad))
    assert err.error_args["participant"] == w.parts[1].address
    bad = reveals(subs)
    bad[0] = Reveal(bad[0].values, bad[0].salt, keccak(b"other"))
    assert_rejected(w, "CommitmentMismatch", lambda: w.market.settle(w.outsider, w.rid, bad))
    assert_rejected(w, "RevealCount", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)[:2]))
    short = reveals(subs)
    short[2] = Reveal(short[2].values[:-1], short[2].salt, short[2].ciphertext_hash)
    assert_rejected(w, "RevealLength", lambda: w.market.settle(w.outsider, w.rid, short))


def test_revealed_sums_must_equal_decrypted_aggregate(w):
    lie = [list(v) for v in SCENARIO]
    lie[0][3] = 42  # participant 0 committed to other values than it encrypted
    subs, sums = conclude_with(w, SCENARIO, committed=lie)
    err = assert_rejected(w, "RevealedSumMismatch", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert err.error_args == {"period": 3, "revealed": 42, "decrypted": 0}


def test_insufficient_deposit_is_rejected(w):
    params = RoundParams(w.key.n, T, B, W, 3, FLOOR, CAP, w.grid.address, False)
    rid, _ = w.market.create_round(w.coord, params)
    parts = w.more[:2]
    for p in parts:
        w.market.register(p, rid, b"\x01" * 32)
    w.market.token.mint_many(w.op, [(p, 10**30) for p in parts])
    w.market.deposit(w.grid, rid, 10**24)
    w.market.deposit(parts[1], rid, 10**24)  # parts[0] (the buyer) deposits too little
    w.market.deposit(parts[0], rid, 1000)
    w.market.start(w.coord, rid, TARIFF0)
    vals = [[1_000_000] * T, [-400_000] * T]
    subs = make_submissions(w, values=vals, rid=rid, parts=parts)
    submit_all(w, subs, rid=rid)
    agg, _ = aggregate(w, subs, rid=rid)
    m, rho = w.key.opening(int.from_bytes(agg, "big"))
    w.market.conclude(w.coord, rid, agg, m, rho)
    amounts, _ = settlement(vals, TARIFF0, FLOOR, CAP)
    err = assert_rejected(w, "InsufficientDeposit", lambda: w.market.settle(w.outsider, rid, reveals(subs)), rid)
    assert err.error_args == {"account": parts[0].address, "balance": 1000, "needed": -amounts[0]}


# ----------------------------------------------------------------------------- libraries
def test_packed_slots_decode_matches_python_including_negatives_and_limits(w):
    rnd = random.Random(7)
    for bits, width, periods in [(40, 48, 6), (64, 80, 12), (1, 3, 20), (17, 17, 30), (8, 12, 80)]:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        values = [v for v in (lo, hi, -1, 0, 1) if lo <= v <= hi]
        values += [rnd.randint(lo, hi) for _ in range(periods - len(values))]
        # a plaintext as produced by a homomorphic sum: slot contents with carries in the headroom
        m = sum(((v % (1 << bits)) + (rnd.randrange(1 << (width - bits)) << bits if width > bits else 0))
                << (t * width) for t, v in enumerate(values))
        nbytes = 128
        assert m < 1 << (8 * nbytes - 8)
        got = w.harness.functions.decode(m.to_bytes(nbytes, "big"), periods, bits, width).call()
        assert got == py_decode(m, periods, bits, width) == values


def test_packed_slots_reject_layouts_that_do_not_fit(w):
    with pytest.raises(Exception):
        w.harness.functions.decode(b"\x00" * 32, 4, 40, 64).call()


def test_bigmod_matches_python_and_is_cheap(w):
    rnd = random.Random(3)
    for bits in (256, 1024, 4096):
        N = rnd.getrandbits(bits) | 1 | (1 << (bits - 1))
        L = bits // 8
        for a, b in [(rnd.randrange(N), rnd.randrange(N)), (0, N - 1), (N - 1, N - 1), (1, 1), (N - 1, 1)]:
            out = w.harness.functions.modmul(a.to_bytes(L, "big"), b.to_bytes(L, "big"), N.to_bytes(L, "big")).call()
            assert int.from_bytes(out, "big") == a * b % N
    N = w.key.nsq
    L = 2 * w.key.nbytes
    a, b = rnd.randrange(N), rnd.randrange(N)
    assert w.harness.functions.lt(a.to_bytes(L, "big"), N.to_bytes(L, "big")).call()
    assert w.harness.functions.isZero(bytes(L)).call()
    assert int.from_bytes(w.harness.functions.square(w.key.n.to_bytes(w.key.nbytes, "big")).call(), "big") == N
    big = keygen(2048)
    N, L = big.nsq, 512
    a, b = rnd.randrange(N), rnd.randrange(N)
    gas = w.harness.functions.modmulGas(a.to_bytes(L, "big"), b.to_bytes(L, "big"), N.to_bytes(L, "big")).call()
    assert gas < 20_000, gas
    e = rnd.getrandbits(256)
    assert int.from_bytes(w.harness.functions.modexp(a.to_bytes(L, "big"), e.to_bytes(32, "big"),
                                                      N.to_bytes(L, "big")).call(), "big") == pow(a, e, N)


def test_verify_opening_library_function(w):
    k = w.key
    c = k.enc(123456789)
    m, rho = k.opening(c)
    args = lambda c, m, rho: (k.ct(c), m.to_bytes(k.nbytes, "big"), rho.to_bytes(k.nbytes, "big"),
                              k.n.to_bytes(k.nbytes, "big"), k.nsq.to_bytes(2 * k.nbytes, "big"))
    assert m == 123456789
    assert w.harness.functions.verifyOpening(*args(c, m, rho)).call() is True
    assert w.harness.functions.verifyOpening(*args(c, m + 1, rho)).call() is False
    assert w.harness.functions.verifyOpening(*args(c, m, rho + 1)).call() is False


# ----------------------------------------------------------------------------- gas (2048-bit key)
def test_gas_targets_with_2048_bit_key_and_ten_participants(w):
    key = keygen(2048)
    parts = w.more[:10]
    params = RoundParams(key.n, 24, B, W, 3, [50_000] * 24, [300_000] * 24, w.grid.address, True)
    rid, _ = w.market.create_round(w.coord, params)
    w.market.register_many([(p, rid, bytes([i + 1]) * 32) for i, p in enumerate(parts)])
    w.market.start(w.coord, rid, [100_000] * 24)
    rnd = random.Random(11)
    subs = []
    for p in parts:
        v = [rnd.randint(-3_000_000, 3_000_000) for _ in range(24)]
        c = key.ct(key.enc(pack(v)))
        salt = secrets.token_bytes(32)
        subs.append(dict(p=p, values=v, salt=salt, ct=c, cm=commitment(rid, 0, p.address, v, salt)))
    receipts = submit_all(w, subs, rid=rid)
    submit_gas = [r["gasUsed"] for r in receipts]
    agg, receipt = aggregate(w, subs, rid=rid)
    agg_gas = receipt["gasUsed"]
    assert max(submit_gas) <= 60_000, submit_gas
    assert max(submit_gas) + agg_gas / 10 <= 150_000, (submit_gas, agg_gas)
    prod = 1
    for s in subs:
        prod = prod * int.from_bytes(s["ct"], "big") % key.nsq
    assert int.from_bytes(agg, "big") == prod
    m, rho = key.opening(prod)
    sums, receipt = w.market.conclude(w.coord, rid, agg, m, rho)
    assert sums == [sum(s["values"][t] for s in subs) for t in range(24)]
    assert receipt["gasUsed"] < 4_000_000
