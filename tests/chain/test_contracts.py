"""PrivateRounds (the generic round core) with its modules (PaillierMath, RoundOpenings,
RoundSettlement, RoundDisputes), TariffRule, BigMod and PackedSlots on the embedded chain (Prague
rules).

Rounds with a key settle through TariffRule, with real masks (``Crew``). The core's own behaviour
that no shipped rule exposes (rounds without a key, member indices and standings in the settle
context, the checks of a rule's answer) runs through ``ProbeRule``, a test-only rule compiled from
tests/chain/contracts. Deadlines, dropouts, chunked aggregation and opening challenges are tested
in test_round_safety.py, the attacks of issue 15 (disputes, the blame step, forfeits) in
test_attacks.py.
"""
from __future__ import annotations

import dataclasses
import random
import secrets

import pytest
from eth_utils import keccak

from offchain.chain.backends import ContractRevert
from offchain.chain.market import Reveal, RoundParams, Windows, deploy_rule
from offchain.mechanisms.tariff.market import settlement
from offchain.privacy.packing import SlotLayout

from .helpers import (CLOSE, EIP170_LIMIT, EIP3860_LIMIT, INT64_MAX, INT64_MIN, PHASE, STEP, TX_GAS_CAP, UINT64_MAX,
                      ZERO, Crew, aggregate, assert_rejected, bad_parameters, call_input, commit, compensated,
                      deploy_env, events, fund, keygen, open_round, past, past_challenge_window, product, py_decode,
                      reveal_all, reveals, submit, sums_of)

T, B, W = 6, 40, 48
FLOOR = [50_000, 60_000, 40_000, 50_000, 55_000, 45_000]
CAP = [300_000, 280_000, 320_000, 300_000, 310_000, 290_000]
PRICES0 = [100_000] * T
UNIT = 10**6
DEPOSIT = 10**24  # each participant's collateral (and the grid account's deposit)
BOND = 10**21
WINDOWS = Windows(registration=50, submission=100, coordinator=100, challenge=10)
KEYLESS_WINDOWS = dataclasses.replace(WINDOWS, challenge=0)
# createRound's tuple, field by field (RoundParams in contracts/RoundTypes.sol)
FIELDS = ("rule", "parentRoundId", "n", "slots", "slotBits", "slotWidth", "maxIterations", "priceFloor", "priceCap",
          "gridAccount", "mechanism", "pairLanes", "terms", "members", "signedMembers", "collateral", "bond", "windows")
WINDOW_FIELDS = ("registration", "submission", "coordinator", "challenge")
SCENARIO = [  # per participant, per period (1e-6 kWh): shortage, surplus, balanced, extremes
    [2_000_001, -1_000_000, 500_000, 0, 1_234_567, -3],
    [1_000_000, -2_500_000, -500_000, 0, -999_999, 7],
    [-1_500_000, 400_000, 0, 0, 333_333, -2],
]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env():
    e = deploy_env(parts=3, more=33)
    e.key = keygen(1024)
    e.harness = e.chain.deploy("LibHarness", sender=e.op)
    e.params = RoundParams(rule=e.tariff, slots=T, max_iterations=3, price_floor=FLOOR, price_cap=CAP,
                           grid_account=e.grid.address, n=e.key.n, slot_bits=B, slot_width=W, collateral=DEPOSIT,
                           bond=BOND, windows=WINDOWS, mechanism='{"mechanism": "tariff"}')
    e.rid, e.create_receipt = e.market.create_round(e.coord, e.params)
    e.crew = Crew(e.market, e.rid, e.parts, e.key, SlotLayout(T, B, W, 3))
    e.register_receipts = e.market.register_many([(p, e.rid, e.crew.keys(i)) for i, p in enumerate(e.parts)])
    fund(e, e.rid, e.parts + [e.grid], DEPOSIT)
    fund(e, e.rid, [e.coord], BOND)
    e.start_receipt = e.market.start(e.coord, e.rid, PRICES0)
    return e


def params(e, **change) -> RoundParams:
    """The main round's parameters with some changed."""
    return dataclasses.replace(e.params, **change)


def raw_params(e, p: RoundParams | None = None, **fields) -> tuple:
    """createRound's tuple with fields replaced by their Solidity names (anything the wrapper would not build);
    ``windows`` may be a dict of the deadlines to change."""
    t = list((p or e.params).as_tuple())
    for name, value in fields.items():
        if name == "windows" and isinstance(value, dict):
            value = tuple(value.get(f, v) for f, v in zip(WINDOW_FIELDS, t[FIELDS.index("windows")]))
        t[FIELDS.index(name)] = value
    return tuple(t)


def create_raw(e, t: tuple, sender=None):
    return e.chain.transact(e.market.contract.functions.createRound(t), sender or e.coord)


def new_round(e, p: RoundParams | None = None, parts=(), deposit=None, prices=None, sender=None) -> int:
    """A round with ``parts`` registered (registration order), ``deposit`` tokens of each
    participant and of the grid account on its ledger (and the coordinator's bond), started at
    ``prices`` if given."""
    rid, _ = open_round(e, p or e.params, parts, e.key, deposit=deposit or 0, bond=deposit is not None,
                        prices=prices, sender=sender)
    return rid


def values_for(k: int, n: int = 3) -> list[list[int]]:
    rnd = random.Random(k * 1000 + n)
    return [[rnd.randint(-3_000_000, 3_000_000) for _ in range(T)] for _ in range(n)]


def make_submissions(e, k=0, values=None, committed=None):
    """The main round's submissions of iteration ``k``: ``values`` encrypted (default: random),
    ``committed`` committed (default: the same)."""
    values = values or values_for(k)
    hostile = {i: dict(encrypted=v) for i, v in enumerate(values)} if committed is not None else None
    return e.crew.submissions(k, committed or values, hostile=hostile)


def keyless_round(w, parts, members=None, terms=b"", slots=2, prices=(7,), deposit=10**20):
    """A commit-reveal round of ProbeRule (no Paillier key), started; ``parts`` in registration order."""
    p = RoundParams(rule=w.probe, slots=slots, max_iterations=3, price_floor=[1], price_cap=[100],
                    grid_account=w.grid.address, terms=terms, windows=KEYLESS_WINDOWS,
                    members=[m.address for m in members] if members is not None else [])
    return new_round(w, p, parts=parts, deposit=deposit, prices=list(prices))


def keyless_conclude(w, rid, parts, values):
    subs = [commit(rid, 0, p, v) for p, v in zip(parts, values)]
    submit(w, subs, rid)
    sums, receipt = w.market.conclude(w.coord, rid, b"", None, None)
    assert sums == []
    reveal_all(w, subs, rid)
    return subs, receipt


def conclude_with(w, values, committed=None):
    """Iteration 0 of the main round with ``values`` encrypted (and ``committed`` committed),
    concluded; the challenge window is over, nobody revealed yet."""
    subs = make_submissions(w, values=values, committed=committed)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(agg)
    sums, receipt = w.market.conclude(w.coord, w.rid, agg, m, rho)
    past_challenge_window(w)
    return subs, sums, receipt


def settle_all(w, subs):
    """Every participant reveals; the outsider settles."""
    reveal_all(w, subs)
    return w.market.settle(w.outsider, w.rid, reveals(subs))


def withdraw_all(w, rid, accounts) -> dict[str, int]:
    before = {a.address: w.market.token.balance_of(a) for a in accounts}
    w.market.withdraw_many(accounts, rid)
    return {a.address: w.market.token.balance_of(a) - before[a.address] for a in accounts}


# ----------------------------------------------------------------------------- deployment
def test_private_rounds_runs_on_modules_deployed_before_it(env):
    f = env.market.contract.functions
    arts, code = env.chain.artifacts, lambda a: bytes(env.chain.w3.eth.get_code(a))
    modules = {"PaillierMath": f.paillier().call(), "RoundOpenings": f.openings().call(),
               "RoundSettlement": f.settlement().call(), "RoundDisputes": f.disputes().call()}
    assert len({*modules.values(), env.market.address}) == 5
    assert all(arts[name].runs(code(a)) for name, a in modules.items())
    assert arts["PrivateRounds"].runs(code(env.market.address))
    for name in ("RoundOpenings", "RoundDisputes"):
        assert env.chain.contract(name, modules[name]).functions.paillier().call() == modules["PaillierMath"]
    assert f.token().call() == env.market.token.address
    assert env.market.token.owner() == env.op.address
    assert f.MIN_PARTICIPANTS().call() == 3


@pytest.mark.parametrize("other", ["PaillierMath", "RoundDisputes"])
def test_private_rounds_refuses_modules_of_another_paillier(w, other):
    f = w.market.contract.functions
    args = [w.market.token.address, f.paillier().call(), f.openings().call(), f.settlement().call(),
            f.disputes().call()]
    stranger = w.chain.deploy("PaillierMath", sender=w.op).address
    if other == "PaillierMath":
        args[1] = stranger
    else:
        args[4] = w.chain.deploy("RoundDisputes", stranger, sender=w.op).address
    with pytest.raises(ContractRevert) as err:
        w.chain.deploy("PrivateRounds", *args, sender=w.op)
    assert str(err.value) == "BadParameters(reason='modules')"


def test_modules_called_directly_see_no_rounds(w):
    f = w.market.contract.functions
    settle = w.chain.contract("RoundSettlement", f.settlement().call()).functions
    openings = w.chain.contract("RoundOpenings", f.openings().call()).functions
    disputes = w.chain.contract("RoundDisputes", f.disputes().call()).functions
    for fn in (settle.settle(w.rid, [], []), settle.reveal(w.rid, [], bytes(32), bytes(32)),
               openings.aggregate(w.rid, b"", [b"\x01"], [b"\x00" * 32]),
               openings.challengeOpening(w.rid, 0, b"", b"", 1),
               disputes.openCheck(w.rid, bytes(32), b"", []), disputes.accuse(w.rid, ZERO, [], [], b""),
               disputes.openBlame(w.rid, [], b"", b"")):
        err = assert_rejected(w, "UnknownRound", lambda: w.chain.transact(fn, w.outsider))
        assert err.error_args == {"roundId": w.rid}
    with pytest.raises(ContractRevert) as err:  # quote's self-call is for PrivateRounds only
        w.chain.transact(f.quoteByDelegate(w.rid, []), w.outsider)
    assert err.value.name == "NotCoordinator"


