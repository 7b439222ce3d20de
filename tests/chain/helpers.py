"""Helpers of the contract tests: a chain that also knows the test-only contracts of
tests/chain/contracts, a one-call snapshot of a round's state, and the rejection check."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

from hexbytes import HexBytes

from offchain.chain import compiler
from offchain.chain.backends import Chain, ContractRevert, connect

TEST_CONTRACTS = Path(__file__).resolve().parent / "contracts"  # ProbeRule, ViewBatch


def connect_with_test_contracts(url: str | None = None) -> Chain:
    """A chain (default: embedded) whose artifacts include the test-only contracts (compiled once,
    cached; the compiler's extra sources are restored right away, so no other chain sees them)."""
    chain = connect(url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compiler, "EXTRA_SOURCES", [*compiler.EXTRA_SOURCES, TEST_CONTRACTS])
        assert {"ProbeRule", "ViewBatch"} <= set(chain.artifacts)
    return chain


class StateReader:
    """Reads many views in one eth_call (ViewBatch): raw return data by label."""

    def __init__(self, chain: Chain, sender: Any):
        self.contract = chain.deploy("ViewBatch", sender=sender)

    def read(self, calls: Sequence[tuple[str, Any]]) -> dict[str, bytes]:
        targets = [fn.address for _, fn in calls]
        data = [bytes(HexBytes(fn._encode_transaction_data())) for _, fn in calls]
        out = self.contract.functions.read(targets, data).call()
        return {label: bytes(r) for (label, _), r in zip(calls, out)}


def round_state(e: Any, rid: int) -> dict[str, bytes]:
    """Everything a rejected call could have changed, read in one call: the round count, the
    market's token holdings, round ``rid`` (summary, prices, sums, participants) and the member
    record and ledger balance of its participants and of ``e.watch`` (``e`` has ``market``,
    ``reader``, ``watch``). Any token move in or out of the market shows in its holdings."""
    f = e.market.contract.functions
    accounts = dict.fromkeys([a for a, _ in e.market.participants(rid)] + list(e.watch))
    calls = [("roundCount", f.roundCount()),
             ("market tokens", e.market.token.contract.functions.balanceOf(e.market.address))]
    calls += [(f"{v}({rid})", getattr(f, v)(rid)) for v in ("roundInfo", "prices", "finalSums", "participants")]
    for a in accounts:
        calls += [(f"member({a})", f.member(rid, a)), (f"balance({a})", f.balanceOf(rid, a))]
    return e.reader.read(calls)


def assert_rejected(e: Any, name: str, fn: Callable[[], Any], rid: int | None = None) -> ContractRevert:
    """``fn`` reverts with the custom error ``name`` and changes nothing that ``round_state`` sees
    of round ``rid`` (default: the module's main round ``e.rid``)."""
    rid = rid or e.rid
    before = round_state(e, rid)
    with pytest.raises(ContractRevert) as err:
        fn()
    assert err.value.name == name, str(err.value)
    after = round_state(e, rid)
    changed = [k for k, v in after.items() if before.get(k) != v]
    assert not changed, f"{err.value} changed {', '.join(changed)}"
    return err.value


def bad_parameters(e: Any, fn: Callable[[], Any], reason: str) -> None:
    err = assert_rejected(e, "BadParameters", fn)
    assert err.error_args == {"reason": reason}, str(err)


def events(e: Any, receipt: Any, name: str) -> list[dict]:
    """The ``name`` events of the market contract in ``receipt``, arguments only."""
    return [dict(ev["args"]) for ev in e.chain.events(receipt, e.market.contract, name)]
