"""The same contracts on anvil nodes started by the test (JSON-RPC backend): anvil's default
hardfork (Osaka: EIP-7825's 2**24 gas cap per transaction and EIP-7883's MODEXP pricing) and
Prague. The key flows run on both, with a 2048-bit key: a round to settlement, a dispute (a
participant's masks do not cancel, openings, an accusation, a challenge of an opening, another
attempt) and a blame step; every transaction stays under the cap (a node refuses more; each first
call of its kind is sent with the cap as its gas limit) and the gas of each kind is printed. An
opening challenge runs in as many transactions as the cap needs (``chain.challenge_steps``
256-bit steps each at 2048 bits)."""
import secrets

import pytest
from eth_utils import keccak

from offchain.chain.backends import ContractRevert, anvil_binary, connect, start_anvil
from offchain.chain.market import Market, Reveal, RoundParams, Windows, commitment, deploy_rule, dispute_key
from offchain.mechanisms.tariff.market import settlement

from .helpers import (CLOSE, PHASE, TX_GAS_CAP, aggregate, connect_with_test_contracts, keygen, market_env,
                      open_round, past, past_challenge_window, reveal_all, reveals, submit, sums_of)

pytestmark = pytest.mark.anvil

T, B, W = 4, 40, 48
FLOOR, CAP = [1] * T, [10] * T
DEPOSIT, BOND = 10**20, 10**19
WINDOWS = Windows(registration=100, submission=100, coordinator=100, challenge=10)
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


def env_on(nodes, hardfork: str, offset: int, parts: int):
    """An Env on the node of ``hardfork``: its market, fresh accounts from ``offset`` (the
    coordinator, the grid account, an outsider and ``parts`` participants) holding tokens."""
    chain, op, market, tariff, probe = deploy(nodes, hardfork)
    accounts = chain.accounts(3 + parts, offset=offset)
    e = market_env(chain, market, [op] + accounts)
    e.parts, e.tariff, e.probe = accounts[3:], tariff, probe
    return e


def tariff_params(e, key, **change) -> RoundParams:
    return RoundParams(rule=e.tariff, slots=T, max_iterations=3, price_floor=FLOOR, price_cap=CAP,
                       grid_account=e.grid.address, n=key.n, slot_bits=B, slot_width=W, collateral=DEPOSIT,
                       bond=BOND, windows=WINDOWS, **change)


def test_default_hardfork_is_osaka_era_and_prague_is_not(nodes):
    default = connect(nodes("default").url)
    assert default.osaka_pricing and default.hardfork not in ("prague", "unknown"), default.hardfork
    assert default.challenge_steps == 3 and default.tx_gas_limit == TX_GAS_CAP
    prague = connect(nodes("prague").url)
    assert prague.hardfork == "prague" and not prague.osaka_pricing and prague.challenge_steps == 8