def test_code_sizes_stay_under_the_eip170_and_eip3860_limits(w):
    """The Paillier arithmetic lives in PaillierMath, round creation, aggregation, publication and
    challenges in RoundOpenings, reveals and the settlement in RoundSettlement, disputes and blame
    openings in RoundDisputes and each mechanism's arithmetic in its rule contract, so every
    runtime code stays below EIP-170's 24,576 bytes with at least 4 KB to grow and every creation
    code below EIP-3860's 49,152."""
    f = w.market.contract.functions
    addresses = {"PrivateRounds": w.market.address, "PaillierMath": f.paillier().call(),
                 "RoundOpenings": f.openings().call(), "RoundSettlement": f.settlement().call(),
                 "RoundDisputes": f.disputes().call(), "TariffRule": w.tariff,
                 "StorageRule": deploy_rule(w.chain, "StorageRule", w.op)}
    size = {name: len(w.chain.w3.eth.get_code(a)) for name, a in addresses.items()}
    init = {name: len(bytes.fromhex(w.chain.artifacts[name].bytecode[2:])) for name in addresses}
    init["PrivateRounds"] += 5 * 32  # token, paillier, openings, settlement, disputes
    print("runtime code bytes:", size, "initcode bytes:", init)
    assert all(v <= EIP170_LIMIT - 4096 for v in size.values()), size
    assert all(v < EIP3860_LIMIT for v in init.values()), init


# ----------------------------------------------------------------------------- round set-up
def test_round_is_set_up_with_modulus_square_on_chain(w):
    info = w.market.round_info(w.rid)
    start = w.start_receipt["blockNumber"]
    assert info == dict(phase="Iterating", step="Submitting", iteration=0, attempt=0,
                        deadline=start + WINDOWS.submission, coordinator=w.coord.address,
                        grid_account=w.grid.address, rule=w.tariff, parent_round_id=0,
                        key_data=info["key_data"], participant_count=3, active=3, submissions=0, revealed=0,
                        slots=T, slot_bits=B, slot_width=W, max_iterations=3, aggregated=False,
                        modulus_bytes=w.key.nbytes, pair_lanes=0, allow_list=False, signed_members=False,
                        windows=WINDOWS, collateral=DEPOSIT, bond=BOND, forfeited=0, challenge_until=0,
                        reveal_until=0, blame_until=0, challenge_key_plus_one=0)
    assert int.from_bytes(w.market.contract.functions.modulus(w.rid).call(), "big") == w.key.n
    code = w.chain.w3.eth.get_code(info["key_data"])
    assert code[0] == 0 and int.from_bytes(code[1:1 + 2 * w.key.nbytes], "big") == w.key.n ** 2
    assert int.from_bytes(code[1 + 2 * w.key.nbytes:], "big") == w.key.n
    assert w.market.participants(w.rid) == [p.address for p in w.parts]
    assert w.market.registered(w.rid) == [(p.address, w.crew.keys(i)) for i, p in enumerate(w.parts)]
    assert w.market.prices(w.rid) == PRICES0
    assert w.market.contract.functions.priceBand(w.rid).call() == [FLOOR, CAP]
    assert w.market.terms(w.rid) == b"" and w.market.final_sums(w.rid) == []
    assert w.market.contract.functions.maxParticipants(w.rid).call() == 2 ** (W - B) - 1
    assert w.market.coordinator_deadline(w.rid) == UINT64_MAX  # the participants' turn: nobody may cancel
    assert [w.market.balance(w.rid, a) for a in (w.coord, w.grid, *w.parts)] == [BOND] + [DEPOSIT] * 4


def test_round_created_registered_and_started_events_carry_the_parameters(w):
    (ev,) = events(w, w.create_receipt, "RoundCreated")
    assert (ev["roundId"], ev["coordinator"], ev["parentRoundId"]) == (w.rid, w.coord.address, 0)
    assert ev["keyData"] == w.market.round_info(w.rid)["key_data"]
    got = ev["params"]
    got = tuple(got[f] for f in FIELDS) if hasattr(got, "keys") else tuple(got)
    windows = got[-1]
    got = got[:-1] + (tuple(windows[f] for f in WINDOW_FIELDS) if hasattr(windows, "keys") else tuple(windows),)
    assert got == w.params.as_tuple()
    created = w.create_receipt["blockNumber"]
    assert events(w, w.create_receipt, "StepChanged") == [{
        "roundId": w.rid, "iteration": 0, "phase": PHASE["Registering"], "step": STEP["Submitting"], "attempt": 0,
        "deadline": created + WINDOWS.registration}]
    assert events(w, w.register_receipts, "Registered") == [
        {"roundId": w.rid, "participant": p.address, "position": i + 1, "keys": w.crew.keys(i)}
        for i, p in enumerate(w.parts)]
    (started,) = events(w, w.start_receipt, "RoundStarted")
    assert started == {"roundId": w.rid, "iteration": 0, "participants": 3, "prices": PRICES0}
    assert events(w, w.start_receipt, "StepChanged") == [{
        "roundId": w.rid, "iteration": 0, "phase": PHASE["Iterating"], "step": STEP["Submitting"], "attempt": 0,
        "deadline": w.start_receipt["blockNumber"] + WINDOWS.submission}]
    assert events(w, w.start_receipt, "Dropped") == []


BAD_PARAMS = [  # (id, createRound's tuple from the main round's, reason); core checks, in the contract's order
    ("no rule code", lambda e: raw_params(e, rule=e.outsider.address), "rule"),
    ("modulus not whole words", lambda e: raw_params(e, n=e.key.n.to_bytes(128, "big")[:48]), "modulus length"),
    ("modulus over 8192 bits", lambda e: raw_params(e, n=e.key.n.to_bytes(1056, "big")), "modulus length"),
    ("modulus even", lambda e: raw_params(e, n=(e.key.n + 1).to_bytes(128, "big")), "modulus even"),
    ("modulus leading zero word", lambda e: raw_params(e, n=e.key.n.to_bytes(160, "big")), "modulus leading word zero"),
    ("no slots", lambda e: raw_params(e, slots=0), "slots"),
    ("slot bits zero", lambda e: raw_params(e, slotBits=0), "slot bits"),
    ("slot bits above 64", lambda e: raw_params(e, slotBits=65, slotWidth=70), "slot bits"),
    ("slot width not above bits", lambda e: raw_params(e, slotWidth=B), "slot width"),
    # 21 slots and the check slot: 22 x 48 + 8 bits > 1024
    ("slots and check slot exceed plaintext", lambda e: raw_params(e, slots=21, priceFloor=[1] * 21,
                                                                   priceCap=[2] * 21), "slots exceed plaintext"),
    ("no key but slot layout", lambda e: raw_params(e, n=b"", windows={"challenge": 0}),
     "no key: no slot layout or openings"),
    ("no key but challenges", lambda e: raw_params(e, n=b"", slotBits=0, slotWidth=0),
     "no key: no slot layout or openings"),
    ("no registration window", lambda e: raw_params(e, windows={"registration": 0}), "windows"),
    ("no submission window", lambda e: raw_params(e, windows={"submission": 0}), "windows"),
    ("no coordinator window", lambda e: raw_params(e, windows={"coordinator": 0}), "windows"),
    ("allow-list and signatures", lambda e: raw_params(e, members=[e.more[0].address], signedMembers=True),
     "members and signatures"),
    ("no iterations", lambda e: raw_params(e, maxIterations=0), "iteration cap"),
    ("empty price band", lambda e: raw_params(e, priceFloor=[], priceCap=[]), "price band length"),
    ("band lengths differ", lambda e: raw_params(e, priceFloor=FLOOR[:-1]), "price band length"),
    ("floor above cap", lambda e: raw_params(e, priceFloor=[CAP[0] + 1] + FLOOR[1:]), "price floor above cap"),
    ("no grid account", lambda e: raw_params(e, gridAccount=ZERO), "grid account"),
    ("terms too long", lambda e: raw_params(e, terms=b"\x01" * 24_001), "terms length"),
    ("zero member", lambda e: raw_params(e, members=[e.more[0].address, ZERO]), "members"),
    ("duplicate member", lambda e: raw_params(e, members=[e.more[0].address, e.more[1].address, e.more[0].address]),
     "members"),
]


@pytest.mark.parametrize("make, reason", [c[1:] for c in BAD_PARAMS], ids=[c[0] for c in BAD_PARAMS])
def test_bad_round_parameters_are_rejected(w, make, reason):
    t = make(w)
    bad_parameters(w, lambda: create_raw(w, t), reason)


def test_the_check_slot_fits_when_slots_plus_one_times_width_plus_eight_is_the_key_length(w):
    rid = new_round(w, params(w, slots=20, price_floor=[1] * 20, price_cap=[2] * 20))  # 21 x 48 + 8 <= 1024
    assert w.market.round_info(rid)["slots"] == 20


def test_windows_other_than_registration_submission_and_coordinator_may_be_zero(w):
    rid = new_round(w, params(w, windows=Windows(registration=1, submission=1, coordinator=1, challenge=0)))
    assert w.market.round_info(rid)["windows"] == Windows(1, 1, 1, 0)


@pytest.mark.parametrize("change, reason", [
    (dict(n=None, slot_bits=0, slot_width=0, windows=KEYLESS_WINDOWS), "key"),
    (dict(price_floor=FLOOR[:-1], price_cap=CAP[:-1]), "price band length"),  # the core's check passes
    (dict(pair_lanes=T), "pair lanes"),
    (dict(terms=b"\x01"), "terms"),
], ids=["no key", "band not one price per slot", "pair lanes", "terms"])
def test_tariff_rule_rejects_parameters_of_other_mechanisms(w, change, reason):
    p = params(w, **change)
    bad_parameters(w, lambda: w.market.create_round(w.coord, p), reason)


