"""Helpers of the contract tests: a chain that also knows the test-only contracts of
tests/chain/contracts, a deployed market per test module, a one-call snapshot of a round's state
and the rejection check, and the participants of a round as the client keeps them (``Crew``: real
Paillier encryptions, real pairwise masks with the check slot, real dispute and blame openings),
with the shorthands that drive a round through its steps."""
from __future__ import annotations

import copy
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
from offchain.chain.market import (CLOSE_REASONS, DROP_REASONS, PHASES, STEPS, Market, Reveal, RoundParams, commitment,
                                   deploy_rule)
from offchain.privacy import secagg
from offchain.privacy.packing import SlotLayout
from offchain.privacy.paillier import PrivateKey, PublicKey, generate_keypair

TEST_CONTRACTS = Path(__file__).resolve().parent / "contracts"  # ProbeRule, ViewBatch
PHASE = {name: i for i, name in enumerate(PHASES)}
STEP = {name: i for i, name in enumerate(STEPS)}
CLOSE = {name: i for i, name in enumerate(CLOSE_REASONS)}
DROP = {name: i for i, name in enumerate(DROP_REASONS)}
STANDING = {"Final": 0, "DroppedRevealed": 1, "DroppedSilent": 2}
TX_GAS_CAP = 2**24  # EIP-7825
EIP170_LIMIT = 24_576  # runtime code
EIP3860_LIMIT = 49_152  # initcode
ZERO = "0x" + "00" * 20
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64_MAX = 2**64 - 1
TOKENS = 10**30  # minted to every account of a test module


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


class Env:
    """A test module's deployed market (attributes set by :func:`deploy_env` and the module)."""


def deploy_env(parts: int, more: int = 0, url: str | None = None) -> Env:
    """A market with TariffRule and ProbeRule, the operator, coordinator, grid account, an
    outsider, ``parts`` + ``more`` other accounts, each holding tokens it has approved the market
    to take (so that :func:`fund` deposits with one transaction each)."""
    chain = connect_with_test_contracts(url)
    accts = chain.accounts(4 + parts + more)
    market = Market.deploy(chain, accts[0])
    e = market_env(chain, market, accts)
    e.parts, e.more = accts[4:4 + parts], accts[4 + parts:]
    e.tariff = deploy_rule(e.chain, "TariffRule", e.op)
    e.probe = deploy_rule(e.chain, "ProbeRule", e.op)
    e.reader = StateReader(e.chain, e.op)
    e.watch = [e.coord.address, e.grid.address, e.outsider.address]  # besides each round's participants
    return e


def market_env(chain: Chain, market: Market, accounts: Sequence[Any]) -> Env:
    """An Env of a deployed market: its operator (the token's owner), the coordinator, the grid
    account and an outsider are the first four ``accounts``; every account but the operator gets
    tokens and approves the market to take them."""
    e = Env()
    e.chain, e.market = chain, market
    e.op, e.coord, e.grid, e.outsider = accounts[:4]
    token = market.token.contract.functions
    market.token.mint_many(e.op, [(a, TOKENS) for a in accounts[1:]])
    chain.transact_many([(token.approve(market.address, 2**256 - 1), a) for a in accounts[1:]])
    return e


def round_state(e: Any, rid: int) -> dict[str, bytes]:
    """Everything a rejected call could have changed, read in one call: the round count, the
    market's token holdings, round ``rid`` (summary with its step, attempt, deadline, challenge and
    blame state, the coordinator's deadline, prices, sums, participants) and the member record and
    ledger balance of its participants and of ``e.watch`` (``e`` has ``market``, ``reader``,
    ``watch``). Any token move in or out of the market shows in its holdings."""
    f = e.market.contract.functions
    accounts = dict.fromkeys(e.market.participants(rid) + list(e.watch))
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
    """The ``name`` events of the market contract in ``receipt(s)``, arguments only."""
    receipts = receipt if isinstance(receipt, list) else [receipt]
    logs = [ev["args"] for r in receipts for ev in e.chain.events(r, e.market.contract, name)]
    return [{k: args[k] for k in args} for args in logs]  # (not dict(args): "keys" and "items" are argument names)


