"""The same contracts on anvil nodes started by the test (JSON-RPC backend): anvil's default
hardfork (Osaka-era: EIP-7825's 2**24 gas cap per transaction and EIP-7883's MODEXP pricing) and
Prague. An opening challenge runs in as many transactions as the cap needs (``chain.challenge_steps``
256-bit steps each at 2048 bits)."""
import secrets

import pytest
from eth_utils import keccak

from offchain.chain.backends import ContractRevert, anvil_binary, connect, start_anvil
from offchain.chain.market import Market, Reveal, RoundParams, Windows, commitment, deploy_rule
from offchain.mechanisms.tariff.market import settlement
from offchain.privacy.packing import SlotLayout

from .helpers import CLOSE, PHASE, TX_GAS_CAP, connect_with_test_contracts, keygen, mask_key

pytestmark = pytest.mark.anvil

T, B, W = 4, 40, 48
FLOOR, CAP = [1] * T, [10] * T
WINDOWS = Windows(registration=100, submission=100, recovery=20, coordinator=100, challenge=10)
HARDFORKS = {"default": None, "prague": "prague"}
_DEPLOYED = {}  # hardfork -> what deploy() deployed on its node (cleared when the nodes stop)


@pytest.fixture(scope="module")
def nodes():
    """anvil nodes by hardfork, started on first use, stopped at the module's end."""
    if anvil_binary() is None:
        pytest.skip("anvil is not installed (npm ci installs node_modules/@foundry-rs/anvil)")
    started = {}

    def node(name="default"):
        if name not in started:
            started[name] = start_anvil(hardfork=HARDFORKS[name])
        return started[name]

    yield node
    _DEPLOYED.clear()
    for n in started.values():
        n.stop()


@pytest.fixture(scope="module")
def anvil(nodes):
    return nodes("default")


def deploy(nodes, name="default"):
    """(chain, operator, market, TariffRule, ProbeRule) on the node of a hardfork, deployed once."""
    if name not in _DEPLOYED:
        chain = connect_with_test_contracts(nodes(name).url)
        assert chain.kind == "rpc" and chain.chain_id == 31337
        op = chain.accounts(1)[0]
        market = Market.deploy(chain, op)
        _DEPLOYED[name] = chain, op, market, deploy_rule(chain, "TariffRule", op), deploy_rule(chain, "ProbeRule", op)
    return _DEPLOYED[name]


@pytest.fixture(scope="module")
def deployed(nodes):
    return deploy(nodes)


def in_registration_order(market, rid, parts):
    """Concurrent registrations are mined in any order: the participants in the order the contract kept."""
    order = [address for address, _ in market.participants(rid)]
    return sorted(parts, key=lambda p: order.index(p.address))


def test_default_hardfork_is_osaka_era_and_prague_is_not(nodes):
    default = connect(nodes("default").url)
    assert default.osaka_pricing and default.hardfork not in ("prague", "unknown"), default.hardfork
    assert default.challenge_steps == 3 and default.tx_gas_limit == TX_GAS_CAP
    prague = connect(nodes("prague").url)
    assert prague.hardfork == "prague" and not prague.osaka_pricing and prague.challenge_steps == 8