def test_tariff_rule_is_named_and_has_no_bill_items(env):
    rule = env.chain.contract("TariffRule", env.tariff)
    assert rule.functions.mechanism().call() == "tariff"
    assert rule.functions.billItems().call() == []
    assert rule.functions.revealLength(T, 0, 3).call() == T


def test_tariff_round_rejects_pair_messages(w):
    s = make_submissions(w)[0]
    s.pm = b"\0" * 8
    err = assert_rejected(w, "PairMessagesLength", lambda: submit(w, [s]))
    assert err.error_args == {"given": 8, "expected": 0}


# ----------------------------------------------------------------------------- parent rounds
def test_child_round_of_the_parent_coordinator_records_its_parent(w):
    rid, receipt = w.market.create_round(w.coord, params(w, parent_round_id=w.rid))
    (ev,) = events(w, receipt, "RoundCreated")
    assert (ev["roundId"], ev["coordinator"], ev["parentRoundId"]) == (rid, w.coord.address, w.rid)
    assert w.market.round_info(rid)["parent_round_id"] == w.rid
    # the parent id is an indexed topic: a log filter finds the parent's children
    logs = w.market.contract.events.RoundCreated.get_logs(from_block=0, argument_filters={"parentRoundId": w.rid})
    assert [log["args"]["roundId"] for log in logs] == [rid]


def test_child_round_of_a_parent_participant_is_accepted(w):
    p = params(w, parent_round_id=w.rid)
    rid, receipt = w.market.create_round(w.parts[1], p)
    info = w.market.round_info(rid)
    assert (info["coordinator"], info["parent_round_id"]) == (w.parts[1].address, w.rid)
    assert events(w, receipt, "RoundCreated")[0]["parentRoundId"] == w.rid
    grandchild, _ = w.market.create_round(w.parts[1], params(w, parent_round_id=rid))  # nests further
    assert w.market.round_info(grandchild)["parent_round_id"] == rid
    # the child's coordinator is a participant of the parent, not of the child
    err = assert_rejected(w, "NotMember", lambda: w.market.register(w.parts[1], rid, w.crew.keys(1)), rid)
    assert err.error_args == {"account": w.parts[1].address}


@pytest.mark.parametrize("who", ["outsider", "grid", "participant of another round"])
def test_child_round_of_anyone_else_is_rejected(w, who):
    other = new_round(w, parts=w.more[:2])
    sender = {"outsider": w.outsider, "grid": w.grid, "participant of another round": w.more[0]}[who]
    p = params(w, parent_round_id=w.rid)
    bad_parameters(w, lambda: w.market.create_round(sender, p), "not a party of the parent round")
    assert w.market.member(other, w.more[0])["position"] == 1


@pytest.mark.parametrize("parent", [999, "next"])
def test_child_round_of_an_unknown_parent_is_rejected(w, parent):
    parent = w.market.contract.functions.roundCount().call() + 1 if parent == "next" else parent
    p = params(w, parent_round_id=parent)
    bad_parameters(w, lambda: w.market.create_round(w.coord, p), "parent round")


# ----------------------------------------------------------------------------- registration
def test_unknown_round_is_rejected(w):
    err = assert_rejected(w, "UnknownRound", lambda: w.market.register(w.outsider, 999, w.crew.keys(0)))
    assert str(err) == "UnknownRound(roundId=999)"
    for view in ("roundInfo", "prices", "participants", "finalSums", "terms", "modulus", "maxParticipants",
                 "coordinatorDeadline"):
        with pytest.raises(ContractRevert) as err:
            w.market._view(getattr(w.market.contract.functions, view)(999))
        assert err.value.name == "UnknownRound", view


def test_registration_after_start_is_rejected(w):
    err = assert_rejected(w, "WrongPhase", lambda: w.market.register(w.outsider, w.rid, w.crew.keys(0)))
    assert err.error_args == {"roundId": w.rid, "current": PHASE["Iterating"], "expected": PHASE["Registering"]}


def test_registration_closes_at_its_deadline(w):
    rid = new_round(w, parts=w.more[:2])
    keys = Crew(w.market, rid, w.more[:4], w.key).keys
    deadline = w.market.round_info(rid)["deadline"]
    past(w.chain, deadline - 1)
    w.market.register(w.more[2], rid, keys(2))  # in the deadline's block: on time
    assert w.chain.block_number == deadline
    err = assert_rejected(w, "DeadlinePassed", lambda: w.market.register(w.more[3], rid, keys(3)), rid)
    assert err.error_args == {"deadline": deadline}


def test_second_registration_is_rejected(w):
    rid = new_round(w, parts=[w.parts[0]])
    keys = Crew(w.market, rid, w.parts[:1], w.key).keys(0)
    err = assert_rejected(w, "AlreadyRegistered", lambda: w.market.register(w.parts[0], rid, keys), rid)
    assert err.error_args["participant"] == w.parts[0].address


@pytest.mark.parametrize("who", ["grid", "coordinator"])
def test_the_grid_account_and_the_coordinator_cannot_register(w, who):
    rid = new_round(w)
    account = {"grid": w.grid, "coordinator": w.coord}[who]
    keys = Crew(w.market, rid, [account], w.key).keys(0)
    name = {"grid": "GridAccountCannotRegister", "coordinator": "NotMember"}[who]
    err = assert_rejected(w, name, lambda: w.market.register(account, rid, keys), rid)
    assert list(err.error_args.values()) == [account.address]


def test_too_many_participants_are_rejected(w):
    rid = new_round(w, params(w, slot_width=B + 2), parts=w.more[:3])  # headroom 2 bits: max 3
    assert w.market.contract.functions.maxParticipants(rid).call() == 3
    keys = Crew(w.market, rid, w.more[:4], w.key).keys(3)
    err = assert_rejected(w, "TooManyParticipants", lambda: w.market.register(w.more[3], rid, keys), rid)
    assert err.error_args["maximum"] == 3


def test_start_needs_three_participants(w):
    rid = new_round(w, parts=w.more[:2], deposit=DEPOSIT)
    err = assert_rejected(w, "TooFewParticipants", lambda: w.market.start(w.coord, rid, PRICES0), rid)
    assert err.error_args == {"count": 2, "minimum": 3}
    w.market.register(w.more[2], rid, Crew(w.market, rid, w.more[:3], w.key).keys(2))
    fund(w, rid, [w.more[2]], DEPOSIT)
    w.market.start(w.coord, rid, PRICES0)
    assert w.market.round_info(rid)["phase"] == "Iterating"


def test_only_the_coordinator_starts_a_round(w):
    rid = new_round(w, parts=w.more[:3], deposit=DEPOSIT)
    err = assert_rejected(w, "NotCoordinator", lambda: w.market.start(w.outsider, rid, PRICES0), rid)
    assert err.error_args == {"caller": w.outsider.address, "coordinator": w.coord.address}


def test_start_rejects_prices_outside_band_or_of_wrong_length(w):
    rid = new_round(w, parts=w.more[:3], deposit=DEPOSIT)
    bad = list(PRICES0)
    bad[2] = CAP[2] + 1
    err = assert_rejected(w, "PriceOutOfBand", lambda: w.market.start(w.coord, rid, bad), rid)
    assert err.error_args == {"index": 2, "price": CAP[2] + 1, "floor": FLOOR[2], "cap": CAP[2]}
    bad[2] = FLOOR[2] - 1
    assert_rejected(w, "PriceOutOfBand", lambda: w.market.start(w.coord, rid, bad), rid)
    err = assert_rejected(w, "PriceLength", lambda: w.market.start(w.coord, rid, PRICES0[:-1]), rid)
    assert err.error_args == {"given": T - 1, "expected": T}
    w.market.start(w.coord, rid, CAP)  # the band's bounds are inside it
    assert w.market.prices(rid) == CAP


def test_deposit_guards_its_amount_and_withdraw_waits_for_the_end(w):
    bare_deposit = lambda rid, amount: fund(w, rid, [w.outsider], amount)  # noqa: E731
    assert_rejected(w, "ZeroAmount", lambda: bare_deposit(w.rid, 0))
    rid = new_round(w)
    (receipt,) = w.market.deposit_many([(w.outsider, rid, 1234)])  # the wrapper approves, then deposits
    assert events(w, receipt, "Deposited") == [{"roundId": rid, "account": w.outsider.address, "amount": 1234,
                                                 "balance": 1234}]
    assert w.market.balance(rid, w.outsider) == 1234
    err = assert_rejected(w, "WrongPhase", lambda: w.market.withdraw(w.outsider, rid), rid)  # locked until the end
    assert err.error_args == {"roundId": rid, "current": PHASE["Registering"], "expected": PHASE["Settled"]}
    w.market.close(w.coord, rid)
    before = w.market.token.balance_of(w.outsider)
    receipt = w.market.withdraw(w.outsider, rid)
    assert events(w, receipt, "Withdrawn") == [{"roundId": rid, "account": w.outsider.address, "amount": 1234}]
    assert w.market.token.balance_of(w.outsider) == before + 1234
    assert_rejected(w, "ZeroAmount", lambda: w.market.withdraw(w.outsider, rid), rid)


# ----------------------------------------------------------------------------- allow-list
def test_only_members_of_the_allow_list_register(w):
    members = w.more[:3]
    rid = new_round(w, params(w, members=[m.address for m in members]))
    keys = Crew(w.market, rid, [members[2], members[0], w.outsider, w.more[3]], w.key).keys
    assert w.market.round_info(rid)["allow_list"] is True
    assert [w.market.member_index(rid, m) for m in members] == [0, 1, 2]
    assert w.market.member_index(rid, w.outsider) is None
    err = assert_rejected(w, "NotMember", lambda: w.market.register(w.outsider, rid, keys(2)), rid)
    assert err.error_args == {"account": w.outsider.address}
    assert_rejected(w, "NotMember", lambda: w.market.register(w.more[3], rid, keys(3)), rid)
    w.market.register_many([(members[2], rid, keys(0)), (members[0], rid, keys(1))])
    assert w.market.participants(rid) == [members[2].address, members[0].address]
    m = w.market.member(rid, members[2])
    assert (m["position"], m["member_index_plus_one"]) == (1, 3)  # registration position, member index


