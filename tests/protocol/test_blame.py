"""A participant encrypts other values than it commits to (a valid encryption of a wrong value,
which no on-chain check of a submission can see): at settlement the revealed sums differ from
the decrypted ones, the blame step begins, every honest participant opens its final ciphertext
and proves its masks of that iteration, the cheat cannot, and the round settles everyone else
with the cheat's deposit slashed and shared among them; the audit names it."""
from __future__ import annotations

import pytest

from offchain.audit.command import run_audit
from offchain.runner import RunOptions, execute, prepare

from ..conftest import ROOT, node_available

TARIFF = ROOT / "scenarios" / "community10.toml"


@pytest.mark.skipif(not node_available(), reason="anvil (npm ci) not installed")
def test_a_cheat_is_found_slashed_and_everyone_else_settled():
    from offchain.chain.backends import start_anvil

    with start_anvil(accounts=4) as node:
        p = prepare(TARIFF, RunOptions(mode="chain", key_bits=2048, chain_url=node.url, settle_unconverged=True,
                                       cheat=1))
        record = execute(p).to_dict()
        main = [r for r in record["rounds"] if r["transport"] == "chain"][-1]
        names = [q["name"] for q in record["parties"] if q["role"] == "prosumer"]
        assert main["settled"] and main["matches_mirror"], main
        (cheat, slashed), = main["blamed"].items()
        assert cheat in names and int(slashed) > 0
        kinds = [t["kind"] for t in record["transactions"]]
        assert kinds.count("open blame") == len(names) - 1 and kinds.count("settle") == 2
        findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
    failed = [f for f in findings if not f.ok]
    addresses = {q["name"]: q["address"] for q in record["parties"]}
    assert failed and all(addresses[cheat] in f.detail for f in failed), "\n".join(f"{f.check}: {f.detail}" for f in failed)


def test_a_false_blame_opening_is_rejected_and_changes_nothing(monkeypatch):
    """On the embedded chain (Prague rules): an opening with a false mask proof, or the cheat's
    own (its plaintext less its masks is not its reveal), reverts with BlameOpeningInvalid; the
    honest openings then clear everyone else as before."""
    from offchain.chain.backends import ContractRevert
    from offchain.protocol.transport import ChainTransport

    honest_blame = ChainTransport._blame
    tried = {}

    def hostile_first(self, reveals):
        k = self.market.round_info(self.round_id)["iteration"]
        h = next(i for i, q in enumerate(self.setup.participants) if q.name not in self.cheats)
        name = self.setup.participants[h].name
        opened, masks = self.members[h].blame_opening(self.sealed[h], k, self.points[k], self.layout)
        before = self.market.member(self.round_id, self.accounts[name])
        for what, bad in (("a false proof", masks[:-1] + bytes([masks[-1] ^ 1])), ("short masks", masks[:-258])):
            with pytest.raises(ContractRevert) as err:
                self.market.open_blame_many([(self.accounts[name], self.round_id, self.sealed[h].reveal,
                                              self.sealed[h].salt, opened, bad)])
            tried[what] = err.value.name
        cheat_name = self.cheats[0]
        nbytes = self.coordinator_keys.public.nbytes
        s = self.sealed[[q.name for q in self.setup.participants].index(cheat_name)]
        opened3 = s.ciphertext + s.plaintext.to_bytes(nbytes, "big") + s.rho.to_bytes(nbytes, "big")
        masks3 = masks  # the honest participant's masks: not the cheat's keys
        with pytest.raises(ContractRevert) as err:
            self.market.open_blame_many([(self.accounts[cheat_name], self.round_id, s.reveal, s.salt, opened3, masks3)])
        tried["another's masks"] = err.value.name
        assert self.market.member(self.round_id, self.accounts[name]) == before  # nothing changed
        return honest_blame(self, reveals)

    monkeypatch.setattr(ChainTransport, "_blame", hostile_first)
    p = prepare(TARIFF, RunOptions(mode="chain", key_bits=2048, settle_unconverged=True, cheat=1))
    record = execute(p).to_dict()
    main = [r for r in record["rounds"] if r["transport"] == "chain"][-1]
    assert tried == {"a false proof": "BlameOpeningInvalid", "short masks": "MasksLength",
                     "another's masks": "BlameOpeningInvalid"}
    assert main["settled"] and main["matches_mirror"] and len(main["blamed"]) == 1


@pytest.mark.skipif(not node_available(), reason="anvil (npm ci) not installed")
def test_wrong_corrections_blame_the_coordinator_and_slash_nobody(monkeypatch):
    """The coordinator publishes corrections off by one: every participant clears itself, so the
    settlement names the coordinator, slashes nobody and pays everyone as in an honest round."""
    from offchain.chain.backends import start_anvil
    from offchain.privacy import secagg

    honest = secagg.Plan.corrections
    monkeypatch.setattr(secagg.Plan, "corrections", lambda self, *a, **kw: [v + 1 for v in honest(self, *a, **kw)])
    with start_anvil(accounts=4) as node:
        p = prepare(TARIFF, RunOptions(mode="chain", key_bits=2048, chain_url=node.url, settle_unconverged=True))
        record = execute(p).to_dict()
        monkeypatch.setattr(secagg.Plan, "corrections", honest)  # the auditor recomputes them honestly
        findings, _ = run_audit(p.chain, record["chain"]["contracts"]["market"])
    main = [r for r in record["rounds"] if r["transport"] == "chain"][-1]
    assert main["settled"] and main["matches_mirror"] and main["blamed"] == {"coordinator": "0"}
    failed = {f.check for f in findings if not f.ok}
    assert failed == {"mask recovery", "blame"}, failed


def test_nobody_clearing_itself_closes_the_round_and_returns_every_deposit(monkeypatch):
    """Every participant cheats (none can open consistently): the round closes, nobody is
    slashed, and the run says so and exits non-zero."""
    from offchain.errors import ProtocolViolation
    from offchain.protocol.keys import MemberKeys

    from offchain.protocol.transport import ChainTransport

    monkeypatch.setattr(MemberKeys, "blame_opening", lambda self, *a: None)
    seen, blame = [], ChainTransport._blame
    monkeypatch.setattr(ChainTransport, "_blame", lambda self, reveals: seen.append(self.market) or blame(self, reveals))
    p = prepare(TARIFF, RunOptions(mode="chain", key_bits=2048, settle_unconverged=True, cheat=1))
    with pytest.raises(ProtocolViolation, match="no participant opened"):
        execute(p)
    market = seen[0]
    assert market.round_info(1)["phase"] == "Closed"
    closed = market.contract.events.Closed().get_logs(from_block=0)
    assert [e["args"]["reason"] for e in closed] == [4]  # BlameUnresolved