def call_input(e: Any, tx_hash: Any) -> tuple[str, dict]:
    """The function and arguments of a market transaction, as anyone reads them from the chain."""
    fn, args = e.market.contract.decode_function_input(e.chain.w3.eth.get_transaction(tx_hash)["input"])
    return fn.fn_name, dict(args)


def compensated(e: Any, receipts: Any) -> dict[str, int]:
    return {ev["account"]: ev["amount"] for ev in events(e, receipts, "Compensated")}


def past(chain: Chain, block: int) -> None:
    """Mines until ``block`` is over (the next transaction lands after it)."""
    chain.mine_until(block)


def fund(e: Any, rid: int, accounts: Sequence[Any], amount: int) -> list[Any]:
    """Deposits ``amount`` of each account on round ``rid``'s ledger (the market is approved)."""
    return e.chain.transact_many([(e.market.contract.functions.deposit(rid, amount), a) for a in accounts])


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

    def encrypt(self, m: int) -> tuple[int, int]:
        """An encryption of ``m`` and its randomness rho (its opening)."""
        rho, rn = self.public.random_r()
        return self.public.encrypt(m, rn), rho

    def dec(self, c: int) -> int:
        return self.private.decrypt(c)

    def opening(self, c: int | bytes) -> tuple[int, int]:
        return self.private.opening(int.from_bytes(c, "big") if isinstance(c, (bytes, bytearray)) else c)

    def ct(self, c: int) -> bytes:
        return self.public.to_bytes(c)

    def word(self, v: int) -> bytes:
        """A plaintext or an opening as the contract takes it (len(n) bytes)."""
        return int(v).to_bytes(self.nbytes, "big")


@functools.lru_cache(maxsize=None)
def keygen(bits: int, tag: int = 0) -> Key:
    """A key pair of ``bits`` bits (cached per process: ``tag`` asks for another one)."""
    return Key(*generate_keypair(bits))


def py_decode(m: int, periods: int, bits: int, width: int) -> list[int]:
    return SlotLayout(periods, bits, width, participants=1).unpack_sums(m)


# ----------------------------------------------------------------------------- participants
@dataclass
class Sub:
    """One submission as its sender keeps it (offchain/protocol/keys.py Sealed)."""
    p: Any  # the sender's account
    values: list[int]  # what it commits to (its reveal)
    salt: bytes
    ct: bytes  # the ciphertext (empty without a key)
    cm: bytes  # the commitment
    k: int = 0
    attempt: int = 0
    point: bytes = b""  # its mask point of iteration k + 1
    pm: bytes = b""  # pair messages
    m: int | None = None  # what the ciphertext encrypts (masked, packed) and its randomness
    rho: int | None = None

    def reveal(self) -> Reveal:
        return Reveal(self.values, self.salt, keccak(self.ct))


def reveals(subs: Sequence[Sub | None]) -> list[Reveal | None]:
    return [s.reveal() if s is not None else None for s in subs]


def commit(rid: int, k: int, p: Any, values: Sequence[int], ct: bytes = b"", **extra: Any) -> Sub:
    """A submission committing to ``values`` with ciphertext ``ct`` (default: none, a round without a key)."""
    salt = secrets.token_bytes(32)
    return Sub(p, list(values), salt, ct, commitment(rid, k, p.address, values, salt), k, **extra)


