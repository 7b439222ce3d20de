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