def test_open_round_lets_anyone_register_and_has_no_member_indices(w):
    rid = new_round(w, parts=[w.outsider, w.more[5]])
    assert w.market.round_info(rid)["allow_list"] is False
    assert w.market.member_index(rid, w.outsider) is None
    assert w.market.member(rid, w.more[5])["member_index_plus_one"] == 2  # registration order


# ----------------------------------------------------------------------------- submissions
def test_submission_stores_its_hash_and_mask_points_and_emits_events(w):
    s = make_submissions(w)[0]
    key, y0, y1 = w.crew.members[0].key, w.crew.members[0].point(0), w.crew.members[0].point(1)
    h = lambda x: keccak(x)[:16]  # noqa: E731
    before = w.market.member(w.rid, s.p)
    assert (before["point_hash"], before["next_point_hash"], before["key_hash"]) == (bytes(16), h(y0), h(key))
    receipt = submit(w, [s])[0]
    assert w.market.member(w.rid, s.p) == dict(
        submission_hash=keccak(keccak(s.ct) + s.cm)[:24], position=1, submitted_iteration_plus_one=1,
        dropped_before_plus_one=0, member_index_plus_one=1, submitted_attempt=0, opened_plus_one=0, culprit=False,
        revealed=False, cleared=False, point_hash=h(y0), next_point_hash=h(y1), key_hash=h(key),
        check_hash=bytes(16), reveal_hash=bytes(32))
    assert events(w, receipt, "Submitted") == [{"roundId": w.rid, "iteration": 0, "participant": s.p.address,
                                                 "attempt": 0, "ciphertextHash": keccak(s.ct), "commitment": s.cm}]
    assert events(w, receipt, "MaskPoint") == [{"roundId": w.rid, "iteration": 1, "participant": s.p.address,
                                                 "point": y1}]
    assert events(w, receipt, "PairMessages") == []
    assert w.market.round_info(w.rid)["submissions"] == 1


def test_last_submission_closes_the_submissions(w):
    receipts = submit(w, make_submissions(w))
    assert all(events(w, r, "StepChanged") == [] for r in receipts[:-1])
    block = receipts[-1]["blockNumber"]
    assert events(w, receipts[-1], "StepChanged") == [{"roundId": w.rid, "iteration": 0, "phase": PHASE["Iterating"],
                                                       "step": STEP["Aggregating"], "attempt": 0,
                                                       "deadline": block + WINDOWS.coordinator}]
    info = w.market.round_info(w.rid)
    assert (info["step"], info["deadline"], info["submissions"]) == ("Aggregating", block + WINDOWS.coordinator, 3)
    assert w.market.coordinator_deadline(w.rid) == block + WINDOWS.coordinator


def test_unregistered_sender_cannot_submit(w):
    s = make_submissions(w)[0]
    s.p = w.outsider
    err = assert_rejected(w, "NotRegistered", lambda: submit(w, [s]))
    assert err.error_args["account"] == w.outsider.address


def test_wrong_iteration_is_rejected(w):
    s = make_submissions(w)[0]
    s.k = 1
    err = assert_rejected(w, "WrongIteration", lambda: submit(w, [s]))
    assert err.error_args == {"given": 1, "current": 0}


def test_submission_to_unknown_round_is_rejected(w):
    s = make_submissions(w)[0]
    assert_rejected(w, "UnknownRound", lambda: submit(w, [s], 77))


def test_second_submission_is_rejected(w):
    s = make_submissions(w)[0]
    submit(w, [s])
    err = assert_rejected(w, "AlreadySubmitted", lambda: submit(w, [s]))
    assert str(err) == f"AlreadySubmitted(participant={s.p.address}, iteration=0)"


def test_ciphertext_of_wrong_length_is_rejected(w):
    s = make_submissions(w)[0]
    for ct in (s.ct[1:], b""):
        short = dataclasses.replace(s, ct=ct)
        err = assert_rejected(w, "CiphertextLength", lambda: submit(w, [short]))
        assert err.error_args == {"given": len(ct), "expected": 2 * w.key.nbytes}


@pytest.mark.parametrize("which", ["zero", "n_squared", "above"])
def test_ciphertext_outside_range_is_rejected(w, which):
    value = {"zero": 0, "n_squared": w.key.nsq, "above": (1 << (16 * w.key.nbytes)) - 1}[which]
    s = dataclasses.replace(make_submissions(w)[0], ct=w.key.ct(value))
    err = assert_rejected(w, "CiphertextOutOfRange", lambda: submit(w, [s]))
    assert err.error_args == {"participant": s.p.address}


def test_submission_before_start_is_rejected(w):
    rid = new_round(w, parts=w.more[:1])
    s = commit(rid, 0, w.more[0], [0] * T, make_submissions(w)[0].ct, point=w.crew.members[0].point(1))
    err = assert_rejected(w, "WrongPhase", lambda: submit(w, [s], rid), rid)
    assert err.error_args["current"] == PHASE["Registering"] and err.error_args["expected"] == PHASE["Iterating"]


# ----------------------------------------------------------------------------- aggregation
def test_onchain_aggregate_equals_python_product(w):
    subs = make_submissions(w)
    submit(w, subs)
    agg, receipts = aggregate(w, subs)
    assert int.from_bytes(agg, "big") == product(w.key, subs)
    assert events(w, receipts, "Aggregated") == [{"roundId": w.rid, "iteration": 0, "aggregate": agg}]
    assert events(w, receipts, "AggregationProgress") == []
    # it decrypts to the packed sums, and the masks cancel in the check slot
    assert w.crew.layout.unpack(w.key.dec(product(w.key, subs))) == (sums_of(subs, T), 0)
    assert w.market.round_info(w.rid)["aggregated"] is True


def test_aggregation_before_all_submitted_is_rejected(w):
    subs = make_submissions(w)
    submit(w, subs[:2])
    err = assert_rejected(w, "WrongStep", lambda: aggregate(w, subs[:2]))
    assert err.error_args == {"roundId": w.rid, "current": STEP["Submitting"], "expected": STEP["Aggregating"]}


def test_aggregate_rejects_substituted_ciphertext_or_wrong_count(w):
    subs = make_submissions(w)
    submit(w, subs)
    forged = subs[:1] + [dataclasses.replace(subs[1], ct=w.key.ct(w.key.enc(5)))] + subs[2:]
    err = assert_rejected(w, "SubmissionMismatch", lambda: aggregate(w, forged))
    assert err.error_args == {"participant": w.parts[1].address, "iteration": 0}
    wrong_commitment = subs[:2] + [dataclasses.replace(subs[2], cm=keccak(b"other"))]
    assert_rejected(w, "SubmissionMismatch", lambda: aggregate(w, wrong_commitment))
    assert_rejected(w, "SubmissionMismatch", lambda: aggregate(w, [subs[1], subs[0], subs[2]]))
    short = [dataclasses.replace(subs[0], ct=subs[0].ct[1:])] + subs[1:]
    assert_rejected(w, "SubmissionMismatch", lambda: aggregate(w, short))
    err = assert_rejected(w, "SubmissionCount", lambda: aggregate(w, subs + subs[:1]))
    assert err.error_args == {"given": 4, "expected": 3}
    fn = w.market.contract.functions.aggregate
    err = assert_rejected(w, "SubmissionCount", lambda: w.chain.transact(
        fn(w.rid, b"", [s.ct for s in subs], [s.cm for s in subs[:2]]), w.outsider))
    assert err.error_args == {"given": 3, "expected": 3}
    err = assert_rejected(w, "SubmissionCount", lambda: w.chain.transact(fn(w.rid, b"", [], []), w.outsider))
    assert err.error_args == {"given": 0, "expected": 3}


def test_aggregating_twice_is_rejected(w):
    subs = make_submissions(w)
    submit(w, subs)
    aggregate(w, subs)
    err = assert_rejected(w, "AlreadyAggregated", lambda: aggregate(w, subs))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}


# ----------------------------------------------------------------------------- publish / conclude
@pytest.fixture
def aggregated(w):
    subs = make_submissions(w)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(agg)
    return w, subs, agg, m, rho


def test_publish_or_conclude_before_aggregation_is_rejected(w):
    submit(w, make_submissions(w))
    fake = w.key.ct(1)
    err = assert_rejected(w, "NotAggregated", lambda: w.market.publish(w.coord, w.rid, fake, 0, 1, PRICES0))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}
    assert_rejected(w, "NotAggregated", lambda: w.market.conclude(w.coord, w.rid, fake, 0, 1))
    assert_rejected(w, "NotAggregated", lambda: w.market.dispute(w.coord, w.rid, fake, 0, 1))


def test_publish_decodes_sums_and_opens_next_iteration(aggregated):
    w, subs, agg, m, rho = aggregated
    nxt = [120_000] * T
    sums, receipt = w.market.publish(w.coord, w.rid, agg, m, rho, nxt)
    assert sums == sums_of(subs, T)
    assert events(w, receipt, "Published") == [{"roundId": w.rid, "iteration": 0, "plaintext": w.key.word(m),
                                                "opening": w.key.word(rho), "sums": sums, "nextPrices": nxt}]
    assert events(w, receipt, "PhaseChanged") == []  # publishing stays in Iterating
    block = receipt["blockNumber"]
    assert events(w, receipt, "StepChanged") == [{"roundId": w.rid, "iteration": 1, "phase": PHASE["Iterating"],
                                                  "step": STEP["Submitting"], "attempt": 0,
                                                  "deadline": block + WINDOWS.submission}]
    info = w.market.round_info(w.rid)
    assert (info["iteration"], info["attempt"], info["aggregated"], info["phase"], info["step"], info["submissions"]) \
        == (1, 0, False, "Iterating", "Submitting", 0)
    assert w.market.prices(w.rid) == nxt
    # iteration 1 accepts fresh submissions (masked with the points of iteration 1), iteration 0 no longer
    subs1 = make_submissions(w, k=1)
    stale = dataclasses.replace(subs1[0], k=0)
    assert_rejected(w, "WrongIteration", lambda: submit(w, [stale]))
    submit(w, subs1)
    agg, _ = aggregate(w, subs1)
    assert w.crew.layout.unpack(w.key.dec(int.from_bytes(agg, "big")))[1] == 0