class Crew:
    """The participants of a round in registration order as the client keeps them: each one's
    mask secret (secagg.MaskSecrets), the round's neighbour plan, the mask points posted so far and
    who is still active. Builds what each sends: its registration keys, its submissions (honest or
    hostile, as keys.BEHAVIOURS), its dispute opening, its accusations and its blame opening."""

    def __init__(self, market: Market, rid: int, parts: Sequence[Any], key: Key | None = None,
                 layout: SlotLayout | None = None, lanes: bool = False):
        self.rid, self.parts, self.key, self.layout, self.lanes = rid, list(parts), key, layout, lanes
        self.context = secagg.round_context(market.address, rid, market.chain.chain_id)
        self.plan = secagg.Plan([p.address for p in self.parts], self.context)
        self.members = [secagg.MaskSecrets(i, self.plan) for i in range(len(self.parts))]
        self.points = {0: {i: m.point(0) for i, m in enumerate(self.members)}}  # iteration -> position -> Y(k)
        self.active = set(range(len(self.parts)))

    def copy(self) -> "Crew":
        """The same participants with their own record of points and of who is active."""
        other = copy.copy(self)
        other.points = {k: dict(v) for k, v in self.points.items()}
        other.active = set(self.active)
        return other

    def index(self, p: Any) -> int:
        return self.parts.index(p)

    def keys(self, i: int) -> bytes:
        """What participant i registers with: A || Y(0) with a key, A with pair lanes, else nothing."""
        m = self.members[i]
        return m.key + m.point(0) if self.key else (m.key if self.lanes else b"")

    def drop(self, *parts: Any) -> None:
        self.active -= {self.index(p) for p in parts}

    def seal(self, i: int, k: int, values: Sequence[int], attempt: int = 0, encrypted: Sequence[int] | None = None,
             garble: bool = False, ciphertext: bytes | None = None, opening: tuple[int, int] | None = None,
             point: bytes | None = None, pm: bytes = b"") -> Sub:
        """Participant i's submission to attempt ``attempt`` of iteration ``k``, committing to
        ``values``: honest by default; ``encrypted`` other values encrypted (a cheat), ``garble``
        made-up masks, ``ciphertext`` a given ciphertext (``opening``: its (m, rho) if known),
        ``point`` another next mask point."""
        p = self.parts[i]
        if self.key is None:
            return commit(self.rid, k, p, values, attempt=attempt, pm=pm)
        slots, bits = self.layout.periods, self.layout.slot_bits
        mask = self.members[i].mask(k, attempt, self.points[k], self.active, slots, bits)
        if garble:
            mask = [(v + 1) % (1 << bits) for v in mask]
        m, rho = opening or (None, None)
        if ciphertext is None:
            m = self.layout.pack(list(encrypted if encrypted is not None else values[:slots]), mask)
            c, rho = self.key.encrypt(m)
            ciphertext = self.key.ct(c)
        point = self.members[i].point(k + 1) if point is None else point
        self.points.setdefault(k + 1, {})[i] = point
        return commit(self.rid, k, p, values, ciphertext, attempt=attempt, point=point, pm=pm, m=m, rho=rho)

    def submissions(self, k: int, values: Sequence[Sequence[int]], attempt: int = 0,
                    hostile: dict[int, dict] | None = None) -> list[Sub]:
        """Every active participant's submission (registration order), ``values`` by position;
        ``hostile``: position -> seal's keyword arguments for that participant."""
        return [self.seal(i, k, values[i], attempt, **(hostile or {}).get(i, {})) for i in sorted(self.active)]

    def opened(self, s: Sub, rho: int | None = None) -> bytes:
        """ciphertext || plaintext || rho (another ``rho``: a false opening)."""
        return s.ct + self.key.word(s.m) + self.key.word(s.rho if rho is None else rho)

    def checks(self, s: Sub) -> list[int]:
        """The sender's true check value with each active neighbour (registration order)."""
        i = self.index(s.p)
        return self.members[i].checks(s.k, s.attempt, self.points[s.k], self.active, self.layout.periods,
                                      self.layout.slot_bits)

    def false_checks(self, s: Sub) -> list[int]:
        """Check values that add up (signed) to the sender's plaintext's check slot but differ
        from its true ones (keys.py's ``lie`` and ``garble``): the contract takes them, only a
        neighbour's proof shows them false."""
        i, checks, modulus = self.index(s.p), self.checks(s), 1 << self.layout.slot_bits
        nbrs = self.plan.active_neighbours(i, self.active)
        _, check = self.layout.unpack(s.m)
        honest = sum(self.plan.sign(i, j) * v for j, v in zip(nbrs, checks)) % modulus
        delta = (check - honest) % modulus
        checks[0] = (checks[0] + self.plan.sign(i, nbrs[0]) * (delta or 1)) % modulus
        if not delta:
            checks[1] = (checks[1] - self.plan.sign(i, nbrs[1])) % modulus
        return checks

    def check_opening(self, s: Sub, checks: Sequence[int] | None = None, rho: int | None = None) -> tuple:
        """openCheck's item: (sender, round, commitment, opened, check values)."""
        return s.p, self.rid, s.cm, self.opened(s, rho), list(self.checks(s) if checks is None else checks)

    def accusation(self, accuser: Any, accused: Any, k: int) -> bytes:
        """accuse's proof: the accuser's key, its mask point and its pair point with the accused."""
        return self.members[self.index(accuser)].accusation(k, self.points[k][self.index(accused)])

    def blame_opening(self, s: Sub, rho: int | None = None) -> tuple:
        """openBlame's item: (sender, round, its reveal, opened, its proven masks)."""
        masks = self.members[self.index(s.p)].blame_masks(s.k, self.points[s.k], self.active)
        return s.p, self.rid, s.values, self.opened(s, rho), masks


