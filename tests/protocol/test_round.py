"""A full private round of the tariff mechanism on the embedded chain (and on anvil)."""
from __future__ import annotations

import types

import numpy as np
import pytest

from offchain.chain.backends import connect, start_anvil
from offchain.mechanisms.tariff import TariffRule, run_plaintext
from offchain.models.prosumer import build_models
from offchain.models.scenario import load_scenario
from offchain.privacy.packing import SlotLayout
from offchain.protocol.round import run_private_round
from offchain.units import ENERGY_SCALE

from ..conftest import SCENARIO, node_available

PROSUMERS = 6


def _round(chain, spy=None):
    scenario = load_scenario(SCENARIO, prosumers=PROSUMERS)
    models = build_models(scenario)
    rule = TariffRule.from_scenario(scenario)
    result = run_private_round(chain, models, rule, scenario.initial_tariff(),
                               key_bits=2048, verify_openings=True)
    return scenario, models, rule, result


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
def embedded_round(packed_spy):
    chain = connect(None)
    scenario, models, rule, result = _round(chain)
    plain = run_plaintext(build_models(scenario), rule, scenario.initial_tariff())
    return chain, scenario, models, result, plain


def test_the_private_round_converges(embedded_round):
    _, _, _, result, _ = embedded_round
    assert result.converged, result.reason
    assert 1 < len(result.iterations) < 60


def test_plaintext_and_private_modes_reach_the_same_tariff(embedded_round):
    _, _, _, result, plain = embedded_round
    assert plain.iterations == len(result.iterations)
    # identical math on identical fixed-point aggregates: equal up to the 1e-6 price unit
    assert np.max(np.abs(plain.tariff - result.final_tariff)) <= 1e-6


def test_the_onchain_aggregate_decrypts_to_the_sum_of_the_prosumers_vectors(embedded_round):
    _, _, _, result, _ = embedded_round
    last = result.iterations[-1]
    revealed = np.sum([a.reveal().values for a in result.agents], axis=0)
    assert np.array_equal(np.rint(np.asarray(last["imbalance"]) * ENERGY_SCALE).astype(np.int64), revealed)


def test_settlement_balances_to_zero_and_tokens_are_conserved(embedded_round):
    chain, _, _, result, _ = embedded_round
    assert sum(result.payments.values()) == 0
    assert any(v != 0 for v in result.payments.values())
    token = result.market.token
    assert token.balance_of(result.market.address) == 0  # everything withdrawn


def test_no_prosumer_is_worse_off_and_the_community_gains(embedded_round):
    _, _, models, result, _ = embedded_round
    alone = np.array([m.alone().objective for m in models])
    shared = np.array([a.response.objective for a in result.agents])
    assert np.all(shared <= alone + 1e-9)
    assert shared.sum() < alone.sum() - 1e-3


def test_no_prosumer_plaintext_appears_on_chain_or_at_the_coordinator(embedded_round, packed_spy):
    chain, _, _, result, _ = embedded_round
    assert packed_spy, "the spy saw no packing"
    w3 = chain.w3
    settle_block = result.receipts["settle"][0]["blockNumber"]
    blobs = []
    for receipts in result.receipts.values():
        for r in receipts:
            if r["blockNumber"] >= settle_block:
                continue
            blobs.append(bytes(w3.eth.get_transaction(r["transactionHash"])["input"]))
            blobs.extend(bytes(log["data"]) for log in r["logs"])
    public = b"".join(blobs)
    nbytes = result.coordinator.public_key.nbytes
    for values, masked, unmasked in packed_spy:
        assert masked.to_bytes(nbytes, "big") not in public
        assert unmasked.to_bytes(nbytes, "big") not in public
        vector = b"".join(v.to_bytes(32, "big", signed=True) for v in values)
        assert vector not in public

    secrets = {m for _, m, _ in packed_spy} | {u for _, _, u in packed_spy}
    vectors = [tuple(v) for v, _, _ in packed_spy]

    def walk(obj, seen):
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type, types.FunctionType)):
            return  # the coordinator's own state only, not the modules its objects live in
        seen.add(id(obj))
        if isinstance(obj, int) and not isinstance(obj, bool):
            assert obj not in secrets
        elif isinstance(obj, np.ndarray):
            assert tuple(np.rint(obj * ENERGY_SCALE).astype(np.int64).ravel()) not in vectors
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(k, seen), walk(v, seen)
        elif isinstance(obj, (list, tuple, set)):
            for v in obj:
                walk(v, seen)
        elif hasattr(obj, "__dict__"):
            walk(vars(obj), seen)

    walk(result.coordinator, set())


@pytest.mark.anvil
@pytest.mark.skipif(not node_available(), reason="node or node_modules/.bin/anvil missing: run `make install`")
def test_the_same_round_settles_on_anvil():
    with start_anvil() as node:
        chain = connect(node.url)
        _, _, _, result = _round(chain)
    assert result.converged and sum(result.payments.values()) == 0
