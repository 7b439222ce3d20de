"""The shared-storage + P2P market through the chain: ADMM messages as round transactions, settlement."""
from __future__ import annotations

import numpy as np
import pytest

from offchain.chain.backends import connect, start_anvil
from offchain.mechanisms.admm import AdmmSettings, centralized_qp, run_admm
from offchain.models.storage_p2p import build_market
from offchain.models.storage_scenario import load_storage_scenario
from offchain.protocol import storage_round
from offchain.protocol.storage_round import run_storage_round

from ..conftest import ROOT, node_available

SCENARIO = ROOT / "scenarios" / "storage10.toml"
MEMBERS, HOURS = [0, 1, 5], range(12, 20)


@pytest.fixture(scope="module")
def market():
    sc = load_storage_scenario(SCENARIO).subset(MEMBERS)
    models, data = build_market(sc, 4, hours=HOURS)
    return models, data, AdmmSettings.from_scenario(sc)


@pytest.fixture(scope="module")
def sent():
    """What each prosumer handed to the chain exchange, per iteration (plaintext, for the privacy test)."""
    calls = []
    original = storage_round.ChainExchange._submit

    def spy(self, op, pairs, reveal_values):
        out = original(self, op, pairs, reveal_values)
        calls.append({"op": op, "pairs": pairs})
        return out

    storage_round.ChainExchange._submit = spy
    yield calls
    storage_round.ChainExchange._submit = original


@pytest.fixture(scope="module")
def embedded(market, sent):
    models, data, settings = market
    chain = connect(None)
    return chain, run_storage_round(chain, models, data, settings, key_bits=1024)


def test_the_chain_run_follows_the_in_process_admm_exactly(market, embedded):
    models, data, settings = market
    _, res = embedded
    plain = run_admm(models, data, settings)
    r = res.admm
    assert r.converged and r.iterations == plain.iterations
    np.testing.assert_array_equal(r.primal_residuals, plain.primal_residuals)
    np.testing.assert_array_equal(r.trades, plain.trades)
    np.testing.assert_array_equal(r.pair_prices, plain.pair_prices)
    np.testing.assert_array_equal(r.rents, plain.rents)
    q = centralized_qp(models, data)
    assert abs(r.objective - q.objective) <= 1e-3 * abs(q.objective)


def test_settlement_books_the_committed_bills_and_sums_to_zero(market, embedded):
    _, data, _ = market
    chain, res = embedded
    amounts = [res.payments[res.addresses[n]] for n in data.names]
    assert amounts == res.expected["amounts"]  # the contract's arithmetic = the Python mirror
    assert sum(res.payments.values()) == 0
    payees = res.expected["payees"]
    assert res.payments[res.addresses["operator"]] == payees["operator"] > 0  # rents and usage fees
    assert res.payments[res.addresses["centre"]] == payees["centre"] > 0  # transmission fees
    assert [b["p2p"] for b in res.bills] == [it["p2p"] for it in res.expected["items"]]
    assert any(b["p2p"] != 0 for b in res.bills)
    info = res.market.round_info(res.round_id)
    assert info["phase"] == "Settled" and info["iteration"] == res.admm.iterations
    # everything was withdrawn: the market holds no tokens
    assert res.market.token.balance_of(res.market.address) == 0


def test_no_prosumer_vector_appears_on_chain_before_settlement(market, embedded, sent):
    """Every operator message and pair message a prosumer handed over, in every plaintext encoding a
    leak would take (raw 64-bit words as sealed blocks have, 32-byte ABI words, the unmasked packed
    plaintext), is absent from every transaction input to the market before settlement. Whole vectors,
    not single values: a single small integer can equal a public number (a rent, an offset) by chance."""
    from offchain.privacy.packing import SlotLayout
    from offchain.units import energy_to_fixed

    chain, res = embedded
    settle = bytes.fromhex(res.market.contract.functions.settle(0, []).selector[2:])
    inputs = [bytes(tx.get("input", tx.get("data", b""))) for b in range(1, chain.w3.eth.block_number + 1)
              for tx in chain.w3.eth.get_block(b, full_transactions=True)["transactions"]
              if tx["to"] == res.market.address]
    blob = b"".join(i for i in inputs if i[:4] != settle)
    info = res.market.round_info(res.round_id)
    layout = SlotLayout(info["periods"], info["slot_bits"], info["slot_width"], len(sent[0]["op"]))

    def encodings(values):
        fixed = energy_to_fixed(values)
        yield b"".join(x.to_bytes(8, "big", signed=True) for x in fixed)
        yield b"".join(x.to_bytes(32, "big", signed=True) for x in fixed)

    assert len(sent) == res.admm.iterations + 1 > 2
    checked = 0
    for call in sent[:-1]:  # the closing message's commitments open at settlement, by design
        for out in call["pairs"].values():
            for v in out.values():
                for enc in encodings(v):
                    assert enc not in blob
                checked += 1
        for v in call["op"].values():
            for enc in encodings(v):
                assert enc not in blob
            packed = layout.pack(energy_to_fixed(v))
            assert packed.to_bytes((packed.bit_length() + 7) // 8 or 1, "big") not in blob
            checked += 1
    assert checked > 100


@pytest.mark.anvil
@pytest.mark.skipif(not node_available(), reason="needs node and the npm anvil")
def test_the_same_round_on_anvil_reaches_the_same_settlement(market, embedded):
    models, data, settings = market
    _, res = embedded
    with start_anvil() as node:
        other = run_storage_round(connect(node.url), models, data, settings, key_bits=1024)
    assert other.admm.iterations == res.admm.iterations
    assert other.expected["amounts"] == res.expected["amounts"]
    assert [other.payments[other.addresses[n]] for n in data.names] == res.expected["amounts"]


@pytest.mark.parametrize("case", [1, 2])
def test_grid_only_and_p2p_only_cases_settle_on_chain(case):
    """Case 1: no exchange at all, just the closing iteration; case 2: pair messages, no store."""
    sc = load_storage_scenario(SCENARIO).subset([0, 5])
    models, data = build_market(sc, case, hours=range(12, 16))
    settings = AdmmSettings.from_scenario(sc)
    res = run_storage_round(connect(None), models, data, settings, key_bits=1024)
    assert res.admm.converged and res.admm.iterations == run_admm(models, data, settings).iterations
    assert [res.payments[res.addresses[n]] for n in data.names] == res.expected["amounts"]
    assert sum(res.payments.values()) == 0
    assert res.payments[res.addresses["operator"]] == 0  # no store: no rents, no usage fees
    assert (res.payments[res.addresses["centre"]] > 0) == (case == 2)  # P2P transmission fees
    assert all(b["rent"] == 0 for b in res.bills)
