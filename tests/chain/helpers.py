"""Helpers of the contract tests: a chain that also knows the test-only contracts of
tests/chain/contracts, a one-call snapshot of a round's state, the rejection check, and the
Paillier, packing and submission shorthands the contract test modules share."""
from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest
from eth_utils import keccak
from hexbytes import HexBytes

from offchain.chain import compiler
from offchain.chain.backends import Chain, ContractRevert, connect
from offchain.chain.market import PHASES, Reveal, commitment
from offchain.privacy.packing import SlotLayout
from offchain.privacy.paillier import PrivateKey, PublicKey, generate_keypair

TEST_CONTRACTS = Path(__file__).resolve().parent / "contracts"  # ProbeRule, ViewBatch
PHASE = {name: i for i, name in enumerate(PHASES)}
STANDING = {"Final": 0, "DroppedRevealed": 1, "DroppedSilent": 2}
CLOSE = {"ByCoordinator": 0, "CoordinatorLate": 1, "TooFewParticipants": 2, "OpeningDisproved": 3}
TX_GAS_CAP = 2**24  # EIP-7825
EIP170_LIMIT = 24_576  # runtime code
EIP3860_LIMIT = 49_152  # initcode
ZERO = "0x" + "00" * 20
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


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
    market's token holdings, round ``rid`` (summary with its step, deadline and challenge state,
    the coordinator's deadline, prices, sums, participants) and the member record and ledger
    balance of its participants and of ``e.watch`` (``e`` has ``market``, ``reader``, ``watch``).
    Any token move in or out of the market shows in its holdings."""
    f = e.market.contract.functions
    accounts = dict.fromkeys([a for a, _ in e.market.participants(rid)] + list(e.watch))
    calls = [("roundCount", f.roundCount()),
             ("market tokens", e.market.token.contract.functions.balanceOf(e.market.address))]
    calls += [(f"{v}({rid})", getattr(f, v)(rid))
              for v in ("roundInfo", "coordinatorDeadline", "prices", "finalSums", "participants")]
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


def past(chain: Chain, block: int) -> None:
    """Mines until ``block`` is over (the next transaction lands after it)."""
    chain.mine_until(block)


def mask_key(i: int) -> bytes:
    """A valid, distinct X25519 public key per index (0 <= i < 255): 0x0101.., 0x0202.., ..."""
    return bytes([i + 1]) * 32


# ----------------------------------------------------------------------------- Paillier
@dataclass
class Key:
    """Test shorthand over offchain.privacy's key pair."""
    public: PublicKey
    private: PrivateKey

    n = property(lambda self: self.public.n)
    nsq = property(lambda self: self.public.n_sq)
    nbytes = property(lambda self: self.public.nbytes)

    def enc(self, m: int) -> int:
        return self.public.encrypt(m)

    def dec(self, c: int) -> int:
        return self.private.decrypt(c)

    def opening(self, c: int | bytes) -> tuple[int, int]:
        return self.private.opening(int.from_bytes(c, "big") if isinstance(c, (bytes, bytearray)) else c)

    def ct(self, c: int) -> bytes:
        return self.public.to_bytes(c)


@functools.lru_cache(maxsize=None)
def keygen(bits: int, tag: int = 0) -> Key:
    """A key pair of ``bits`` bits (cached per process: ``tag`` asks for another one)."""
    return Key(*generate_keypair(bits))


def pack(values: Sequence[int], masks: Sequence[int] | None = None, bits: int = 40, width: int = 48) -> int:
    """The packed plaintext of one participant's slot values (one participant: the full B-bit range)."""
    return SlotLayout(len(values), bits, width, participants=1).pack(values, masks)


def py_decode(m: int, periods: int, bits: int, width: int) -> list[int]:
    return SlotLayout(periods, bits, width, participants=1).unpack_sums(m)


def submission(key: Key | None, rid: int, iteration: int, who: Any, values: Sequence[int],
               encrypted: Sequence[int] | None = None, masks: Sequence[int] | None = None,
               bits: int = 40, width: int = 48) -> dict:
    """One participant's submission: ``values`` committed, ``encrypted`` (default: the values)
    packed and encrypted under ``key`` (None: a round without a key, no ciphertext)."""
    salt = secrets.token_bytes(32)
    shown = list(encrypted if encrypted is not None else values)
    ct = b"" if key is None else key.ct(key.enc(pack(shown, masks, bits, width)))
    return dict(p=who, values=list(values), salt=salt, ct=ct, cm=commitment(rid, iteration, who.address, values, salt))


def reveal(s: dict) -> Reveal:
    return Reveal(s["values"], s["salt"], keccak(s["ct"]))


def reveals(subs: Sequence[dict]) -> list[Reveal]:
    return [reveal(s) for s in subs]
