"""The integer settlement of the storage + P2P market (the contract's arithmetic, in Python)."""
from __future__ import annotations

from offchain.chain.market import StorageTerms
from offchain.mechanisms.storage_settlement import settlement_amounts

M = 10**6  # fixed point
UNIT = 10**6  # token base units per (1e-6 price x 1e-6 quantity)


def _terms(n=3):
    return StorageTerms(operator="0x" + "01" * 20, centre="0x" + "02" * 20,
                        members=["0x" + f"{i + 3:02x}" * 20 for i in range(n)],
                        energy_cap=100 * M, power_cap=50 * M, capacity_slack=M, usage_price=80_000,
                        storage_fee=[10_000, 20_000, 30_000][:n],
                        pair_fee=[0 if i == j else 15_000 + 1_000 * i for i in range(n) for j in range(n)],
                        grid_buy=[1_000_000, 500_000], grid_sell=[300_000, 300_000])


def _reveal(ce, cp, thr, net, blocks=()):
    out = [ce, cp, thr, *net]
    for trade, half in blocks:
        out += [*trade, *half]
    return out


def test_every_item_is_a_transfer_and_matches_a_hand_computation():
    terms = _terms()
    rents = (500_000, 300_000)  # 0.5 per kWh, 0.3 per kW
    # prosumer 0 sells 2 kWh to 1 in period 0 at 0.6 (halves 0.25 + 0.35); 1 buys it back in period 1
    r0 = _reveal(10 * M, 5 * M, 4 * M, [M, -2 * M], [([2 * M, -M], [250_000, 250_000]), ([0, 0], [0, 0])])
    r1 = _reveal(0, 0, 0, [0, 3 * M], [([-2 * M, M], [350_000, 350_000]), ([0, 0], [0, 0])])
    r2 = _reveal(20 * M, 0, 0, [-M, 0], [([0, 0], [0, 0]), ([0, 0], [0, 0])])
    s = settlement_amounts(terms, rents, [r0, r1, r2], p2p=True)
    it0 = s.items[0]
    assert it0["rent"] == -(500_000 * 10 * M + 300_000 * 5 * M) * UNIT
    assert it0["usage"] == -80_000 * 4 * M * UNIT
    # transmission: storage 0.01 x 4 kWh, plus the buyer's fee (its row: 0.015) on the 1 kWh bought in period 1
    assert it0["transmission"] == -(10_000 * 4 * M + 15_000 * M) * UNIT
    assert s.items[1]["transmission"] == -(16_000 * 2 * M) * UNIT  # prosumer 1 bought 2 kWh, row 1: 0.016
    assert it0["grid"] == -(1_000_000 * M - 300_000 * 2 * M) * UNIT
    assert it0["p2p"] == (600_000 * 2 * M - 600_000 * M) * UNIT  # sold 2 at 0.6, bought 1 at 0.6
    assert s.items[1]["p2p"] == -it0["p2p"]
    assert s.items[2]["grid"] == 300_000 * M * UNIT  # export paid at feed-in
    assert sum(s.amounts) + sum(s.payees.values()) == 0
    assert s.payees["operator"] == -(it0["rent"] + it0["usage"] + s.items[2]["rent"])


def test_without_p2p_the_reveal_has_no_pair_blocks_and_no_pair_payments():
    terms = _terms(2)
    s = settlement_amounts(terms, (0, 0), [_reveal(0, 0, 0, [M, M]), _reveal(0, 0, 0, [-M, 0])], p2p=False)
    assert [it["p2p"] for it in s.items] == [0, 0]
    assert sum(s.amounts) + sum(s.payees.values()) == 0
