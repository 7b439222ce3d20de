"""The framework carries a new mechanism: the test-only fixed-price market (tests/fixed_price/,
its own files plus the one registry line below) runs in plaintext, privately in process and on
chain, is audited and reported; its rounds nest (communities inside a parent round); a round
without a Paillier key runs commit-reveal only."""
from __future__ import annotations

import json

import pytest

from offchain import registry
from offchain.audit.command import run_audit
from offchain.chain.backends import connect
from offchain.framework import Contribution
from offchain.protocol.driver import run_round
from offchain.protocol.transport import ChainTransport, PlainTransport
from offchain.record import validate
from offchain.report import render
from offchain.runner import RunOptions, execute, prepare



@pytest.fixture(scope="module", autouse=True)
def fixed_price():
    registry.register("fixed-price", "tests.fixed_price")  # the registry line of a mechanism that lives elsewhere
    yield
    registry.unregister("fixed-price")  # the other test modules see the built-in mechanisms only

SCENARIO = """
mechanism = "fixed-price"
name = "fixed4"
seed = 1
[privacy]
key_bits = 1024
[market]
periods = 4
price = [0.5, 0.6, 0.7, 0.4]
[[prosumer]]
name = "A"
net_kwh = [1.5, -2.0, 0.25, 3.0]
[[prosumer]]
name = "B"
net_kwh = [-0.5, 1.0, -1.25, 0.0]
community = 1
[[prosumer]]
name = "C"
net_kwh = [2.0, 0.5, 0.5, -1.0]
[[prosumer]]
name = "D"
net_kwh = [0.0, -0.5, 1.0, 2.0]
community = 1
[[prosumer]]
name = "E"
net_kwh = [1.0, 1.0, -0.5, 0.5]
[[prosumer]]
name = "F"
net_kwh = [-1.0, 0.0, 0.5, 1.0]
community = 1
[[prosumer]]
name = "G"
net_kwh = [0.5, 0.5, 0.5, 0.5]
community = 2
[[prosumer]]
name = "H"
net_kwh = [-0.25, -0.25, 1.0, 0.0]
community = 2
[[prosumer]]
name = "I"
net_kwh = [2.0, -1.0, 0.0, -0.5]
community = 2
"""
# tokens: sum_t price_t * net_t
EXPECTED = {"A": 0.925, "B": -0.525, "C": 1.25, "D": 1.2, "E": 0.95, "F": 0.25, "G": 1.1, "H": 0.425, "I": 0.2}


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fixed") / "fixed4.toml"
    path.write_text(SCENARIO)
    return path


@pytest.mark.parametrize("mode", ["plaintext", "private", "chain"])
def test_the_new_mechanism_runs_in_every_mode_with_one_record_schema(scenario_file, tmp_path, mode):
    p = prepare(scenario_file, RunOptions(mode=mode))
    record = execute(p).to_dict()
    assert validate(record) == [] and record["mechanism"] == "fixed-price"
    paid = {q["name"]: q["payment"]["tokens"] for q in record["parties"]}
    assert paid == pytest.approx({**EXPECTED, "coordinator": 0.0, "grid": -sum(EXPECTED.values())})
    assert {q["name"]: q["bill"].get("energy") for q in record["parties"] if q["role"] == "prosumer"} == \
        pytest.approx(EXPECTED)
    render(tmp_path / "out", record, p.mechanism.figures(record))
    assert "Net energy per prosumer" in (tmp_path / "out" / "report.html").read_text()
    if mode == "chain":
        findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
        assert findings and all(f.ok for f in findings), [f for f in findings if not f.ok]
        assert {"rule contract", "stop rule", "payments", "bills"} <= {f.check for f in findings}


class Community:
    """A community operator: a participant of the parent round whose contribution is the total of
    the child round it coordinates (its members' net energy, which it sees only summed)."""

    def __init__(self, name: str, members_round, parent_ref: dict, offset: int) -> None:
        self.name, self.members_round, self.parent_ref, self.offset = name, members_round, parent_ref, offset
        self.outcome = None

    def plan(self, k, prices):
        return None

    def contribute(self, k, prices, solved) -> Contribution:
        parent = self.parent_ref["transport"]
        self.members_round.coordinator.name = self.name  # the child's coordinator is this participant of the parent
        transport = ChainTransport(parent.chain, key_bits=1024, market=parent.market, rules=parent.rules,
                                   account_offset=self.offset)
        self.outcome = run_round(self.members_round, transport, parent=parent)
        return Contribution(self.members_round.coordinator.total)

    def observe(self, k, answer, received) -> None:
        pass