def test_only_the_coordinator_publishes(aggregated):
    w, subs, agg, m, rho = aggregated
    err = assert_rejected(w, "NotCoordinator", lambda: w.market.publish(w.outsider, w.rid, agg, m, rho, PRICES0))
    assert err.error_args == {"caller": w.outsider.address, "coordinator": w.coord.address}
    assert_rejected(w, "NotCoordinator", lambda: w.market.conclude(w.parts[0], w.rid, agg, m, rho))


def test_publish_checks_only_that_the_opening_is_canonical(aggregated):
    """Openings are optimistic: publish checks 0 < rho < n and m < n, not agg = (1 + m n) rho^n
    (a challenge does, see test_round_safety.py), and is cheap for it."""
    w, subs, agg, m, rho = aggregated
    for bad in (0, w.key.n, (1 << (8 * w.key.nbytes)) - 1):
        err = assert_rejected(w, "OpeningNotCanonical",
                              lambda: w.market.publish(w.coord, w.rid, agg, m, bad, PRICES0))
        assert err.error_args == {"roundId": w.rid, "iteration": 0}
    assert_rejected(w, "OpeningNotCanonical", lambda: w.market.conclude(w.coord, w.rid, agg, m, 0))
    snap = w.chain.snapshot()
    sums, _ = w.market.publish(w.coord, w.rid, agg, m, rho + 1, PRICES0)  # false, but canonical: accepted
    assert sums == sums_of(subs, T)
    w.chain.revert(snap)
    sums, receipt = w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0)
    print(f"publish, 1024-bit key: {receipt['gasUsed']} gas")
    assert receipt["gasUsed"] < 250_000  # no r^n mod n^2 (~0.7M gas at 1024 bits) in it


def test_publish_rejects_wrong_aggregate_plaintext_and_prices(aggregated):
    w, subs, agg, m, rho = aggregated
    other = w.key.ct(int.from_bytes(agg, "big") - 1)
    err = assert_rejected(w, "AggregateMismatch", lambda: w.market.publish(w.coord, w.rid, other, m, rho, PRICES0))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}
    fn = w.market.contract.functions.publish
    nb = w.key.nbytes
    err = assert_rejected(w, "PlaintextLength", lambda: w.chain.transact(
        fn(w.rid, agg, m.to_bytes(nb + 32, "big"), rho.to_bytes(nb, "big"), PRICES0), w.coord))
    assert err.error_args == {"given": nb + 32, "expected": nb}
    err = assert_rejected(w, "OpeningLength", lambda: w.chain.transact(
        fn(w.rid, agg, m.to_bytes(nb, "big"), b"", PRICES0), w.coord))
    assert err.error_args == {"given": 0, "expected": nb}
    err = assert_rejected(w, "PlaintextOutOfRange",
                          lambda: w.market.publish(w.coord, w.rid, agg, w.key.n, rho, PRICES0))
    assert err.error_args == {"roundId": w.rid, "iteration": 0}
    bad = list(PRICES0)
    bad[0] = FLOOR[0] - 1
    err = assert_rejected(w, "PriceOutOfBand", lambda: w.market.publish(w.coord, w.rid, agg, m, rho, bad))
    assert err.error_args == {"index": 0, "price": FLOOR[0] - 1, "floor": FLOOR[0], "cap": CAP[0]}
    assert_rejected(w, "PriceLength", lambda: w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0 + [1]))


def test_iteration_cap_is_enforced(w):
    for k in range(2):  # max_iterations = 3: publish at 0 and 1, then only conclude
        subs = make_submissions(w, k=k)
        submit(w, subs)
        agg, _ = aggregate(w, subs)
        m, rho = w.key.opening(agg)
        w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0)
    subs = make_submissions(w, k=2)
    submit(w, subs)
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(agg)
    err = assert_rejected(w, "IterationCapReached", lambda: w.market.publish(w.coord, w.rid, agg, m, rho, PRICES0))
    assert err.error_args == {"maxIterations": 3}
    sums, receipt = w.market.conclude(w.coord, w.rid, agg, m, rho)
    info = w.market.round_info(w.rid)
    until = receipt["blockNumber"] + WINDOWS.challenge
    assert (info["phase"], info["challenge_until"]) == ("Concluded", until)
    assert info["reveal_until"] == until + WINDOWS.challenge + WINDOWS.submission  # after a challenge could end
    assert w.market.coordinator_deadline(w.rid) == info["reveal_until"] + WINDOWS.coordinator
    assert events(w, receipt, "Concluded") == [{"roundId": w.rid, "iteration": 2, "plaintext": w.key.word(m),
                                                "opening": w.key.word(rho), "sums": sums, "prices": PRICES0}]
    assert w.market.final_sums(w.rid) == sums == sums_of(subs, T)


def test_round_without_a_challenge_window_takes_any_canonical_opening_and_settles_at_once(w):
    parts = w.more[:3]
    rid, crew = open_round(w, params(w, windows=KEYLESS_WINDOWS), parts, w.key, deposit=DEPOSIT, prices=PRICES0)
    subs = crew.submissions(0, values_for(0))
    submit(w, subs, rid)
    agg, _ = aggregate(w, subs, rid)
    m, rho = w.key.opening(agg)
    sums, receipt = w.market.publish(w.coord, rid, agg, m, 12345, PRICES0)
    assert sums == sums_of(subs, T)
    published = agg + w.key.word(m) + w.key.word(12345)
    err = assert_rejected(w, "NoChallenges", lambda: w.chain.transact(
        w.market.contract.functions.challengeOpening(rid, 0, published, b"", 1), w.outsider), rid)
    assert err.error_args == {"roundId": rid}
    subs = crew.submissions(1, values_for(1))
    submit(w, subs, rid)
    agg, _ = aggregate(w, subs, rid)
    m, rho = w.key.opening(agg)
    _, receipt = w.market.conclude(w.coord, rid, agg, m, rho)
    assert w.market.round_info(rid)["challenge_until"] == receipt["blockNumber"]
    reveal_all(w, subs, rid)  # in the next blocks: no window to wait for
    result = w.market.settle(w.outsider, rid, reveals(subs))
    assert sum(result.payments.values()) == 0


# ----------------------------------------------------------------------------- reveals (TariffRule)
def test_reveal_opens_the_final_commitment(w):
    subs, _, _ = conclude_with(w, SCENARIO)
    receipt = reveal_all(w, subs[:1])[0]
    assert events(w, receipt, "Revealed") == [{"roundId": w.rid, "participant": w.parts[0].address}]
    # the values are in the call's input, where the settlement's caller reads them
    fn, args = call_input(w, receipt["transactionHash"])
    assert (fn, args["roundId"], list(args["values"]), args["salt"], args["ciphertextHash"]) == \
        ("reveal", w.rid, SCENARIO[0], subs[0].salt, keccak(subs[0].ct))
    m = w.market.member(w.rid, w.parts[0])
    assert m["revealed"] and m["reveal_hash"] == keccak(
        keccak(b"".join(v.to_bytes(32, "big", signed=True) for v in SCENARIO[0])) + keccak(subs[0].ct))
    assert w.market.round_info(w.rid)["revealed"] == 1
    err = assert_rejected(w, "AlreadyRevealed", lambda: reveal_all(w, subs[:1]))
    assert err.error_args == {"participant": w.parts[0].address}


def test_reveal_waits_for_conclusion_and_the_challenge_window_and_ends_at_its_deadline(w):
    subs = make_submissions(w, values=SCENARIO)
    submit(w, subs)
    err = assert_rejected(w, "WrongPhase", lambda: reveal_all(w, subs[:1]))
    assert err.error_args == {"roundId": w.rid, "current": PHASE["Iterating"], "expected": PHASE["Concluded"]}
    agg, _ = aggregate(w, subs)
    m, rho = w.key.opening(agg)
    w.market.conclude(w.coord, w.rid, agg, m, rho)
    info = w.market.round_info(w.rid)
    err = assert_rejected(w, "ChallengeWindowOpen", lambda: reveal_all(w, subs[:1]))
    assert err.error_args == {"until": info["challenge_until"]}
    past(w.chain, info["challenge_until"])
    reveal_all(w, subs[:1])
    past(w.chain, info["reveal_until"])
    err = assert_rejected(w, "DeadlinePassed", lambda: reveal_all(w, subs[1:2]))
    assert err.error_args == {"deadline": info["reveal_until"]}


def test_reveal_not_matching_the_commitment_is_rejected(w):
    subs, _, _ = conclude_with(w, SCENARIO)
    s, one = subs[1], lambda r: lambda: w.market.reveal_many([(w.parts[1], w.rid, r)])  # noqa: E731
    for what, r in {"another salt": Reveal(s.values, secrets.token_bytes(32), keccak(s.ct)),
                    "another ciphertext": Reveal(s.values, s.salt, keccak(b"other")),
                    "other values": Reveal([v + 1 for v in s.values], s.salt, keccak(s.ct)),
                    "another's reveal": subs[0].reveal()}.items():
        err = assert_rejected(w, "CommitmentMismatch", one(r))
        assert err.error_args == {"participant": w.parts[1].address}, what
    err = assert_rejected(w, "RevealLength", one(Reveal(s.values[:-1], s.salt, keccak(s.ct))))
    assert err.error_args == {"participant": w.parts[1].address, "given": T - 1, "expected": T}
    err = assert_rejected(w, "NotRegistered", lambda: w.market.reveal_many([(w.outsider, w.rid, s.reveal())]))
    assert err.error_args == {"account": w.outsider.address}


