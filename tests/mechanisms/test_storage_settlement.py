"""The integer settlement of the storage + P2P market (StorageRule's arithmetic, in Python):
positive = paid, every item a transfer; and the on-chain terms of a market case."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from offchain import registry
from offchain.chain.market import decode_abi, encode_abi
from offchain.mechanisms.storage.settlement import (
    ITEMS,
    PAYEES,
    TERMS_ABI,
    StorageTerms,
    market_terms,
    settlement_amounts,
)
from offchain.models.storage_p2p import market_data
from offchain.units import energy_to_fixed, price_to_fixed

M = 10**6  # fixed point
UNIT = 10**6  # token base units per (1e-6 price x 1e-6 quantity)
STORAGE = Path(__file__).resolve().parents[2] / "scenarios" / "storage10.toml"


def _terms(n=3):
    return StorageTerms(operator="0x" + "01" * 20, centre="0x" + "02" * 20,
                        energy_cap=100 * M, power_cap=50 * M, capacity_slack=M, usage_price=80_000,
                        storage_fee=[10_000, 20_000, 30_000][:n],
                        pair_fee=[0 if i == j else 15_000 + 1_000 * i for i in range(n) for j in range(n)],
                        grid_buy=[1_000_000, 500_000], grid_sell=[300_000, 300_000])


def _reveal(ce, cp, thr, net, blocks=()):
    out = [ce, cp, thr, *net]
    for trade, half in blocks:
        out += [*trade, *half]
    return out


def _balanced(s) -> bool:
    return sum(s.amounts) + sum(s.payees.values()) == 0


def test_every_item_is_a_transfer_and_matches_a_hand_computation():
    terms = _terms()
    assert terms.members == 3 and terms.periods == 2  # the fee tables define the members
    rents = (500_000, 300_000)  # 0.5 per kWh, 0.3 per kW
    # prosumer 0 sells 2 kWh to 1 in period 0 at 0.6 (halves 0.25 + 0.35); 1 buys it back in period 1
    r0 = _reveal(10 * M, 5 * M, 4 * M, [M, -2 * M], [([2 * M, -M], [250_000, 250_000]), ([0, 0], [0, 0])])
    r1 = _reveal(0, 0, 0, [0, 3 * M], [([-2 * M, M], [350_000, 350_000]), ([0, 0], [0, 0])])
    r2 = _reveal(20 * M, 0, 0, [-M, 0], [([0, 0], [0, 0]), ([0, 0], [0, 0])])
    s = settlement_amounts(terms, rents, [r0, r1, r2], p2p=True)
    it0 = s.items[0]
    assert list(it0) == list(ITEMS) and set(s.payees) == set(PAYEES)
    assert it0["rent"] == (500_000 * 10 * M + 300_000 * 5 * M) * UNIT  # positive: paid
    assert it0["usage"] == 80_000 * 4 * M * UNIT
    # transmission: storage 0.01 x 4 kWh, plus the buyer's fee (its row: 0.015) on the 1 kWh bought in period 1
    assert it0["transmission"] == (10_000 * 4 * M + 15_000 * M) * UNIT
    assert s.items[1]["transmission"] == (16_000 * 2 * M) * UNIT  # prosumer 1 bought 2 kWh, row 1: 0.016
    assert it0["grid"] == (1_000_000 * M - 300_000 * 2 * M) * UNIT
    assert it0["p2p"] == -(600_000 * 2 * M - 600_000 * M) * UNIT  # sold 2 at 0.6, bought 1 at 0.6: received
    assert s.items[1]["p2p"] == -it0["p2p"]
    assert s.items[2]["grid"] == -300_000 * M * UNIT  # export paid at feed-in: negative, received
    assert s.amounts == [sum(it.values()) for it in s.items]
    assert _balanced(s)
    # the payees receive (negative = received): rents and usage to the operator, fees to the centre
    assert s.payees["operator"] == -(it0["rent"] + it0["usage"] + s.items[2]["rent"]) < 0
    assert s.payees["centre"] == -sum(it["transmission"] for it in s.items) < 0
    assert s.payees["grid"] == -sum(it["grid"] for it in s.items)


def test_without_p2p_the_reveal_has_no_pair_blocks_and_no_pair_payments():
    terms = _terms(2)
    s = settlement_amounts(terms, (0, 0), [_reveal(0, 0, 0, [M, M]), _reveal(0, 0, 0, [-M, 0])], p2p=False)
    assert [it["p2p"] for it in s.items] == [0, 0]
    assert s.amounts == [(1_000_000 + 500_000) * M * UNIT, -300_000 * M * UNIT]
    assert _balanced(s)


def test_fees_follow_the_member_index_not_the_registration_order():
    """``members[i]`` is the member index of the i-th registered participant: it selects the
    storage fee and the pair-fee row; swapping the registration swaps the fees with it."""
    terms = _terms(2)  # storage fees 0.01 / 0.02, pair-fee rows 0.015 / 0.016
    trade0 = ([-M, 0], [100_000, 0])  # participant 0 buys 1 kWh from 1 in period 0
    trade1 = ([M, 0], [100_000, 0])
    r0, r1 = _reveal(0, 0, 2 * M, [0, 0], [trade0]), _reveal(0, 0, 0, [0, 0], [trade1])
    default = settlement_amounts(terms, (0, 0), [r0, r1], p2p=True)
    assert default.items[0]["transmission"] == (10_000 * 2 * M + 15_000 * M) * UNIT
    swapped = settlement_amounts(terms, (0, 0), [r0, r1], p2p=True, members=[1, 0])
    assert swapped.items[0]["transmission"] == (20_000 * 2 * M + 16_000 * M) * UNIT
    assert swapped.items[0]["p2p"] == default.items[0]["p2p"] == 200_000 * M * UNIT  # pays 0.2 for 1 kWh
    assert _balanced(default) and _balanced(swapped)


@pytest.fixture(scope="module")
def storage10():
    return registry.load_scenario(STORAGE)[1]


def test_market_terms_encode_a_case_in_the_on_chain_units(storage10):
    operator, centre = "0x" + "aa" * 20, "0x" + "bb" * 20
    data = market_data(storage10, 4, hours=range(10, 16))
    t = market_terms(data, operator, centre, 0.25)
    st = storage10.storage
    assert (t.energy_cap, t.power_cap, t.capacity_slack) == (int(st.energy_kwh * M), int(st.power_kw * M), M // 4)
    assert t.usage_price == price_to_fixed([st.usage_cost])[0]
    assert t.members == data.n == 10 and t.periods == 6
    assert t.storage_fee == price_to_fixed(data.storage_fees)
    assert t.pair_fee == price_to_fixed(data.fees.ravel()) and len(t.pair_fee) == 100
    assert [t.pair_fee[i * 10 + i] for i in range(10)] == [0] * 10
    assert t.pair_fee[0 * 10 + 9] == price_to_fixed([storage10.fee(0, 9)])[0]  # row = buyer, column = seller
    assert t.grid_buy == price_to_fixed(storage10.tariff.retail[10:16])
    assert t.grid_sell == price_to_fixed(storage10.tariff.feed_in[10:16])
    # without the shared store (cases 1 and 2) nothing can be rented
    t2 = market_terms(market_data(storage10, 2), operator, centre, 0.0)
    assert (t2.energy_cap, t2.power_cap, t2.capacity_slack) == (0, 0, 0)
    assert energy_to_fixed([st.energy_kwh]) == [t.energy_cap]


def test_terms_round_trip_through_the_abi_encoding(storage10):
    t = market_terms(market_data(storage10, 4, hours=range(0, 3)), to_checksum_address("0x" + "aa" * 20),
                     to_checksum_address("0x" + "bb" * 20), 1.5)
    back = StorageTerms.from_tuple(decode_abi(TERMS_ABI, encode_abi(TERMS_ABI, t.as_tuple())))
    # eth_abi decodes addresses in lower case
    assert replace(back, operator=to_checksum_address(back.operator), centre=to_checksum_address(back.centre)) == t
    assert back.pair_fee == t.pair_fee and back.members == t.members == 10 and back.periods == 3
