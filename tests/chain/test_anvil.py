"""The same contracts on an anvil node started by the test (Prague rules, JSON-RPC backend)."""
import secrets

import pytest
from eth_utils import keccak

from offchain.chain.backends import ContractRevert, anvil_binary, connect, start_anvil
from offchain.chain.market import Market, Reveal, RoundParams, commitment, deploy_rule
from offchain.mechanisms.tariff.market import settlement
from offchain.privacy.packing import SlotLayout
from offchain.privacy.paillier import generate_keypair

from .helpers import connect_with_test_contracts

pytestmark = pytest.mark.anvil

T, B, W = 4, 40, 48
FLOOR, CAP = [1] * T, [10] * T


@pytest.fixture(scope="module")
def anvil():
    if anvil_binary() is None:
        pytest.skip("anvil is not installed (npm ci installs node_modules/@foundry-rs/anvil)")
    with start_anvil() as node:
        yield node


@pytest.fixture(scope="module")
def deployed(anvil):
    chain = connect_with_test_contracts(anvil.url)
    assert chain.kind == "rpc" and chain.chain_id == 31337
    op = chain.accounts(1)[0]
    market = Market.deploy(chain, op)
    return chain, op, market, deploy_rule(chain, "TariffRule", op), deploy_rule(chain, "ProbeRule", op)


def test_tariff_round_runs_to_settlement_on_anvil(deployed):
    chain, op, market, tariff, _ = deployed
    coord, grid, *parts = chain.accounts(7, offset=1)
    public, private = generate_keypair(1024)
    layout = SlotLayout(T, B, W, participants=len(parts))
    rid, _ = market.create_round(coord, RoundParams(rule=tariff, slots=T, max_iterations=2, price_floor=FLOOR,
                                                    price_cap=CAP, grid_account=grid.address, n=public.n,
                                                    slot_bits=B, slot_width=W, verify_openings=True))
    market.register_many([(p, rid, bytes([i + 1]) * 32) for i, p in enumerate(parts)])
    # concurrent registrations are mined in any order: aggregate in the order the contract kept
    order = [address for address, _ in market.participants(rid)]
    parts.sort(key=lambda p: order.index(p.address))
    market.token.mint_many(op, [(a, 10**24) for a in parts + [grid]])
    market.deposit_many([(a, rid, 10**20) for a in parts + [grid]])
    market.start(coord, rid, [5] * T)
    subs = []
    for i, p in enumerate(parts):
        values = [i - 2, 3 * i, -i, 1]
        c = public.to_bytes(public.encrypt(layout.pack(values)))
        salt = secrets.token_bytes(32)
        subs.append((p, values, c, commitment(rid, 0, p.address, values, salt), salt))
    receipts = market.submit_many([(p, rid, 0, c, cm) for p, _, c, cm, _ in subs])
    assert all(r["status"] == 1 for r in receipts)
    agg, receipt = market.aggregate(coord, rid, [s[2] for s in subs], [s[3] for s in subs])
    prod = public.add(*(int.from_bytes(s[2], "big") for s in subs))
    assert int.from_bytes(agg, "big") == prod
    # the opening check costs ~0.7M gas for a 1024-bit key under Prague pricing
    sums, _ = market.conclude(coord, rid, agg, *private.opening(prod))
    assert sums == [sum(s[1][t] for s in subs) for t in range(T)]
    result = market.settle(coord, rid, [Reveal(v, salt, keccak(c)) for _, v, c, _, salt in subs])
    amounts, grid_amount = settlement([s[1] for s in subs], [5] * T, FLOOR, CAP)
    assert result.payments == {**{p.address: a for p, a in zip(parts, amounts)}, grid.address: grid_amount}
    assert market.balance(rid, parts[4]) == 10**20 - amounts[4] and amounts[4] > 0  # the biggest buyer pays
    market.withdraw_many(parts + [grid], rid)
    assert market.token.balance_of(market.address) == 0


def test_rule_errors_are_decoded_over_rpc(deployed):
    chain, _, market, tariff, _ = deployed
    coord, grid = chain.accounts(2, offset=20)
    public, _ = generate_keypair(1024)
    p = RoundParams(rule=tariff, slots=T, max_iterations=2, price_floor=FLOOR, price_cap=CAP,
                    grid_account=grid.address, n=public.n, slot_bits=B, slot_width=W, terms=b"\x01")
    with pytest.raises(ContractRevert) as err:  # raised by TariffRule.configure, passed on by the core
        market.create_round(coord, p)
    assert str(err.value) == "BadParameters(reason='terms')"


def test_round_without_key_and_a_closed_round_on_anvil(deployed):
    chain, op, market, _, probe = deployed
    coord, grid, *parts = chain.accounts(5, offset=30)
    market.token.mint_many(op, [(a, 10**6) for a in parts + [grid]])
    p = RoundParams(rule=probe, slots=1, max_iterations=2, price_floor=[1], price_cap=[9], grid_account=grid.address)
    rids = [market.create_round(coord, p)[0] for _ in range(2)]
    for rid in rids:
        market.register_many([(a, rid, b"\x01" * 32) for a in parts])
        market.deposit_many([(a, rid, 1000) for a in parts + [grid]])
        market.start(coord, rid, [3])
    keyless, closed = rids
    order = [a for a, _ in market.participants(keyless)]
    parts.sort(key=lambda a: order.index(a.address))
    salts = [secrets.token_bytes(32) for _ in parts]
    values = [[7 * i - 10] for i in range(len(parts))]
    market.submit_many([(a, keyless, 0, b"", commitment(keyless, 0, a.address, v, s))
                        for a, v, s in zip(parts, values, salts)])
    assert market.conclude(coord, keyless, b"", None, None)[0] == []
    result = market.settle(coord, keyless, [Reveal(v, s, keccak(b"")) for v, s in zip(values, salts)])
    assert result.payments == {**{a.address: v[0] for a, v in zip(parts, values)},
                               grid.address: -sum(v[0] for v in values)}
    receipt = market.close(coord, closed)
    changes = chain.events(receipt, market.contract, "PhaseChanged")
    assert [(e["args"]["from"], e["args"]["to"]) for e in changes] == [(1, 4)]  # Iterating -> Closed
    market.withdraw_many(parts + [grid], closed)
    assert all(market.balance(closed, a) == 0 for a in parts + [grid])


def test_many_transactions_of_one_sender_are_all_mined_in_order_on_anvil(anvil):
    chain = connect(anvil.url)
    op, *rest = chain.accounts(41, offset=100)
    token = chain.deploy("SettlementToken", op.address, sender=op)
    chain.transact(token.functions.mint(op.address, 10**6), op)
    items = [(token.functions.transfer(a.address, 1), op) for a in rest for _ in range(3)]
    receipts = chain.transact_many(items)  # how fast is a benchmark's business (gridshare bench), not a test's
    assert all(r["status"] == 1 for r in receipts)
    assert all(token.functions.balanceOf(a.address).call() == 3 for a in rest)
