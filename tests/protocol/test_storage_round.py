"""The shared-storage + P2P market through the chain: ADMM messages as round transactions, settlement."""
from __future__ import annotations

import numpy as np
import pytest

from offchain.chain.backends import connect, start_anvil
from offchain.mechanisms.storage import solve_admm
from offchain.mechanisms.storage.market import AdmmSettings, centralized_qp
from offchain.models.storage_p2p import build_market
from offchain.protocol import keys
from offchain.protocol.transport import ChainTransport
from offchain.registry import load_scenario

from ..conftest import ROOT, node_available

SCENARIO = ROOT / "scenarios" / "storage10.toml"
MEMBERS, HOURS = [0, 1, 5], range(12, 20)


def _scenario():
    return load_scenario(SCENARIO)[1]


@pytest.fixture(scope="module")
def market():
    sc = _scenario().subset(MEMBERS)
    models, data = build_market(sc, 4, hours=HOURS)
    return models, data, AdmmSettings.from_scenario(sc)


@pytest.fixture(scope="module")
def sent():
    """What each prosumer handed to its sealing, per iteration (plaintext, for the privacy test)."""
    calls = []
    original = keys.MemberKeys.seal

    def spy(self, round_id, k, attempt, c, partners, *rest):
        calls.append({"k": k, "sums": list(c.sums), "pairs": {a: list(v) for a, v in partners.items()}})
        return original(self, round_id, k, attempt, c, partners, *rest)

    keys.MemberKeys.seal = spy
    yield calls
    keys.MemberKeys.seal = original


@pytest.fixture(scope="module")
def embedded(market, sent):
    models, data, settings = market
    chain = connect(None)
    return chain, *solve_admm(models, data, settings, transport=ChainTransport(chain, key_bits=1024))


def test_the_chain_run_follows_the_plaintext_admm_exactly(market, embedded):
    models, data, settings = market
    _, r, _ = embedded
    plain, _ = solve_admm(models, data, settings)
    assert r.converged and r.iterations == plain.iterations
    np.testing.assert_array_equal(r.primal_residuals, plain.primal_residuals)
    np.testing.assert_array_equal(r.trades, plain.trades)
    np.testing.assert_array_equal(r.pair_prices, plain.pair_prices)
    np.testing.assert_array_equal(r.rents, plain.rents)
    q = centralized_qp(models, data)
    assert abs(r.objective - q.objective) <= 1e-3 * abs(q.objective)


def test_settlement_books_the_committed_bills_and_sums_to_zero(market, embedded):
    _, data, _ = market
    chain, r, out = embedded
    s, t = out.settlement, out.transport
    mirror = t.mirror(out.final_prices)
    assert s.amounts == mirror.amounts and s.payees == mirror.payees  # the contract's arithmetic = the Python mirror
    assert s.bills == mirror.bills and any(b[4] != 0 for b in s.bills)  # p2p items
    assert sum(s.amounts) + sum(s.payees.values()) == 0
    assert s.payees["operator"] < 0 and s.payees["centre"] < 0  # rents, usage and transmission fees received
    info = t.market.round_info(t.round_id)
    assert info["phase"] == "Settled" and info["iteration"] == r.iterations
    assert info["allow_list"] and t.market.member_index(t.round_id, t.accounts[data.names[2]]) == 2
    assert t.market.token.balance_of(t.market.address) == 0  # everything was withdrawn


def test_no_prosumer_vector_appears_on_chain_before_settlement(market, embedded, sent):
    """Every operator message and pair message a prosumer handed over, in every plaintext encoding a
    leak would take (raw 64-bit words as sealed blocks have, 32-byte ABI words, the unmasked packed
    plaintext), is absent from every transaction input to the market before settlement. Whole vectors,
    not single values: a single small integer can equal a public number (a rent, an offset) by chance."""
    from offchain.privacy.packing import SlotLayout

    chain, r, out = embedded
    t = out.transport
    settlement = {x.hash for x in t.transactions if x.kind in ("reveal", "settle")}  # the reveals open by design
    inputs = [bytes(chain.w3.eth.get_transaction(x.hash)["input"]) for x in t.transactions if x.hash not in settlement]
    blob = b"".join(inputs)
    info = t.market.round_info(t.round_id)
    layout = SlotLayout(info["slots"], info["slot_bits"], info["slot_width"], len(MEMBERS))

    def encodings(fixed):
        yield b"".join(int(x).to_bytes(8, "big", signed=True) for x in fixed)
        yield b"".join(int(x).to_bytes(32, "big", signed=True) for x in fixed)

    closing = max(c["k"] for c in sent)
    assert closing == r.iterations > 2
    checked = 0
    for call in sent:
        if call["k"] == closing:
            continue  # the closing message's commitments open at settlement, by design
        for v in call["pairs"].values():
            for enc in encodings(v):
                assert enc not in blob
            checked += 1
        for enc in encodings(call["sums"]):
            assert enc not in blob
        packed = layout.pack(call["sums"])
        assert packed.to_bytes((packed.bit_length() + 7) // 8 or 1, "big") not in blob
        checked += 1
    assert checked > 100


@pytest.mark.anvil
@pytest.mark.skipif(not node_available(), reason="needs node and the npm anvil")
def test_the_same_round_on_anvil_reaches_the_same_settlement(market, embedded):
    models, data, settings = market
    _, r, out = embedded
    with start_anvil() as node:
        other, other_out = solve_admm(models, data, settings, transport=ChainTransport(connect(node.url), key_bits=1024))
    assert other.iterations == r.iterations
    assert other_out.settlement.amounts == out.settlement.amounts


@pytest.mark.parametrize("case", [1, 2])
def test_grid_only_and_p2p_only_cases_settle_on_chain(case):
    """Case 1: no exchange at all, just the closing iteration; case 2: pair messages, no store."""
    sc = _scenario().subset([0, 1, 5])
    models, data = build_market(sc, case, hours=range(12, 16))
    settings = AdmmSettings.from_scenario(sc)
    r, out = solve_admm(models, data, settings, transport=ChainTransport(connect(None), key_bits=1024))
    assert r.converged and r.iterations == solve_admm(models, data, settings)[0].iterations
    s = out.settlement
    assert s.amounts == out.transport.mirror(out.final_prices).amounts
    assert sum(s.amounts) + sum(s.payees.values()) == 0
    assert s.payees["operator"] == 0  # no store: no rents, no usage fees
    assert (s.payees["centre"] < 0) == (case == 2)  # P2P transmission fees
    assert all(b[0] == 0 for b in s.bills)  # no rent
