"""A full private round of the tariff mechanism through the one round driver: plaintext, private in
process and on the embedded chain (and on anvil); an unconverged round is closed, not settled."""
from __future__ import annotations

import types

import numpy as np
import pytest

from offchain.chain.backends import connect, start_anvil
from offchain.errors import ProtocolViolation
from offchain.privacy.packing import SlotLayout
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport, PlainTransport, PrivateTransport
from offchain.registry import get, load_scenario

from ..conftest import SCENARIO, node_available

PROSUMERS = 6


def _job(prosumers: int = PROSUMERS):
    mechanism, scenario = load_scenario(SCENARIO, prosumers=prosumers)
    return scenario, mechanism.prepare(scenario, {})


@pytest.fixture(scope="module")
def packed_spy():
    """Every (values, masked plaintext, unmasked plaintext) a prosumer packs, recorded for the privacy test."""
    calls = []
    original = SlotLayout.pack

    def spy(self, values, mask=None):
        packed = original(self, values, mask)
        calls.append((list(values), packed, original(self, values)))
        return packed

    SlotLayout.pack = spy
    yield calls
    SlotLayout.pack = original


@pytest.fixture(scope="module")
def rounds(packed_spy):
    scenario, job = _job()
    chain = connect(None)
    plain = run_round(job.rounds[-1](), PlainTransport())
    on_chain = run_round(job.rounds[-1](), ChainTransport(chain, key_bits=2048))
    return chain, job, plain, on_chain


def test_the_private_round_converges(rounds):
    _, _, _, out = rounds
    assert out.converged, out.reason
    assert 1 < len(out.iterations) < 60


def test_plaintext_and_chain_modes_follow_the_same_trajectory(rounds):
    _, _, plain, out = rounds
    assert [it.prices for it in plain.iterations] == [it.prices for it in out.iterations]
    assert [it.sums for it in plain.iterations] == [it.sums for it in out.iterations]
    assert plain.settlement.amounts == out.settlement.amounts and plain.settlement.payees == out.settlement.payees


def test_the_onchain_aggregate_decrypts_to_the_sum_of_the_prosumers_vectors(rounds):
    _, _, _, out = rounds
    assert out.iterations[-1].sums == np.sum(out.reveals, axis=0).tolist()


def test_settlement_sums_to_zero_equals_the_mirror_and_everything_is_withdrawn(rounds):
    _, _, _, out = rounds
    s, t = out.settlement, out.transport
    assert sum(s.amounts) + sum(s.payees.values()) == 0 and any(s.amounts)
    mirror = t.mirror(out.final_prices)
    assert (mirror.amounts, mirror.payees) == (s.amounts, s.payees)
    assert t.market.token.balance_of(t.market.address) == 0
    assert t.market.round_info(t.round_id)["phase"] == "Settled"


def test_no_prosumer_is_worse_off_and_the_community_gains(rounds):
    _, _, _, out = rounds
    alone = np.array([p.model.alone().objective for p in out.setup.participants])
    shared = np.array([p.response.objective for p in out.setup.participants])
    assert np.all(shared <= alone + 1e-9)
    assert shared.sum() < alone.sum() - 1e-3


def test_every_transaction_is_recorded_with_its_party_kind_and_iteration(rounds):
    chain, _, _, out = rounds
    txs = out.transport.transactions
    kinds = {t.kind for t in txs}
    assert {"create_round", "register", "deposit", "start", "submit", "aggregate", "publish", "conclude",
            "reveal", "settle", "withdraw"} <= kinds
    names = {p.name for p in out.setup.participants}
    submits = [t for t in txs if t.kind == "submit"]
    assert len(submits) == len(names) * len(out.iterations) and {t.party for t in submits} == names
    assert {t.iteration for t in submits} == set(range(len(out.iterations)))
    receipt = chain.w3.eth.get_transaction_receipt(submits[0].hash)
    assert receipt["gasUsed"] == submits[0].gas