def test_tariff_round_runs_to_settlement_on_anvil(deployed):
    chain, op, market, tariff, _ = deployed
    coord, grid, *parts = chain.accounts(7, offset=1)
    key = keygen(1024)
    layout = SlotLayout(T, B, W, participants=len(parts))
    rid, _ = market.create_round(coord, RoundParams(rule=tariff, slots=T, max_iterations=2, price_floor=FLOOR,
                                                    price_cap=CAP, grid_account=grid.address, n=key.n,
                                                    slot_bits=B, slot_width=W, windows=WINDOWS))
    market.register_many([(p, rid, mask_key(i)) for i, p in enumerate(parts)])
    parts = in_registration_order(market, rid, parts)
    market.token.mint_many(op, [(a, 10**24) for a in parts + [grid]])
    market.deposit_many([(a, rid, 10**20) for a in parts + [grid]])
    market.start(coord, rid, [5] * T)
    subs = []
    for i, p in enumerate(parts):
        values = [i - 2, 3 * i, -i, 1]
        c = key.ct(key.enc(layout.pack(values)))
        salt = secrets.token_bytes(32)
        subs.append((p, values, c, commitment(rid, 0, p.address, values, salt), salt))
    receipts = market.submit_many([(p, rid, 0, c, cm) for p, _, c, cm, _ in subs])
    assert all(r["status"] == 1 for r in receipts)
    agg, _ = market.aggregate(coord, rid, [s[2] for s in subs], [s[3] for s in subs])
    prod = key.public.add(*(int.from_bytes(s[2], "big") for s in subs))
    assert int.from_bytes(agg, "big") == prod
    m, rho = key.opening(prod)
    sums, _ = market.conclude(coord, rid, agg, m, rho)
    assert sums == [sum(s[1][t] for s in subs) for t in range(T)]
    held, challenge = market.challenge(parts[0], rid, 0, agg, m, rho)  # 3 steps per transaction here
    assert held and len(challenge) == 2 and all(r["gasUsed"] < TX_GAS_CAP for r in challenge)
    with pytest.raises(ContractRevert) as err:
        market.settle(coord, rid, [Reveal(v, salt, keccak(c)) for _, v, c, _, salt in subs])
    assert err.value.name == "ChallengeWindowOpen"
    chain.mine_until(market.round_info(rid)["challenge_until"])
    result = market.settle(coord, rid, [Reveal(v, salt, keccak(c)) for _, v, c, _, salt in subs])
    amounts, grid_amount = settlement([s[1] for s in subs], [5] * T, FLOOR, CAP)
    assert result.payments == {**{p.address: a for p, a in zip(parts, amounts)}, grid.address: grid_amount}
    assert market.balance(rid, parts[4]) == 10**20 - amounts[4] and amounts[4] > 0  # the biggest buyer pays
    market.withdraw_many(parts + [grid], rid)
    assert market.token.balance_of(market.address) == 0


def test_rule_errors_are_decoded_over_rpc(deployed):
    chain, _, market, tariff, _ = deployed
    coord, grid = chain.accounts(2, offset=20)
    p = RoundParams(rule=tariff, slots=T, max_iterations=2, price_floor=FLOOR, price_cap=CAP,
                    grid_account=grid.address, n=keygen(1024).n, slot_bits=B, slot_width=W, terms=b"\x01",
                    windows=WINDOWS)
    with pytest.raises(ContractRevert) as err:  # raised by TariffRule.configure, passed on by the core
        market.create_round(coord, p)
    assert str(err.value) == "BadParameters(reason='terms')"


def test_round_without_key_and_a_closed_round_on_anvil(deployed):
    chain, op, market, _, probe = deployed
    coord, grid, *parts = chain.accounts(5, offset=30)
    market.token.mint_many(op, [(a, 10**6) for a in parts + [grid]])
    p = RoundParams(rule=probe, slots=1, max_iterations=2, price_floor=[1], price_cap=[9], grid_account=grid.address,
                    windows=Windows(registration=100, submission=100, coordinator=100, challenge=0))
    rids = [market.create_round(coord, p)[0] for _ in range(2)]
    for rid in rids:
        market.register_many([(a, rid, mask_key(i)) for i, a in enumerate(parts)])
        market.deposit_many([(a, rid, 1000) for a in parts + [grid]])
        market.start(coord, rid, [3])
    keyless, closed = rids
    parts = in_registration_order(market, keyless, parts)
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
    assert [(e["args"]["from"], e["args"]["to"]) for e in changes] == [(PHASE["Iterating"], PHASE["Closed"])]
    market.withdraw_many(parts + [grid], closed)
    assert all(market.balance(closed, a) == 0 for a in parts + [grid])