@pytest.mark.parametrize("hardfork", list(HARDFORKS))
def test_a_round_with_a_dispute_and_a_blame_step_fits_the_gas_cap(nodes, hardfork):
    """Four participants, a 2048-bit key. Attempt 0: participant 3 encrypts under made-up masks
    and opens with false check values; the coordinator disputes, everyone opens, a neighbour
    accuses it, an opening is challenged (and holds), the culprit is dropped. Attempt 1: the three
    others submit again, participant 2 encrypts its values plus one; the round concludes, the
    reveals do not add up, the blame step names participant 2 and the round settles."""
    e = env_on(nodes, hardfork, offset=60, parts=4)
    chain, market, key, parts = e.chain, e.market, keygen(2048), e.parts
    rid, crew = open_round(e, tariff_params(e, key), parts, key, deposit=DEPOSIT, prices=[5] * T)
    values = [[i - 2, 3 * i, -i, 1] for i in range(4)]
    gas: dict[str, list[int]] = {}

    def record(kind, receipts):
        receipts = receipts if isinstance(receipts, list) else [receipts]
        assert all(r["status"] == 1 for r in receipts)
        gas.setdefault(kind, []).extend(int(r["gasUsed"]) for r in receipts)
        return receipts

    subs = crew.submissions(0, values, hostile={3: dict(garble=True)})
    record("submit", submit(e, subs, rid))
    agg, receipts = aggregate(e, subs, rid, sender=e.coord)
    record("aggregate", receipts)
    m, rho = key.opening(agg)
    assert crew.layout.unpack(m)[1] != 0
    record("dispute", market.dispute(e.coord, rid, agg, m, rho))
    lie = crew.false_checks(subs[3])
    record("openCheck", market.open_check_many([crew.check_opening(s) for s in subs[:3]]
                                               + [crew.check_opening(subs[3], lie)]))
    q = next(q for q, (a, b) in enumerate(zip(lie, crew.checks(subs[3]))) if a != b)
    accuser = parts[crew.plan.active_neighbours(3, crew.active)[q]]
    receipt = market.accuse(accuser, rid, parts[3], crew.checks(subs[crew.index(accuser)]), lie,
                            crew.accusation(accuser, parts[3], 0))
    record("accuse", receipt)
    assert market.blamed(receipt) == {parts[3].address: (DEPOSIT, "FalseCheck")}
    held, receipts = market.challenge(parts[1], rid, dispute_key(0, 0, 1), subs[0].ct, subs[0].m, subs[0].rho)
    assert held and len(receipts) == -(-8 // chain.challenge_steps)
    record("challengeOpening", receipts)
    past(chain, market.round_info(rid)["deadline"])
    record("advance", market.advance(e.outsider, rid, []))
    crew.drop(parts[3])
    final = crew.submissions(0, values, attempt=1, hostile={2: dict(encrypted=[v + 1 for v in values[2]])})
    record("submit", submit(e, final, rid))
    agg, receipts = aggregate(e, final, rid, sender=e.coord)
    m, rho = key.opening(agg)
    sums, receipt = market.conclude(e.coord, rid, agg, m, rho)
    record("conclude", receipt)
    assert sums == [s + 1 for s in sums_of(final, T)]
    past_challenge_window(e, rid)
    record("reveal", reveal_all(e, final, rid))
    result = market.settle(e.outsider, rid, reveals(final) + [None])
    assert market.blame_started(result.receipt)
    record("settle (blame step begins)", result.receipt)
    record("openBlame", market.open_blame_many([crew.blame_opening(s) for s in final[:2]]))
    past_challenge_window(e, rid)
    result = market.settle(e.outsider, rid, reveals(final[:2]) + [None, None])
    record("settle", result.receipt)
    assert market.blamed(result.receipt) == {parts[2].address: (DEPOSIT, "SumCheated")}
    assert sum(result.payments.values()) == 0 and market.round_info(rid)["phase"] == "Settled"
    assert max(max(g) for g in gas.values()) < TX_GAS_CAP, gas
    print(f"anvil {chain.hardfork} (MODEXP {'EIP-7883' if chain.osaka_pricing else 'EIP-2565'}), 2048-bit key, "
          "4 participants, gas per transaction (max): "
          + ", ".join(f"{kind} {max(g):,}" + (f" x{len(g)}" if len(g) > 1 else "") for kind, g in gas.items()))


def test_rule_errors_are_decoded_over_rpc(deployed):
    chain, _, market, tariff, _ = deployed
    coord, grid = chain.accounts(2, offset=20)
    p = RoundParams(rule=tariff, slots=T, max_iterations=2, price_floor=FLOOR, price_cap=CAP,
                    grid_account=grid.address, n=keygen(1024).n, slot_bits=B, slot_width=W, terms=b"\x01",
                    windows=WINDOWS)
    with pytest.raises(ContractRevert) as err:  # raised by TariffRule.configure, passed on by the core
        market.create_round(coord, p)
    assert str(err.value) == "BadParameters(reason='terms')"


def test_round_without_key_and_a_closed_round_on_anvil(nodes):
    e = env_on(nodes, "default", offset=30, parts=3)
    chain, market, parts = e.chain, e.market, e.parts
    p = RoundParams(rule=e.probe, slots=1, max_iterations=2, price_floor=[1], price_cap=[9],
                    grid_account=e.grid.address, windows=Windows(registration=100, submission=100, coordinator=100,
                                                                 challenge=0))
    keyless, _ = open_round(e, p, parts, deposit=1000, prices=[3])
    closed, _ = open_round(e, p, parts, deposit=1000, prices=[3])
    salts = [secrets.token_bytes(32) for _ in parts]
    values = [[7 * i - 10] for i in range(len(parts))]
    market.submit_many([(a, keyless, 0, b"", commitment(keyless, 0, a.address, v, s))
                        for a, v, s in zip(parts, values, salts)])
    assert market.conclude(e.coord, keyless, b"", None, None)[0] == []
    revealed = [Reveal(v, s, keccak(b"")) for v, s in zip(values, salts)]
    market.reveal_many([(a, keyless, r) for a, r in zip(parts, revealed)])
    result = market.settle(e.outsider, keyless, revealed)
    assert result.payments == {**{a.address: v[0] for a, v in zip(parts, values)},
                               e.grid.address: -sum(v[0] for v in values)}
    receipt = market.close(e.coord, closed)
    changes = chain.events(receipt, market.contract, "PhaseChanged")
    assert [(e_["args"]["from"], e_["args"]["to"]) for e_ in changes] == [(PHASE["Iterating"], PHASE["Closed"])]
    market.withdraw_many(parts + [e.grid], closed)
    assert all(market.balance(closed, a) == 0 for a in parts + [e.grid])


@pytest.mark.parametrize("hardfork", list(HARDFORKS))
def test_a_tariff_round_settles_and_its_opening_challenges_fit_the_gas_cap(nodes, hardfork):
    """A 2048-bit round of three on each hardfork: it publishes, an honest opening challenged to
    its end is confirmed, the final round settles with the tariff; in a second round a false
    opening closes the round and costs the coordinator its bond. Every transaction stays under
    2**24 gas. Under EIP-7883 a whole check (~31M gas) takes three transactions of
    chain.challenge_steps = 3 steps; under Prague's pricing one of 8 steps."""
    e = env_on(nodes, hardfork, offset=40, parts=3)
    chain, market, key, parts = e.chain, e.market, keygen(2048), e.parts
    rid, crew = open_round(e, tariff_params(e, key), parts, key, deposit=DEPOSIT, prices=[5] * T)
    all_gas = []

    def iteration(k, rid, crew):
        subs = crew.submissions(k, [[k + i, -i, 2, 0] for i in range(3)])
        rs = submit(e, subs, rid)
        agg, rs2 = aggregate(e, subs, rid, sender=e.coord)
        all_gas.extend(r["gasUsed"] for r in rs + rs2)
        return subs, agg, rs

    _, agg, submits = iteration(0, rid, crew)
    m, rho = key.opening(agg)
    market.publish(e.coord, rid, agg, m, rho, [5] * T)
    held, challenge = market.challenge(parts[1], rid, 0, agg, m, rho)
    assert held
    gas = [r["gasUsed"] for r in challenge]
    assert len(gas) == -(-8 // chain.challenge_steps) and max(gas) < TX_GAS_CAP, gas
    final, agg, _ = iteration(1, rid, crew)
    m, rho = key.opening(agg)
    sums, _ = market.conclude(e.coord, rid, agg, m, rho)
    assert sums == sums_of(final, T)
    with pytest.raises(ContractRevert) as err:
        market.reveal_many([(parts[0], rid, final[0].reveal())])
    assert err.value.name == "ChallengeWindowOpen"
    past_challenge_window(e, rid)
    all_gas += [r["gasUsed"] for r in reveal_all(e, final, rid)]
    result = market.settle(e.outsider, rid, reveals(final))
    amounts, grid_amount = settlement([s.values for s in final], [5] * T, FLOOR, CAP)
    assert result.payments == {**{p.address: a for p, a in zip(parts, amounts)}, e.grid.address: grid_amount}

    rid, crew = open_round(e, tariff_params(e, key), parts, key, deposit=DEPOSIT, prices=[5] * T)
    _, agg, _ = iteration(0, rid, crew)
    m, rho = key.opening(agg)
    market.conclude(e.coord, rid, agg, m, rho - 1)  # a false opening
    if chain.osaka_pricing:  # Prague's 8 steps per transaction would need ~35M gas: out of gas at the cap
        with pytest.raises(ContractRevert):
            market.challenge(parts[2], rid, 0, agg, m, rho - 1, steps=8)
        assert market.round_info(rid)["challenge_key_plus_one"] == 0
    held, false_challenge = market.challenge(parts[2], rid, 0, agg, m, rho - 1)
    assert not held
    (closed,) = chain.events(false_challenge[-1], market.contract, "Closed")
    assert closed["args"]["reason"] == CLOSE["OpeningDisproved"]
    assert market.blamed(false_challenge) == {e.coord.address: (BOND, "CoordinatorFalseOpening")}
    all_gas += gas + [r["gasUsed"] for r in false_challenge]
    assert max(all_gas) < TX_GAS_CAP, all_gas
    market.withdraw_many(parts + [e.grid], rid)
    assert all(market.balance(rid, a) == 0 for a in parts + [e.grid])
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