def test_rounds_nest_communities_inside_a_parent_round(scenario_file):
    mechanism, scenario = registry.load_scenario(scenario_file)
    chain = connect(None)
    ref: dict = {}
    communities = [Community(f"community-{c}", mechanism.setup(scenario, [p for p in scenario.prosumers if p.community == c]),
                             ref, offset=20 + 10 * c) for c in (0, 1, 2)]
    parent_setup = mechanism.setup(scenario, members=[])
    parent_setup.participants = communities
    # the communities run their whole rounds inside the parent's submission window
    parent = ref["transport"] = ChainTransport(chain, key_bits=1024, windows={"submission": 10_000})
    out = run_round(parent_setup, parent)
    assert out.converged and out.settlement is not None
    children = [c.outcome for c in communities]
    assert all(o.settled for o in children)
    market = parent.market
    for o in children:
        info = market.round_info(o.transport.round_id)
        assert info["parent_round_id"] == parent.round_id and info["phase"] == "Settled"
        assert info["coordinator"] == parent.accounts[o.setup.coordinator.name].address
    # the parent's sum is the sum of the communities' totals, which is every prosumer's net
    totals = [sum(col) for col in zip(*(c.members_round.coordinator.total for c in communities))]
    assert out.iterations[0].sums == totals
    findings, _ = run_audit(chain, market.address)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert len({f.round for f in findings} - {None}) == 4


def test_a_round_without_a_key_runs_commit_reveal_only(scenario_file):
    mechanism, scenario = registry.load_scenario(scenario_file)
    setup = mechanism.setup(scenario)
    setup.encrypted = False
    chain = connect(None)
    transport = ChainTransport(chain)
    out = run_round(setup, transport)
    assert out.iterations[0].sums == [] and out.settled
    assert transport.market.round_info(transport.round_id)["key_data"] == "0x" + "0" * 40
    kinds = {t.kind for t in transport.transactions}
    assert "aggregate" not in kinds and {"submit", "conclude", "settle"} <= kinds
    assert out.settlement.amounts == run_round(mechanism.setup(scenario), PlainTransport()).settlement.amounts
    keyless = mechanism.setup(scenario)
    keyless.encrypted = False
    assert run_round(keyless, PlainTransport()).iterations[0].sums == []  # no sums in any mode
    findings, _ = run_audit(chain, transport.market.address)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]


def test_an_unknown_mechanism_is_named(tmp_path):
    from offchain.errors import ScenarioError

    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.replace('mechanism = "fixed-price"', 'mechanism = "nope"'))
    with pytest.raises(ScenarioError, match="mechanism: unknown mechanism 'nope'"):
        registry.load_scenario(bad)
    bad.write_text(SCENARIO.replace('mechanism = "fixed-price"', ""))
    with pytest.raises(ScenarioError, match="mechanism: missing"):
        registry.load_scenario(bad)
    assert json.loads(json.dumps(registry.names())) == sorted(registry.names())


def test_mechanism_math_imports_no_chain_and_no_crypto():
    """Every mechanism's pure layers (its scenario, its math, its settlement mirror) take plain data
    and return plain data: the protocol layer moves their integers."""
    import ast

    from .conftest import ROOT

    forbidden = ("offchain.chain", "offchain.privacy", "offchain.protocol", "web3", "eth_", "phe", "gmpy2",
                 "cryptography", "Crypto", "coincurve")
    pure = [p for d in (ROOT / "offchain" / "mechanisms").iterdir() if d.is_dir()
            for p in d.glob("*.py") if p.stem in ("scenario", "market", "settlement")]
    assert len(pure) >= 5
    for path in pure:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [("offchain." if node.level else "") + (node.module or "").lstrip(".")]
                if isinstance(node, ast.ImportFrom) and node.level:
                    names = ["offchain." + (node.module or "")]
                assert not any(n.startswith(forbidden) or n.replace("offchain.", "").startswith(("chain", "privacy", "protocol"))
                               for n in names), f"{path.relative_to(ROOT)} imports {names}"


def test_a_round_without_payees_is_balanced_by_its_coordinator(scenario_file):
    """Payee roles come from the mechanism: a round with none runs on chain, its coordinator's
    account balancing the market (the round contract's gridAccount)."""
    from offchain.framework import MirrorSettlement

    mechanism, scenario = registry.load_scenario(scenario_file)

    def without_payees():
        setup = mechanism.setup(scenario)
        mirror = setup.settlement

        def settlement(values, prices, addresses, standing):
            m = mirror(values, prices, addresses, standing)
            return MirrorSettlement(m.amounts, {setup.coordinator_role: m.payees["grid"]}, m.bills)
        setup.payees, setup.settlement, setup.balancing = [], settlement, "coordinator"
        return setup

    assert without_payees().balancing_role == "coordinator"
    chain = connect(None)
    transport = ChainTransport(chain, key_bits=1024)
    out = run_round(without_payees(), transport)
    assert out.settled and "grid" not in transport.addresses
    plain = run_round(without_payees(), PlainTransport())
    assert out.settlement.amounts == plain.settlement.amounts
    assert out.settlement.payees == plain.settlement.payees == {"coordinator": -sum(plain.settlement.amounts)}
    assert transport.market.round_info(transport.round_id)["grid_account"] == transport.addresses["coordinator"]