def test_reveal_beyond_the_slot_bound_or_int64_is_rejected_even_if_committed(w):
    bound = ((1 << (B - 1)) - 1) // 3
    lie = [list(v) for v in SCENARIO]
    lie[1][2] = INT64_MAX + 1  # committed to, but no int64
    lie[2][4] = -bound - 1  # an int64, beyond what a slot holds for three
    subs, _, _ = conclude_with(w, SCENARIO, committed=lie)
    for i, index in [(1, 2), (2, 4)]:
        err = assert_rejected(w, "RevealOutOfRange", lambda: reveal_all(w, subs[i:i + 1]))
        assert err.error_args == {"participant": w.parts[i].address, "index": index}


# ----------------------------------------------------------------------------- settlement (TariffRule)
def test_settlement_follows_the_rule_and_sums_to_zero(w):
    subs, sums, conclude_receipt = conclude_with(w, SCENARIO)
    prices = w.market.prices(w.rid)
    exp_amounts, exp_grid = settlement(SCENARIO, prices, FLOOR, CAP)
    assert w.market.quote(w.rid, SCENARIO) == (exp_amounts, {w.grid.address: exp_grid}, [])
    bal_before = {a.address: w.market.balance(w.rid, a) for a in w.parts + [w.grid]}
    result = settle_all(w, subs)
    assert result.payments == {**{p.address: a for p, a in zip(w.parts, exp_amounts)}, w.grid.address: exp_grid}
    assert sum(result.payments.values()) == 0
    assert result.bills == {}  # TariffRule gives no bills: no Bill events
    for addr, amount in result.payments.items():  # positive = paid: debited from the ledger
        assert w.market.balance(w.rid, addr) == bal_before[addr] - amount
    assert w.market.round_info(w.rid)["phase"] == "Settled"
    receipt = result.receipt
    assert [(e["account"], e["amount"], e["iteration"]) for e in events(w, receipt, "Payment")] == \
        [(p.address, a, 0) for p, a in zip(w.parts, exp_amounts)] + [(w.grid.address, exp_grid, 0)]
    assert events(w, receipt, "Settled") == [{"roundId": w.rid, "iteration": 0}]
    assert events(w, receipt, "Blamed") == [] and events(w, receipt, "Compensated") == []
    # every phase change of the round's life, in order
    changes = [events(w, r, "PhaseChanged") for r in (w.start_receipt, conclude_receipt, receipt)]
    assert changes == [[{"roundId": w.rid, "from": PHASE[a], "to": PHASE[b]}] for a, b in
                       [("Registering", "Iterating"), ("Iterating", "Concluded"), ("Concluded", "Settled")]]
    assert w.market.coordinator_deadline(w.rid) == UINT64_MAX  # settled: nothing to cancel
    # withdrawals pay the ledger balance out in tokens; the coordinator's bond comes back whole
    accounts = w.parts + [w.grid, w.coord]
    ledger = {a.address: w.market.balance(w.rid, a) for a in accounts}
    assert withdraw_all(w, w.rid, accounts) == ledger and ledger[w.coord.address] == BOND
    assert all(w.market.balance(w.rid, a) == 0 for a in accounts)
    assert w.market.token.balance_of(w.market.address) == 0


def test_a_buyer_pays_a_positive_amount_and_a_seller_a_negative_one(w):
    vals = [[1_000_000] * T, [-400_000] * T, [0] * T]  # participant 0 buys, 1 sells, 2 stays out
    subs, _, _ = conclude_with(w, vals)
    result = settle_all(w, subs)
    buyer, seller, idle = (result.payments[p.address] for p in w.parts)
    # shortage: the seller gets the tariff, the buyer pays the tariff for the seller's energy and the
    # retail price (band cap) for the residual
    assert seller == -sum(400_000 * p * UNIT for p in PRICES0) < 0
    assert buyer == sum((400_000 * p + 600_000 * c) * UNIT for p, c in zip(PRICES0, CAP)) > 0
    assert idle == 0 and result.payments[w.grid.address] == -(buyer + seller) < 0
    assert w.market.balance(w.rid, w.parts[0]) == DEPOSIT - buyer
    assert w.market.balance(w.rid, w.parts[1]) == DEPOSIT - seller
    assert settlement(vals, PRICES0, FLOOR, CAP) == ([buyer, seller, 0], result.payments[w.grid.address])


def test_settlement_rounding_stays_within_one_unit_per_trade(w):
    vals = [[1, -1, 3, 0, 0, 0], [1, -1, -1, 0, 0, 0], [1, 1, -1, 0, 0, 0]]
    amounts, grid = settlement(vals, PRICES0, FLOOR, CAP)
    subs, _, _ = conclude_with(w, vals)
    payments = settle_all(w, subs).payments
    assert [payments[p.address] for p in w.parts] == amounts and payments[w.grid.address] == grid
    assert sum(payments.values()) == 0


def test_quote_before_the_round_started_is_a_wrong_phase_not_a_panic(w):
    rid = new_round(w, parts=w.more[:3])
    with pytest.raises(ContractRevert) as err:
        w.market.quote(rid, [[0] * T] * 3)
    assert err.value.name == "WrongPhase" and err.value.error_args["expected"] == PHASE["Iterating"]


def test_quote_checks_the_shape_and_range_of_the_values(w):
    with pytest.raises(ContractRevert) as err:
        w.market.quote(w.rid, SCENARIO[:2])
    assert err.value.name == "RevealLength" and err.value.error_args == {"participant": ZERO, "given": 2 * T,
                                                                         "expected": 3 * T}
    with pytest.raises(ContractRevert) as err:
        w.market.quote(w.rid, [v[:-1] for v in SCENARIO])
    assert err.value.name == "RevealLength" and err.value.error_args["expected"] == 3 * T
    extremes = [[INT64_MAX, INT64_MIN, 0, 0, 0, 0], [0] * T, [0] * T]
    assert w.market.quote(w.rid, extremes)[0] == settlement(extremes, PRICES0, FLOOR, CAP)[0]
    for value, index in [(INT64_MAX + 1, 0), (INT64_MIN - 1, 1), ((1 << 255) - 1, 5), (-(1 << 255), 4)]:
        bad = [[0] * T, [0] * T, [0] * T]
        bad[2][index] = value
        with pytest.raises(ContractRevert) as err:
            w.market.quote(w.rid, bad)
        assert err.value.name == "RevealOutOfRange"
        assert err.value.error_args == {"participant": w.parts[2].address, "index": index}