# ----------------------------------------------------------------------------- driving a round
def layout_of(p: RoundParams, participants: int) -> SlotLayout | None:
    return SlotLayout(p.slots, p.slot_bits, p.slot_width, participants) if p.n and participants else None


def open_round(e: Any, p: RoundParams, parts: Sequence[Any], key: Key | None = None, deposit: int = 0,
               bond: bool = True, prices: Sequence[int] | None = None, sender: Any = None) -> tuple[int, Crew]:
    """Round ``p`` created by ``sender`` (default: the coordinator) with ``parts`` registered in
    that order (with their keys), ``deposit`` of each and of the grid account and the
    coordinator's bond on its ledger, started at ``prices`` if given; the round and its crew."""
    coord, key = sender or e.coord, key if p.n else None
    rid, _ = e.market.create_round(coord, p)
    crew = Crew(e.market, rid, parts, key, layout_of(p, len(parts)), bool(p.pair_lanes))
    for i, a in enumerate(parts):  # one by one: a node may mine a batch in any order
        e.market.register(a, rid, crew.keys(i))
    if deposit:
        fund(e, rid, list(parts) + [e.grid], deposit)
    if bond and p.bond:
        fund(e, rid, [coord], p.bond)
    if prices is not None:
        e.market.start(coord, rid, prices)
    return rid, crew


def submit(e: Any, subs: Sequence[Sub], rid: int | None = None) -> list[Any]:
    rid = rid or e.rid
    return e.market.submit_many([(s.p, rid, s.k, s.ct, s.cm, s.pm, s.point) for s in subs])


def aggregate(e: Any, subs: Sequence[Sub], rid: int | None = None, sender: Any = None) -> tuple[bytes, list[Any]]:
    """The attempt's aggregate (anyone may aggregate: by default the outsider) and the receipts."""
    return e.market.aggregate(sender or e.outsider, rid or e.rid, [s.ct for s in subs], [s.cm for s in subs])


def product(key: Key, subs: Sequence[Sub]) -> int:
    return key.public.add(*(int.from_bytes(s.ct, "big") for s in subs))


def sums_of(subs: Sequence[Sub], slots: int) -> list[int]:
    return [sum(s.values[t] for s in subs) for t in range(slots)]


def reveal_all(e: Any, subs: Sequence[Sub], rid: int | None = None) -> list[Any]:
    """Each participant reveals its submission (its own transaction)."""
    return e.market.reveal_many([(s.p, rid or e.rid, s.reveal()) for s in subs])


def past_challenge_window(e: Any, rid: int | None = None) -> None:
    past(e.chain, e.market.round_info(rid or e.rid)["challenge_until"])