def test_a_coordinators_own_solves_run_on_the_executor(scenario_file):
    """A coordinator with a plan(k, sums) hook has its solves fanned out by the round's executor,
    as the participants' are, and answers with their results."""
    from offchain.framework import Solve
    from offchain.protocol.executors import SerialExecutor

    class Counting(SerialExecutor):
        def __init__(self):
            self.solves = []

        def run(self, solves):
            self.solves.extend(s for s in solves if s is not None)
            return super().run(solves)

    class Doubler:
        def twice(self, values):
            return [2 * v for v in values]

    mechanism, scenario = registry.load_scenario(scenario_file)
    setup = mechanism.setup(scenario)
    inner = setup.coordinator

    class Planning:
        name = inner.name
        seen = None

        def start(self):
            return inner.start()

        def plan(self, k, sums):
            return [Solve(Doubler(), "twice", (sums,))]

        def answer(self, k, sums, solved):
            Planning.seen = solved[0]
            return inner.answer(k, sums)

    setup.coordinator = Planning()
    executor = Counting()
    out = run_round(setup, PlainTransport(), executor=executor)
    assert out.settled and Planning.seen == [2 * s for s in out.iterations[0].sums]
    assert any(s.method == "twice" for s in executor.solves)


def test_a_keyless_bidder_that_keeps_its_reveal_forfeits_and_is_settled_as_absent(scenario_file, monkeypatch):
    """Sealed bids (a round without a key): every bidder reveals its own commitment; one that
    committed and keeps its reveal forfeits its deposit (shared by the others) and is settled as
    absent, and the round settles without a blame step (there is nothing to open)."""
    from offchain.chain.market import Market

    reveal_many = Market.reveal_many
    monkeypatch.setattr(Market, "reveal_many", lambda self, items: reveal_many(self, items[1:]))  # the first keeps it
    mechanism, scenario = registry.load_scenario(scenario_file)
    setup = mechanism.setup(scenario)
    setup.encrypted = False
    chain = connect(None)
    transport = ChainTransport(chain)
    out = run_round(setup, transport)
    first = setup.participants[0].name
    assert out.settled and transport.blamed[first][1] == "WithheldReveal"
    assert out.settlement.amounts[0] == 0  # settled as absent: it bought and sold nothing
    kinds = [t.kind for t in transport.transactions]
    assert "open blame" not in kinds and kinds.count("reveal") == len(setup.participants) - 1
    assert [t.party for t in transport.transactions if t.kind == "register"] == [p.name for p in setup.participants]
    findings, _ = run_audit(chain, transport.market.address)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert any(f.culprit for f in findings)


@pytest.mark.parametrize("mode", ["plaintext", "private", "chain"])
def test_a_nested_mechanism_runs_its_child_rounds_through_gridshare_run(scenario_file, tmp_path, mode):
    """Nested rounds, first class: the parent round's operators (one per community) each run their
    community's child round, in every mode, through the one runner; the record holds the tree of
    rounds with each child's payments; on chain each child names its parent and the audit passes."""
    nested = tmp_path / "nested.toml"
    nested.write_text(scenario_file.read_text().replace("periods = 4\n", "periods = 4\nnested = true\n"))
    p = prepare(nested, RunOptions(mode=mode, key_bits=1024))
    record = execute(p).to_dict()
    assert validate(record) == []
    top, *children = [r for r in record["rounds"] if r["transport"] == mode]
    assert top["parent"] is None and [c["parent"] for c in children] == [top["label"]] * 2
    assert [c["label"] for c in children] == [f"{top['label']} / community-{c}, iteration 0" for c in (1, 2)]
    tokens = lambda units: int(units) / 1e18  # noqa: E731
    members = {"community-1": "BDF", "community-2": "GHI"}
    for child, (operator, names) in zip(children, members.items()):
        assert child["settled"]
        paid = {n: tokens(v) for n, v in child["payments"].items()}
        assert paid == pytest.approx({**{n: EXPECTED[n] for n in names}, "coordinator": -sum(EXPECTED[n] for n in names)})
        assert tokens(top["payments"][operator]) == pytest.approx(sum(EXPECTED[n] for n in names))
    assert tokens(top["payments"]["grid"]) == pytest.approx(-sum(EXPECTED.values()))
    if mode == "chain":
        ids = {r["round_id"]: r["parent_round_id"] for r in record["chain"]["rounds"]}
        parent_id = record["chain"]["rounds"][0]["round_id"]
        assert sorted(ids.values()) == [0, parent_id, parent_id]
        findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
        assert all(f.ok for f in findings), [f for f in findings if not f.ok]
        assert {f.round for f in findings} >= set(ids)
        links = [f for f in findings if f.check in ("child round", "child result")]
        assert len(links) == 4 and all(f.ok and not f.note for f in links), links
    render(tmp_path / "out", record, p.mechanism.figures(record))