def test_no_prosumer_plaintext_appears_on_chain_or_at_the_coordinator(rounds, packed_spy):
    chain, _, _, out = rounds
    assert packed_spy, "the spy saw no packing"
    t = out.transport
    settle = next(x for x in t.transactions if x.kind == "reveal")  # settlement begins with each one's reveal
    settle_block = chain.w3.eth.get_transaction_receipt(settle.hash)["blockNumber"]
    blobs = []
    for x in t.transactions:
        r = chain.w3.eth.get_transaction_receipt(x.hash)
        if r["blockNumber"] >= settle_block:
            continue
        blobs.append(bytes(chain.w3.eth.get_transaction(x.hash)["input"]))
        blobs.extend(bytes(log["data"]) for log in r["logs"])
    public = b"".join(blobs)
    nbytes = t.coordinator_keys.public.nbytes
    for values, masked, unmasked in packed_spy:
        assert masked.to_bytes(nbytes, "big") not in public
        assert unmasked.to_bytes(nbytes, "big") not in public
        assert b"".join(v.to_bytes(32, "big", signed=True) for v in values) not in public

    secrets = {m for _, m, _ in packed_spy} | {u for _, _, u in packed_spy}
    vectors = [tuple(v) for v, _, _ in packed_spy]

    def walk(obj, seen):
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type, types.FunctionType)):
            return  # the coordinator's own state only, not the modules its objects live in
        seen.add(id(obj))
        if isinstance(obj, int) and not isinstance(obj, bool):
            assert obj not in secrets
        elif isinstance(obj, np.ndarray):
            assert tuple(np.rint(obj * 1e6).astype(np.int64).ravel()) not in vectors
        elif isinstance(obj, (list, tuple)) and obj and all(isinstance(v, int) for v in obj):
            assert tuple(obj) not in vectors
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(k, seen), walk(v, seen)
        elif isinstance(obj, (list, tuple, set)):
            for v in obj:
                walk(v, seen)
        elif hasattr(obj, "__dict__"):
            walk(vars(obj), seen)

    # what a deployed coordinator holds: its key pair and its mechanism logic
    walk(t.coordinator_keys, set())
    walk(out.setup.coordinator, set())


def test_the_private_transport_in_process_follows_the_chain(rounds):
    _, job, _, out = rounds
    private = run_round(job.rounds[-1](), PrivateTransport(2048))
    assert [it.prices for it in private.iterations] == [it.prices for it in out.iterations]
    assert private.settlement.amounts == out.settlement.amounts


def test_an_unconverged_round_is_closed_with_every_deposit_returned():
    _, job = _job(3)
    setup = job.rounds[-1]()
    rule = setup.coordinator.iteration.rule
    capped = type(rule)(**{**rule.to_dict(), "floor": rule.floor, "cap": rule.cap, "max_iterations": 2})
    setup.coordinator.iteration.rule = capped
    setup.max_iterations = 2
    chain = connect(None)
    transport = ChainTransport(chain, key_bits=2048, verify_openings=False)
    out = run_round(setup, transport)
    assert not out.converged and "iteration cap 2" in out.reason
    assert out.settlement is None and len(out.iterations) == 2
    market = transport.market
    assert market.round_info(transport.round_id)["phase"] == "Closed"
    assert market.token.balance_of(market.address) == 0  # every deposit withdrawn
    for name, account in transport.accounts.items():
        assert market.balance(transport.round_id, account) == 0
    kinds = [t.kind for t in transport.transactions]
    assert "close" in kinds and "settle" not in kinds


def test_settle_unconverged_settles_at_the_last_prices():
    _, job = _job(3)
    setup = job.rounds[-1]()
    setup.coordinator.iteration.rule = type(setup.coordinator.iteration.rule)(
        **{**setup.coordinator.iteration.rule.to_dict(), "max_iterations": 2})
    setup.max_iterations = 2
    out = run_round(setup, PlainTransport(), settle_unconverged=True)
    assert not out.converged and out.settlement is not None
    assert sum(out.settlement.amounts) + sum(out.settlement.payees.values()) == 0


def test_a_coordinator_that_never_concludes_is_a_protocol_violation():
    _, job = _job(3)
    setup = job.rounds[-1]()
    setup.max_iterations = 1  # the coordinator's own rule runs longer than the round allows
    with pytest.raises(ProtocolViolation, match="did not conclude"):
        run_round(setup, PlainTransport())


@pytest.mark.anvil
@pytest.mark.skipif(not node_available(), reason="node or node_modules/.bin/anvil missing: run `make install`")
def test_the_same_round_settles_on_anvil(rounds):
    _, job, _, out = rounds
    with start_anvil() as node:
        other = run_round(job.rounds[-1](), ChainTransport(connect(node.url), key_bits=2048))
    assert other.converged and other.settlement.amounts == out.settlement.amounts


def test_the_registry_names_every_built_in_mechanism():
    assert get("tariff").rule_contract == "TariffRule" and get("storage-p2p").rule_contract == "StorageRule"
