"""The same contracts on an anvil node started by the test (Prague rules, JSON-RPC backend)."""
import secrets
import time

import pytest

from offchain.chain.backends import anvil_binary, connect, start_anvil
from offchain.chain.market import Market, RoundParams, commitment
from offchain.privacy.packing import SlotLayout
from offchain.privacy.paillier import generate_keypair

pytestmark = pytest.mark.anvil

T, B, W = 4, 40, 48


@pytest.fixture(scope="module")
def anvil():
    if anvil_binary() is None:
        pytest.skip("anvil is not installed (npm ci installs node_modules/@foundry-rs/anvil)")
    with start_anvil() as node:
        yield node


def test_submit_and_aggregate_on_anvil(anvil):
    chain = connect(anvil.url)
    assert chain.kind == "rpc" and chain.chain_id == 31337
    accts = chain.accounts(8)
    op, coord, grid, *parts = accts
    public, private = generate_keypair(1024)
    layout = SlotLayout(T, B, W, participants=len(parts))
    market = Market.deploy(chain, op)
    rid, _ = market.create_round(coord, RoundParams(public.n, T, B, W, 2, [1] * T, [10] * T, grid.address, True))
    market.register_many([(p, rid, bytes([i + 1]) * 32) for i, p in enumerate(parts)])
    # concurrent registrations are mined in any order: aggregate in the order the contract kept
    order = [address for address, _ in market.participants(rid)]
    parts.sort(key=lambda p: order.index(p.address))
    market.start(coord, rid, [5] * T)
    subs = []
    for i, p in enumerate(parts):
        values = [i - 2, 3 * i, -i, 1]
        c = public.to_bytes(public.encrypt(layout.pack(values)))
        subs.append((p, values, c, commitment(rid, 0, p.address, values, secrets.token_bytes(32))))
    receipts = market.submit_many([(p, rid, 0, c, cm) for p, _, c, cm in subs])
    assert all(r["status"] == 1 for r in receipts)
    agg, receipt = market.aggregate(coord, rid, [s[2] for s in subs], [s[3] for s in subs])
    prod = public.add(*(int.from_bytes(s[2], "big") for s in subs))
    assert int.from_bytes(agg, "big") == prod
    # the opening check costs ~0.7M gas for a 1024-bit key under Prague pricing
    sums, _ = market.conclude(coord, rid, agg, *private.opening(prod))
    assert sums == [sum(s[1][t] for s in subs) for t in range(T)]


def test_transactions_are_fast_on_anvil(anvil):
    chain = connect(anvil.url)
    op, *rest = chain.accounts(41, offset=100)
    token = chain.deploy("SettlementToken", op.address, sender=op)
    chain.transact(token.functions.mint(op.address, 10**6), op)
    items = [(token.functions.transfer(a.address, 1), op) for a in rest for _ in range(3)]
    t = time.perf_counter()
    receipts = chain.transact_many(items)
    rate = len(items) / (time.perf_counter() - t)
    assert all(r["status"] == 1 for r in receipts)
    assert all(token.functions.balanceOf(a.address).call() == 3 for a in rest)
    assert rate > 20, rate