def test_the_audit_fails_an_operator_that_reveals_other_than_its_community_concluded(scenario_file, tmp_path,
                                                                                     monkeypatch):
    from tests.fixed_price.market import CommunityOperator

    honest = CommunityOperator.contribute
    monkeypatch.setattr(CommunityOperator, "contribute",
                        lambda self, k, prices, outcome: Contribution([v + 1 for v in honest(self, k, prices, outcome).sums]))
    nested = tmp_path / "nested.toml"
    nested.write_text(scenario_file.read_text().replace("periods = 4\n", "periods = 4\nnested = true\n"))
    p = prepare(nested, RunOptions(mode="chain", key_bits=1024))
    record = execute(p).to_dict()
    findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
    failed = [f for f in findings if not f.ok]
    assert [f.check for f in failed] == ["child result", "child result"], failed


def test_a_nested_run_that_dies_inside_a_child_round_is_resumed(scenario_file, tmp_path, monkeypatch):
    """`gridshare resume` covers child rounds: a run on a node that dies while a community's child
    round registers is finished from the chain and its key store, nothing sent twice."""
    from offchain.chain.backends import start_anvil
    from offchain.chain.market import Market
    from offchain.cli import main
    from offchain.runner import release_run_folder

    from .conftest import node_available

    if not node_available():
        pytest.skip("anvil not installed (npm ci)")
    nested = tmp_path / "nested.toml"
    nested.write_text(scenario_file.read_text().replace("periods = 4\n", "periods = 4\nnested = true\n"))
    out = tmp_path / "run"
    register_many = Market.register_many
    seen = []

    def dies(self, items):
        seen.extend(r for _, r, *_ in items)
        if len([r for r in seen if r == 3]) == 2:  # the second registration in the second community's round
            raise RuntimeError("the run's process died")
        return register_many(self, items)

    with start_anvil() as node:
        monkeypatch.setattr(Market, "register_many", dies)
        assert main(["run", str(nested), "--chain", node.url, "--key-bits", "1024", "--out", str(out)]) == 1
        release_run_folder(out)  # the lock of the "dead" run (this process lives on)
        monkeypatch.setattr(Market, "register_many", register_many)
        assert main(["resume", str(out)]) == 0
        record = json.loads((out / "run.json").read_text())
        history = [r for r in record["chain"]["rounds"]]
        assert [r["parent_round_id"] for r in history] == [0, 1, 1]
        assert all(r["settled"] for r in record["rounds"] if r["transport"] == "chain")
        chain = connect(node.url)
        market = Market(chain, record["chain"]["contracts"]["market"])
        created = market.contract.events.RoundCreated.get_logs(from_block=0)
        assert len(created) == 3  # no round created twice
        findings, _ = run_audit(chain, market.address)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]


@pytest.mark.parametrize("mode", ["plaintext", "private", "chain"])
def test_sealed_bids_run_through_gridshare_run_in_every_mode(scenario_file, tmp_path, mode):
    """A keyless round (sealed bids) through the one runner: no sums in any mode, the same
    payments, audited on chain (no key, no aggregate) and reported."""
    sealed = tmp_path / "sealed.toml"
    sealed.write_text(scenario_file.read_text().replace("periods = 4\n", "periods = 4\nsealed = true\n"))
    p = prepare(sealed, RunOptions(mode=mode))
    record = execute(p).to_dict()
    assert validate(record) == [] and record["iterations"][0]["sums"] == []
    paid = {q["name"]: q["payment"]["tokens"] for q in record["parties"]}
    assert paid == pytest.approx({**EXPECTED, "coordinator": 0.0, "grid": -sum(EXPECTED.values())})
    if mode == "chain":
        assert "aggregate" not in {t["kind"] for t in record["transactions"]}
        assert {t["kind"] for t in record["transactions"] if t["kind"] == "register"} == {"register"}
        findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
        assert findings and all(f.ok for f in findings), [f for f in findings if not f.ok]
    render(tmp_path / "out", record, p.mechanism.figures(record))
    assert (tmp_path / "out" / "report.html").exists()
