"""The same contracts on an anvil node started by the test (Prague rules, JSON-RPC backend)."""
import secrets
import time

import gmpy2
import pytest
from eth_utils import keccak
from phe import paillier as phe_paillier

from offchain.chain.backends import anvil_binary, connect, start_anvil
from offchain.chain.market import Market, RoundParams, commitment

pytestmark = [pytest.mark.anvil, pytest.mark.xdist_group("chain-anvil")]

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
    pub, priv = phe_paillier.generate_paillier_keypair(n_length=1024)
    n, nsq = pub.n, pub.n * pub.n
    market = Market.deploy(chain, op)
    rid, _ = market.create_round(coord, RoundParams(n, T, B, W, 2, [1] * T, [10] * T, grid.address, True))
    market.register_many([(p, rid, bytes([i + 1]) * 32) for i, p in enumerate(parts)])
    market.start(coord, rid, [5] * T)
    subs = []
    for i, p in enumerate(parts):
        values = [i - 2, 3 * i, -i, 1]
        m = sum((v % (1 << B)) << (t * W) for t, v in enumerate(values))
        c = (1 + m * n) * int(gmpy2.powmod(secrets.randbelow(n - 1) + 1, n, nsq)) % nsq
        salt = secrets.token_bytes(32)
        subs.append((p, values, c.to_bytes(256, "big"), commitment(rid, 0, p.address, values, salt)))
    receipts = market.submit_many([(p, rid, 0, c, cm) for p, _, c, cm in subs])
    assert all(r["status"] == 1 for r in receipts)
    agg, receipt = market.aggregate(coord, rid, [s[2] for s in subs], [s[3] for s in subs])
    prod = 1
    for s in subs:
        prod = prod * int.from_bytes(s[2], "big") % nsq
    assert int.from_bytes(agg, "big") == prod
    # the opening check costs ~0.7M gas for a 1024-bit key under Prague pricing
    m = priv.raw_decrypt(prod)
    lam = (priv.p - 1) * (priv.q - 1)
    x = prod * int(gmpy2.powmod(1 + n, -m, nsq)) % nsq
    rho = int(gmpy2.powmod(x % n, gmpy2.invert(n, lam), n))
    sums, _ = market.conclude(coord, rid, agg, m, rho)
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