@pytest.mark.parametrize("hardfork", list(HARDFORKS))
def test_opening_challenges_with_a_2048_bit_key_fit_the_gas_cap(nodes, hardfork):
    """A 2048-bit round of three on each hardfork: an honest opening challenged to its end is
    confirmed, a false one closes the round; every transaction stays under 2**24 gas. Under
    EIP-7883 a whole check (~31M gas) takes three transactions of chain.challenge_steps = 3 steps;
    under Prague's pricing one of 8 steps."""
    chain, op, market, tariff, _ = deploy(nodes, hardfork)
    coord, grid, *parts = chain.accounts(5, offset=40)
    key = keygen(2048)
    S = 4
    market.token.mint_many(op, [(a, 10**24) for a in parts + [grid]])
    rid, _ = market.create_round(coord, RoundParams(rule=tariff, slots=S, max_iterations=3, price_floor=FLOOR,
                                                    price_cap=CAP, grid_account=grid.address, n=key.n, slot_bits=B,
                                                    slot_width=W, windows=WINDOWS))
    market.register_many([(p, rid, mask_key(i)) for i, p in enumerate(parts)])
    parts = in_registration_order(market, rid, parts)
    market.deposit_many([(a, rid, 10**20) for a in parts + [grid]])
    market.start(coord, rid, [5] * S)
    layout = SlotLayout(S, B, W, participants=len(parts))
    all_gas = []

    def iteration(k):
        subs = []
        for i, p in enumerate(parts):
            values = [k + i, -i, 2, 0]
            salt = secrets.token_bytes(32)
            subs.append((p, values, key.ct(key.enc(layout.pack(values))), salt))
        rs = market.submit_many([(p, rid, k, c, commitment(rid, k, p.address, v, s)) for p, v, c, s in subs])
        agg, rs2 = market.aggregate(coord, rid, [s[2] for s in subs],
                                    [commitment(rid, k, p.address, v, s) for p, v, _, s in subs])
        all_gas.extend(r["gasUsed"] for r in rs + rs2)
        return rs, agg

    submits, agg = iteration(0)
    m, rho = key.opening(agg)
    _, receipt = market.publish(coord, rid, agg, m, rho, [5] * S)
    held, challenge = market.challenge(parts[1], rid, 0, agg, m, rho)
    assert held
    gas = [r["gasUsed"] for r in challenge]
    assert len(gas) == -(-8 // chain.challenge_steps) and max(gas) < TX_GAS_CAP, gas
    _, agg = iteration(1)
    m, rho = key.opening(agg)
    market.conclude(coord, rid, agg, m, rho - 1)  # a false opening
    if chain.osaka_pricing:  # Prague's 8 steps per transaction would need ~35M gas: out of gas at the cap
        with pytest.raises(ContractRevert):
            market.challenge(parts[2], rid, 1, agg, m, rho - 1, steps=8)
        assert market.round_info(rid)["challenge_iteration_plus_one"] == 0
    held, false_challenge = market.challenge(parts[2], rid, 1, agg, m, rho - 1)
    assert not held
    (closed,) = chain.events(false_challenge[-1], market.contract, "Closed")
    assert closed["args"]["reason"] == CLOSE["OpeningDisproved"]
    all_gas += [receipt["gasUsed"]] + gas + [r["gasUsed"] for r in false_challenge]
    assert max(all_gas) < TX_GAS_CAP, all_gas
    market.withdraw_many(parts + [grid], rid)
    assert all(market.balance(rid, a) == 0 for a in parts + [grid])
    print(f"anvil {chain.hardfork}, 2048-bit key: submit {[r['gasUsed'] for r in submits]} gas; challenge "
          f"{sum(gas)} gas in {len(gas)} tx of {chain.challenge_steps} steps {gas}; false opening "
          f"{sum(r['gasUsed'] for r in false_challenge)} gas")


def test_many_transactions_of_one_sender_are_all_mined_in_order_on_anvil(anvil):
    chain = connect(anvil.url)
    op, *rest = chain.accounts(41, offset=100)
    token = chain.deploy("SettlementToken", op.address, sender=op)
    chain.transact(token.functions.mint(op.address, 10**6), op)
    items = [(token.functions.transfer(a.address, 1), op) for a in rest for _ in range(3)]
    receipts = chain.transact_many(items)  # how fast is a benchmark's business (gridshare bench), not a test's
    assert all(r["status"] == 1 for r in receipts)
    assert all(token.functions.balanceOf(a.address).call() == 3 for a in rest)


def test_a_node_older_than_the_contracts_target_gets_one_line_and_nothing_written(tmp_path, capsys):
    from offchain.cli import main

    with start_anvil(hardfork="shanghai") as node:
        for argv in (["demo", "--chain", node.url, "--prosumers", "3", "--out", str(tmp_path / "run")],
                     ["deploy", "--chain", node.url, "--out", str(tmp_path / "d" / "deployment.json")]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and "shanghai rules" in err and "Prague" in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "d" / "deployment.json").exists()