def test_settlement_twice_is_rejected(w):
    subs, _, _ = conclude_with(w, SCENARIO)
    settle_all(w, subs)
    err = assert_rejected(w, "AlreadySettled", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert err.error_args == {"roundId": w.rid}
    assert_rejected(w, "AlreadySettled", lambda: fund(w, w.rid, [w.outsider], 5))
    assert_rejected(w, "AlreadySettled", lambda: w.market.cancel(w.outsider, w.rid))
    assert_rejected(w, "WrongPhase", lambda: reveal_all(w, subs[:1]))


def test_settlement_before_conclusion_is_rejected(w):
    subs = make_submissions(w, values=SCENARIO)
    err = assert_rejected(w, "WrongPhase", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert err.error_args == {"roundId": w.rid, "current": PHASE["Iterating"], "expected": PHASE["Concluded"]}


def test_settlement_waits_for_every_reveal_until_the_reveal_deadline(w):
    subs, _, _ = conclude_with(w, SCENARIO)
    reveal_all(w, subs[:2])
    until = w.market.round_info(w.rid)["reveal_until"]
    err = assert_rejected(w, "RevealWindowOpen", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert err.error_args == {"until": until}


def test_settle_takes_exactly_the_reveals_as_revealed(w):
    subs, _, _ = conclude_with(w, SCENARIO)
    reveal_all(w, subs)
    settle = lambda r: lambda: w.market.settle(w.outsider, w.rid, r)  # noqa: E731
    for what, i, r in [("other values", 2, Reveal([v + 1 for v in SCENARIO[2]], subs[2].salt, keccak(subs[2].ct))),
                       ("another ciphertext", 0, Reveal(SCENARIO[0], subs[0].salt, keccak(b"other"))),
                       ("none: for the dropped only", 2, None)]:
        bad = reveals(subs)
        bad[i] = r
        err = assert_rejected(w, "RevealMismatch", settle(bad))
        assert err.error_args == {"participant": w.parts[i].address}, what
    swapped = reveals(subs)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # reveals in registration order only
    assert_rejected(w, "RevealMismatch", settle(swapped))
    err = assert_rejected(w, "RevealCount", settle(reveals(subs)[:2]))
    assert err.error_args == {"given": 2, "expected": 3}
    fn = w.market.contract.functions.settle
    flat = [v for s in subs for v in s.values]
    hashes = [keccak(s.ct) for s in subs]
    err = assert_rejected(w, "RevealCount", lambda: w.chain.transact(fn(w.rid, flat, hashes[:2]), w.outsider))
    assert err.error_args == {"given": 2, "expected": 3}
    err = assert_rejected(w, "RevealLength", lambda: w.chain.transact(fn(w.rid, flat[:-1], hashes), w.outsider))
    assert err.error_args == {"participant": ZERO, "given": 3 * T - 1, "expected": 3 * T}
    assert_rejected(w, "RevealLength", lambda: w.chain.transact(fn(w.rid, flat + [0], hashes), w.outsider))


def test_reveals_that_do_not_add_up_to_the_decrypted_sums_start_the_blame_step(w):
    lie = [list(v) for v in SCENARIO]
    lie[0][3] = 42  # participant 0 committed to other values than it encrypted
    subs, sums, _ = conclude_with(w, SCENARIO, committed=lie)
    result = settle_all(w, subs)
    assert result.payments == {} and w.market.blame_started(result.receipt)
    info = w.market.round_info(w.rid)
    assert (info["phase"], info["blame_until"]) == ("Concluded", result.receipt["blockNumber"] + WINDOWS.submission)
    assert w.market.coordinator_deadline(w.rid) == info["challenge_until"] + WINDOWS.challenge + WINDOWS.coordinator


def test_a_payee_without_the_deposit_its_payment_needs_is_rejected(w):
    """A participant billed beyond its deposit is settled without its reveal (tests/chain/
    test_attacks.py); a payee (here the grid account, paying the sellers' surplus at feed-in)
    whose deposit does not cover its payment makes the settlement revert, naming it."""
    parts = w.more[:3]
    rid, crew = open_round(w, params(w, collateral=1000), parts, w.key, prices=None)
    fund(w, rid, parts, DEPOSIT)
    fund(w, rid, [w.grid], 1000)
    fund(w, rid, [w.coord], BOND)
    w.market.start(w.coord, rid, PRICES0)
    vals = [[-1_000_000] * T, [400_000] * T, [0] * T]
    subs = crew.submissions(0, vals)
    submit(w, subs, rid)
    agg, _ = aggregate(w, subs, rid)
    m, rho = w.key.opening(agg)
    w.market.conclude(w.coord, rid, agg, m, rho)
    past_challenge_window(w, rid)
    reveal_all(w, subs, rid)
    _, grid = settlement(vals, PRICES0, FLOOR, CAP)
    assert grid > 1000  # the grid account pays (positive = paid), more than it holds
    err = assert_rejected(w, "InsufficientDeposit", lambda: w.market.settle(w.outsider, rid, reveals(subs)), rid)
    assert err.error_args["account"] == w.grid.address and err.error_args["balance"] == 1000


# ----------------------------------------------------------------------------- close
def test_only_the_coordinator_closes_a_round(w):
    for who in (w.outsider, w.parts[0], w.grid):
        err = assert_rejected(w, "NotCoordinator", lambda: w.market.close(who, w.rid))
        assert err.error_args == {"caller": who.address, "coordinator": w.coord.address}
    assert_rejected(w, "UnknownRound", lambda: w.market.close(w.coord, 999))


def test_closed_round_settles_nothing_and_returns_every_deposit(w):
    subs = make_submissions(w)
    submit(w, subs)
    receipt = w.market.close(w.coord, w.rid)
    assert events(w, receipt, "PhaseChanged") == [{"roundId": w.rid, "from": PHASE["Iterating"],
                                                   "to": PHASE["Closed"]}]
    assert events(w, receipt, "Closed") == [{"roundId": w.rid, "iteration": 0, "reason": CLOSE["ByCoordinator"],
                                             "by": w.coord.address}]
    assert events(w, receipt, "Payment") == [] and events(w, receipt, "Blamed") == []
    assert w.market.round_info(w.rid)["phase"] == "Closed"
    assert w.market.coordinator_deadline(w.rid) == UINT64_MAX
    # nothing goes on: no submission, aggregation, publication, conclusion, reveal, settlement or deposit
    err = assert_rejected(w, "WrongPhase", lambda: submit(w, subs[:1]))
    assert err.error_args == {"roundId": w.rid, "current": PHASE["Closed"], "expected": PHASE["Iterating"]}
    assert_rejected(w, "WrongPhase", lambda: aggregate(w, subs))
    assert_rejected(w, "WrongPhase", lambda: w.market.conclude(w.coord, w.rid, subs[0].ct, 0, 1))
    assert_rejected(w, "WrongPhase", lambda: w.market.advance(w.outsider, w.rid, []))
    assert_rejected(w, "WrongPhase", lambda: reveal_all(w, subs[:1]))
    err = assert_rejected(w, "WrongPhase", lambda: w.market.settle(w.outsider, w.rid, reveals(subs)))
    assert err.error_args == {"roundId": w.rid, "current": PHASE["Closed"], "expected": PHASE["Concluded"]}
    assert_rejected(w, "RoundClosed", lambda: fund(w, w.rid, [w.outsider], 5))
    err = assert_rejected(w, "RoundClosed", lambda: w.market.close(w.coord, w.rid))  # closing twice
    assert err.error_args == {"roundId": w.rid}
    assert_rejected(w, "RoundClosed", lambda: w.market.cancel(w.outsider, w.rid))
    # every deposit comes back in full, the coordinator's bond too
    assert withdraw_all(w, w.rid, w.parts + [w.grid, w.coord]) == \
        {**{a.address: DEPOSIT for a in w.parts + [w.grid]}, w.coord.address: BOND}
    assert w.market.token.balance_of(w.market.address) == 0
    assert_rejected(w, "ZeroAmount", lambda: w.market.withdraw(w.parts[0], w.rid))


def test_round_closed_while_registering_cannot_start(w):
    rid = new_round(w, parts=w.more[:3])
    fund(w, rid, [w.more[0]], 77)
    receipt = w.market.close(w.coord, rid)
    assert events(w, receipt, "PhaseChanged") == [{"roundId": rid, "from": PHASE["Registering"],
                                                   "to": PHASE["Closed"]}]
    assert_rejected(w, "WrongPhase", lambda: w.market.start(w.coord, rid, PRICES0), rid)
    keys = Crew(w.market, rid, w.more[:5], w.key).keys(4)
    assert_rejected(w, "WrongPhase", lambda: w.market.register(w.more[4], rid, keys), rid)
    w.market.withdraw(w.more[0], rid)
    assert w.market.balance(rid, w.more[0]) == 0


# ----------------------------------------------------------------------------- rounds without a key (ProbeRule)
def test_round_without_key_takes_empty_ciphertexts_and_no_mask_point(w):
    parts = w.more[:3]
    rid = keyless_round(w, parts)
    info = w.market.round_info(rid)
    assert (info["key_data"], info["modulus_bytes"], info["slot_bits"], info["slot_width"]) == (ZERO, 0, 0, 0)
    assert info["windows"].challenge == 0
    assert w.market.contract.functions.modulus(rid).call() == b""
    assert w.market.contract.functions.maxParticipants(rid).call() == 2**16 - 1
    assert w.market.registered(rid) == [(p.address, b"") for p in parts]
    s = commit(rid, 0, parts[0], [1, 2])
    for ct in (b"\x01", b"\x00" * 256):
        err = assert_rejected(w, "CiphertextLength", lambda: submit(w, [dataclasses.replace(s, ct=ct)], rid), rid)
        assert err.error_args == {"given": len(ct), "expected": 0}
    point = w.crew.members[0].point(1)
    err = assert_rejected(w, "MaskPointInvalid", lambda: submit(w, [dataclasses.replace(s, point=point)], rid), rid)
    assert err.error_args == {"participant": parts[0].address}
    receipt = submit(w, [s], rid)[0]
    assert events(w, receipt, "Submitted") == [{"roundId": rid, "iteration": 0, "participant": parts[0].address,
                                                 "attempt": 0, "ciphertextHash": keccak(b""), "commitment": s.cm}]
    assert events(w, receipt, "MaskPoint") == []
    m = w.market.member(rid, parts[0])
    assert (m["submission_hash"], m["position"], m["submitted_iteration_plus_one"]) == \
        (keccak(keccak(b"") + s.cm)[:24], 1, 1)
    assert_rejected(w, "AlreadySubmitted", lambda: submit(w, [s], rid), rid)


def test_round_without_key_cannot_be_aggregated_disputed_or_challenged(w):
    parts = w.more[:3]
    rid = keyless_round(w, parts)
    subs = [commit(rid, 0, p, v) for p, v in zip(parts, [[1, 2], [3, 4], [5, 6]])]
    submit(w, subs, rid)
    err = assert_rejected(w, "NoKey", lambda: aggregate(w, subs, rid), rid)
    assert err.error_args == {"roundId": rid}
    assert_rejected(w, "NoKey", lambda: w.chain.transact(
        w.market.contract.functions.dispute(rid, b"", b"", b""), w.coord), rid)
    err = assert_rejected(w, "NoChallenges", lambda: w.chain.transact(  # no key: nothing to challenge
        w.market.contract.functions.challengeOpening(rid, 0, b"", b"", 1), w.outsider), rid)
    assert err.error_args == {"roundId": rid}


def test_round_without_key_publishes_and_concludes_once_the_submissions_are_closed(w):
    parts = w.more[:3]
    rid = keyless_round(w, parts)
    subs = [commit(rid, 0, p, v) for p, v in zip(parts, [[1, 2], [3, 4], [5, 6]])]
    submit(w, subs[:2], rid)
    err = assert_rejected(w, "WrongStep", lambda: w.market.publish(w.coord, rid, b"", None, None, [9]), rid)
    assert err.error_args == {"roundId": rid, "current": STEP["Submitting"], "expected": STEP["Aggregating"]}
    assert_rejected(w, "WrongStep", lambda: w.market.conclude(w.coord, rid, b"", None, None), rid)
    submit(w, subs[2:], rid)
    fn = w.market.contract.functions
    err = assert_rejected(w, "AggregateMismatch", lambda: w.chain.transact(fn.publish(rid, b"\x01", b"", b"", [9]),
                                                                           w.coord), rid)
    assert err.error_args == {"roundId": rid, "iteration": 0}
    err = assert_rejected(w, "PlaintextLength", lambda: w.chain.transact(fn.conclude(rid, b"", b"\x00" * 32, b""),
                                                                         w.coord), rid)
    assert err.error_args == {"given": 32, "expected": 0}
    assert_rejected(w, "OpeningLength", lambda: w.chain.transact(fn.conclude(rid, b"", b"", b"\x00" * 32), w.coord),
                    rid)
    assert_rejected(w, "NotCoordinator", lambda: w.market.publish(w.outsider, rid, b"", None, None, [9]), rid)
    assert_rejected(w, "PriceOutOfBand", lambda: w.market.publish(w.coord, rid, b"", None, None, [101]), rid)
    sums, receipt = w.market.publish(w.coord, rid, b"", None, None, [9])
    assert sums == []
    assert events(w, receipt, "Published") == [{"roundId": rid, "iteration": 0, "plaintext": b"", "opening": b"",
                                                "sums": [], "nextPrices": [9]}]
    # the next iteration counts its submissions afresh
    assert_rejected(w, "WrongStep", lambda: w.market.conclude(w.coord, rid, b"", None, None), rid)
    assert w.market.round_info(rid)["submissions"] == 0
    submit(w, [commit(rid, 1, p, [0, 0]) for p in parts], rid)
    sums, receipt = w.market.conclude(w.coord, rid, b"", None, None)
    assert events(w, receipt, "Concluded") == [{"roundId": rid, "iteration": 1, "plaintext": b"", "opening": b"",
                                                "sums": [], "prices": [9]}]
    info = w.market.round_info(rid)
    assert info["phase"] == "Concluded" and w.market.final_sums(rid) == []
    assert info["challenge_until"] == receipt["blockNumber"]  # no challenge window
    assert info["reveal_until"] == receipt["blockNumber"] + WINDOWS.submission


def test_round_without_key_settles_on_commitments_alone(w):
    parts = w.more[:3]
    rid = keyless_round(w, parts)
    values = [[5 * 10**18, 1], [-3 * 10**18, INT64_MAX], [10**6, INT64_MIN]]  # no sums to add up to
    subs = [commit(rid, 0, p, v) for p, v in zip(parts, values)]
    submit(w, subs, rid)
    _, conclude_receipt = w.market.conclude(w.coord, rid, b"", None, None)
    s, one = subs[1], lambda r: lambda: w.market.reveal_many([(parts[1], rid, r)])  # noqa: E731
    for r in (Reveal(s.values, secrets.token_bytes(32), keccak(b"")),
              Reveal(s.values, s.salt, keccak(b"\x00")),  # the ciphertext hash is keccak("")
              Reveal([-3 * 10**18, 2], s.salt, keccak(b""))):
        err = assert_rejected(w, "CommitmentMismatch", one(r), rid)
        assert err.error_args == {"participant": parts[1].address}
    reveal_all(w, subs, rid)
    result = w.market.settle(w.outsider, rid, reveals(subs))
    assert result.payments == {parts[0].address: 5 * 10**18, parts[1].address: -3 * 10**18,
                               parts[2].address: 10**6, w.grid.address: -(2 * 10**18 + 10**6)}
    assert w.market.balance(rid, parts[0]) == 10**20 - 5 * 10**18
    assert w.market.balance(rid, parts[1]) == 10**20 + 3 * 10**18
    changes = [(e["from"], e["to"]) for r in (conclude_receipt, result.receipt) for e in events(w, r, "PhaseChanged")]
    assert changes == [(PHASE["Iterating"], PHASE["Concluded"]), (PHASE["Concluded"], PHASE["Settled"])]


def test_round_without_key_rejects_reveals_outside_int64_only(w):
    parts = w.more[:3]
    rid = keyless_round(w, parts)
    subs = [commit(rid, 0, p, v) for p, v in zip(parts, [[1, 2], [INT64_MIN - 1, 0], [3, 4]])]
    submit(w, subs, rid)
    w.market.conclude(w.coord, rid, b"", None, None)
    err = assert_rejected(w, "RevealOutOfRange", lambda: reveal_all(w, subs[1:2], rid), rid)
    assert err.error_args == {"participant": parts[1].address, "index": 0}


def test_a_withheld_reveal_in_a_round_without_key_forfeits_and_the_others_settle_at_once(w):
    """No blame step without a key (nothing to open): the others settle, compensated."""
    parts = w.more[:3]
    rid = keyless_round(w, parts)
    subs = [commit(rid, 0, p, v) for p, v in zip(parts, [[1, 0], [2, 0], [3, 0]])]
    submit(w, subs, rid)
    w.market.conclude(w.coord, rid, b"", None, None)
    reveal_all(w, subs[:2], rid)
    past(w.chain, w.market.round_info(rid)["reveal_until"])
    result = w.market.settle(w.outsider, rid, reveals(subs[:2]) + [None])
    assert w.market.blamed(result.receipt) == {parts[2].address: (10**20, "WithheldReveal")}
    assert result.payments == {parts[0].address: 1, parts[1].address: 2, parts[2].address: 0, w.grid.address: -3}
    assert compensated(w, result.receipt) == {parts[0].address: 10**20 // 2, parts[1].address: 10**20 // 2}


# ----------------------------------------------------------------------------- the settle context and the rule's answer
def test_rule_sees_member_indices_of_the_allow_list_not_registration_order(w):
    members = w.more[:3]
    order = [members[2], members[0], members[1]]
    rid = keyless_round(w, order, members=members)
    subs, _ = keyless_conclude(w, rid, order, [[10, 0], [20, 0], [30, 0]])
    assert w.market.quote(rid, [s.values for s in subs])[2] == [[2, 2, 7, 0], [0, 2, 7, 0], [1, 2, 7, 0]]
    result = w.market.settle(w.outsider, rid, reveals(subs))
    # one Bill per participant: [member index, reveal length, first price, standing], each before its Payment
    assert result.bills == {order[0].address: [2, 2, 7, 0], order[1].address: [0, 2, 7, 0],
                            order[2].address: [1, 2, 7, 0]}
    logs = sorted((ev["logIndex"], ev["event"], ev["args"].get("participant", ev["args"].get("account")))
                  for name in ("Bill", "Payment") for ev in w.chain.events(result.receipt, w.market.contract, name))
    assert [(name, who) for _, name, who in logs] == \
        [x for a in order for x in (("Bill", a.address), ("Payment", a.address))] + [("Payment", w.grid.address)]


def test_rule_sees_registration_order_in_an_open_round(w):
    parts = [w.more[2], w.more[0], w.more[1]]
    rid = keyless_round(w, parts)
    assert w.market.quote(rid, [[1, 0], [2, 0], [3, 0]])[2] == [[0, 2, 7, 0], [1, 2, 7, 0], [2, 2, 7, 0]]


@pytest.mark.parametrize("mode, name, args", [
    (1, "SettlementImbalance", {"sum": 1}),
    (2, "SettlementShape", {"participants": 3, "amounts": 3, "payees": 1, "payeeAmounts": 1, "bills": 2}),
    (3, "SettlementShape", {"participants": 3, "amounts": 4, "payees": 1, "payeeAmounts": 1, "bills": 3}),
], ids=["payments do not sum to zero", "one bill too few", "one amount too many"])
def test_rule_answer_that_does_not_balance_is_rejected(w, mode, name, args):
    parts = w.more[:3]
    rid = keyless_round(w, parts, terms=mode.to_bytes(32, "big"))
    subs, _ = keyless_conclude(w, rid, parts, [[10, 0], [-4, 0], [-5, 0]])
    err = assert_rejected(w, name, lambda: w.market.settle(w.outsider, rid, reveals(subs)), rid)
    assert err.error_args == args


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
    args = lambda c, m, rho: (k.ct(c), m.to_bytes(k.nbytes, "big"), rho.to_bytes(k.nbytes, "big"),  # noqa: E731
                              k.n.to_bytes(k.nbytes, "big"), k.nsq.to_bytes(2 * k.nbytes, "big"))
    assert m == 123456789
    assert w.harness.functions.verifyOpening(*args(c, m, rho)).call() is True
    assert w.harness.functions.verifyOpening(*args(c, m + 1, rho)).call() is False
    assert w.harness.functions.verifyOpening(*args(c, m, rho + 1)).call() is False
    assert w.harness.functions.verifyOpening(*args(c, m, 0)).call() is False
    # rho + n is the same opening (rho^n mod n^2 does not change): publish refuses it as non-canonical
    if rho + k.n < 1 << (8 * k.nbytes):
        assert w.harness.functions.verifyOpening(*args(c, m, rho + k.n)).call() is True


# ----------------------------------------------------------------------------- gas (2048-bit key)
def test_gas_targets_with_2048_bit_key_and_ten_participants(w):
    key = keygen(2048)
    parts = w.more[:10]
    S = 24
    p = RoundParams(rule=w.tariff, slots=S, max_iterations=3, price_floor=[50_000] * S, price_cap=[300_000] * S,
                    grid_account=w.grid.address, n=key.n, slot_bits=B, slot_width=W, collateral=DEPOSIT, bond=BOND,
                    windows=WINDOWS)
    rid, crew = open_round(w, p, parts, key, deposit=DEPOSIT, prices=[100_000] * S)
    rnd = random.Random(11)
    subs = crew.submissions(0, [[rnd.randint(-3_000_000, 3_000_000) for _ in range(S)] for _ in parts])
    receipts = submit(w, subs, rid)
    submit_gas = [r["gasUsed"] for r in receipts]
    agg, (receipt,) = aggregate(w, subs, rid)
    agg_gas = receipt["gasUsed"]
    # a submission pays for its ciphertext's range and residue checks (c mod n: one MODEXP), its
    # next mask point's curve check (one small MODEXP) and its hashes
    assert max(submit_gas) <= 120_000, submit_gas
    assert max(submit_gas) + agg_gas / 10 <= 210_000, (submit_gas, agg_gas)
    assert int.from_bytes(agg, "big") == product(key, subs)
    m, rho = key.opening(agg)
    sums, receipt = w.market.conclude(w.coord, rid, agg, m, rho)
    conclude_gas = receipt["gasUsed"]
    assert sums == sums_of(subs, S)
    assert conclude_gas < 1_000_000, conclude_gas  # optimistic: no opening check
    held, challenge = w.market.challenge(w.outsider, rid, 0, agg, m, rho)
    challenge_gas = [r["gasUsed"] for r in challenge]
    assert held and max(challenge_gas) < TX_GAS_CAP, challenge_gas
    past_challenge_window(w, rid)
    reveal_gas = [r["gasUsed"] for r in reveal_all(w, subs, rid)]
    result = w.market.settle(w.outsider, rid, reveals(subs))
    settle_gas = result.receipt["gasUsed"]
    assert sum(result.payments.values()) == 0
    print(f"tariff round, 2048-bit key, 10 participants x 24 slots (Prague pricing): submit {max(submit_gas)}, "
          f"aggregate {agg_gas}, conclude {conclude_gas}, challenge {sum(challenge_gas)} in {len(challenge_gas)} "
          f"tx, reveal {max(reveal_gas)}, settle {settle_gas} gas")
    assert max(reveal_gas) < 150_000, reveal_gas
    assert settle_gas < 1_000_000, settle_gas
