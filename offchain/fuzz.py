"""Property-based stateful tests of the round contract: hypothesis drives random sequences of honest
and hostile calls against PrivateRounds, TariffRule and the SettlementToken on one embedded chain,
and a Python model of the rounds (`RoundModel`, the one place that says what must be true) is
checked against the chain after every step.

Invariants (`Rounds.check`, after every step):
  * token conservation: the market holds exactly the sum of every round's ledger balances, and the
    minted supply is what the wallets and the market hold;
  * every settlement's Payment events sum to zero;
  * at most one accepted submission per participant and iteration (Submitted events);
  * phases only move forward (PhaseChanged events go from < to and never leave Settled or Closed,
    and each observed phase is at least the one observed before);
  * once a round is Settled or Closed, every account with a ledger balance can withdraw it in full
    (tried in a chain snapshot that is reverted, once per round);
  * the chain agrees with the model: phase, step, iteration, deadlines, participants, members,
    prices, sums, ledgers and wallets.
Every hostile call must revert with the custom error the model names and change nothing.

One chain serves every example: the token, the market, the rule and a 512-bit Paillier key are set
up once, each example starts from that snapshot and reverts to it at teardown. Rounds run without
dropout recovery (threshold 0) and with windows of a few blocks, so deadlines are reached by
mining. `run_fuzz` runs the machine and reports (`gridshare bench fuzz`); the test suite runs a
short version (tests/chain/test_invariants.py).
"""
from __future__ import annotations

import functools
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from eth_utils.abi import get_abi_output_types
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.reporting import with_reporter
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from .chain import compiler
from .chain.backends import Chain, ContractRevert, connect
from .chain.market import (CLOSE_REASONS, MIN_PARTICIPANTS, PHASES, Market, Reveal, RoundParams, Windows, commitment,
                           deploy_rule)
from .mechanisms.tariff.market import settlement as tariff_settlement
from .privacy.packing import SlotLayout
from .privacy.paillier import generate_keypair

# ----------------------------------------------------------------------------- the rounds' shape
KEY_BITS = 512
SLOTS, SLOT_BITS, SLOT_WIDTH = 2, 32, 40  # two periods; 8 headroom bits
FLOOR = [50_000, 40_000]  # feed-in price per period (1e-6 token/kWh)
CAP = [300_000, 320_000]  # retail price per period
VALUE = 1_000  # |energy| per period and participant, 1e-6 kWh
POOL = 6  # accounts that may take part
MAX_ROUNDS = 3  # rounds per example
MINT = 10**22  # every account's wallet at the start
DEPOSITS = (10**12, 10**14, 10**16)  # too little, perhaps enough, plenty
LAYOUT = SlotLayout(SLOTS, SLOT_BITS, SLOT_WIDTH, participants=1)
PHASE = {name: i for i, name in enumerate(PHASES)}
TERMINAL = ("Settled", "Closed")
NEVER = 2**64 - 1  # coordinatorDeadline while the participants are the ones to act
HIGH_BIT_ZERO = b"\0" * 31 + b"\x80"  # X25519 ignores the top bit: this key is zero
SMALL_ORDER = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
VIEW_BATCH = compiler.ROOT / "tests" / "chain" / "contracts"  # ViewBatch: many views in one eth_call

# a choice among n things, taken modulo n: hypothesis draws small ranges' lower bound a third of the time
INDEX = st.integers(0, 2**16)
VALUES = st.lists(st.integers(-VALUE, VALUE), min_size=SLOTS, max_size=SLOTS)
PRICES = st.tuples(*[st.integers(f, c) for f, c in zip(FLOOR, CAP)]).map(list)
WINDOWS = st.builds(Windows, registration=st.integers(8, 24), submission=st.integers(3, 10), recovery=st.just(4),
                    coordinator=st.integers(4, 16), challenge=st.integers(0, 3))
ROUND_SPECS = st.fixed_dictionaries({
    "kind": st.sampled_from(["open", "allow", "signed"]),
    "admitted": st.permutations(range(POOL)).flatmap(lambda p: st.integers(MIN_PARTICIPANTS, POOL).map(lambda k: p[:k])),
    "windows": WINDOWS,
    "max_iterations": st.integers(1, 3),
})


GENERIC = {  # hostile calls of `Rounds._attacks` that any round attracts, whatever it is doing
    "withdraw from an unknown round", "deposit nothing", "deposit more than the wallet holds",
    "deposit into a finished round", "withdraw an empty balance", "close by a non-coordinator",
    "publish by a non-coordinator", "conclude by a non-coordinator", "start by a non-coordinator",
    "close a finished round", "cancel a finished round", "cancel early", "register after the start", "start twice",
    "submit outside the iterations", "advance outside the iterations", "aggregate outside the iterations",
    "conclude outside the iterations", "challenge in a round without challenges", "challenge outside the iterations",
    "settle twice", "settle early"}


# ----------------------------------------------------------------------------- statistics
@dataclass
class Stats:
    """What the runs did (module-wide; `run_fuzz` resets it)."""
    examples: int = 0
    steps: int = 0
    transactions: int = 0
    rejected: Counter = field(default_factory=Counter)  # hostile (and predicted) rejections by error
    rounds: Counter = field(default_factory=Counter)  # the phase each round ended an example in
    closed: Counter = field(default_factory=Counter)  # Closed events by reason
    hostile: Counter = field(default_factory=Counter)  # hostile calls (all rejected) by kind
    withdrawal_checks: int = 0  # terminal rounds whose every balance was withdrawn in a snapshot


STATS = Stats()


# ----------------------------------------------------------------------------- the shared chain
class Reader:
    """Reads many views at once: through the test-only ViewBatch contract when it compiles (one
    eth_call), else one call each. ``read`` gives raw return data by label."""

    def __init__(self, chain: Chain, sender: Any):
        self.chain = chain
        self.batch = chain.deploy("ViewBatch", sender=sender) if "ViewBatch" in chain.artifacts else None
        self._encoded: dict[str, tuple[str, bytes, list[str]]] = {}

    def read(self, calls: Sequence[tuple[str, Callable[[], Any]]]) -> dict[str, bytes]:
        """``calls``: (label, a factory of the web3 function), encoded once per label."""
        plan = []
        for label, make in calls:
            enc = self._encoded.get(label)
            if enc is None:
                fn = make()
                enc = self._encoded[label] = (fn.address, bytes.fromhex(fn._encode_transaction_data()[2:]),
                                              get_abi_output_types(fn.abi))
            plan.append((label, enc))
        if self.batch is not None:
            out = self.batch.functions.read([e[0] for _, e in plan], [e[1] for _, e in plan]).call()
            return {label: bytes(r) for (label, _), r in zip(plan, out)}
        w3 = self.chain.w3
        return {label: b"\x01" + bytes(w3.eth.call({"to": e[0], "data": e[1]})) for label, e in plan}

    def decode(self, label: str, raw: bytes) -> Any:
        assert raw[:1] == b"\x01", f"{label} reverted"
        out = abi_decode(self._encoded[label][2], raw[1:])
        return out[0] if len(out) == 1 else out


def _slot(key: int | str, slot: int) -> int:
    """The storage slot of ``mapping[key]`` for a mapping at ``slot``."""
    k = int(key, 16) if isinstance(key, str) else key
    return int.from_bytes(keccak(k.to_bytes(32, "big") + slot.to_bytes(32, "big")), "big")


class Books:
    """The token's books and the rounds' ledgers, read from the embedded chain's storage (a few
    microseconds a slot, where a view costs milliseconds of interpreted EVM). The slots are found
    and checked against the views once (`calibrate`); if they cannot be, the views are read."""

    TOKEN_BALANCES, TOKEN_SUPPLY = 0, 2  # OpenZeppelin ERC20: _balances, _allowances, _totalSupply
    ROUNDS = 0  # RoundStorage._rounds, PrivateRounds' first storage variable

    def __init__(self, chain: Chain, market: Market):
        self.chain, self.market = chain, market
        self.ledger_offset: int | None = None  # of Round.balances within the Round struct

    @property
    def fast(self) -> bool:
        return self.ledger_offset is not None

    def _state(self) -> Any:
        return self.chain.tester.backend.chain.get_vm().state

    def calibrate(self, rid: int, account: str, amount: int) -> None:
        """Finds Round.balances from a deposit of ``amount`` by ``account`` in round ``rid`` and
        checks the token's slots against its views."""
        state = self._state()
        token, market = bytes.fromhex(self.market.token.address[2:]), bytes.fromhex(self.market.address[2:])
        base = _slot(rid, self.ROUNDS)
        found = [o for o in range(64) if state.get_storage(market, _slot(account, base + o)) == amount]
        supply = int(self.market.token.contract.functions.totalSupply().call())
        if (len(found) == 1 and state.get_storage(token, self.TOKEN_SUPPLY) == supply
                and state.get_storage(token, _slot(account, self.TOKEN_BALANCES)) == self.market.token.balance_of(account)):
            self.ledger_offset = found[0]

    def read(self, rids: Sequence[int], accounts: Sequence[str], wallets: Sequence[str]) -> dict:
        """{"supply": n, "wallet": {address: n}, "ledger": {(rid, address): n}}."""
        if not self.fast:
            f, token = self.market.contract.functions, self.market.token
            return {"supply": int(token.contract.functions.totalSupply().call()),
                    "wallet": {a: token.balance_of(a) for a in wallets},
                    "ledger": {(rid, a): int(f.balanceOf(rid, a).call()) for rid in rids for a in accounts}}
        state = self._state()
        token, market = bytes.fromhex(self.market.token.address[2:]), bytes.fromhex(self.market.address[2:])
        return {"supply": state.get_storage(token, self.TOKEN_SUPPLY),
                "wallet": {a: state.get_storage(token, _slot(a, self.TOKEN_BALANCES)) for a in wallets},
                "ledger": {(rid, a): state.get_storage(market, _slot(a, _slot(rid, self.ROUNDS) + self.ledger_offset))
                           for rid in rids for a in accounts}}


def fingerprint(chain: Chain, addresses: Sequence[str]) -> tuple:
    """The contracts' accounts: nonce, balance, code and storage root (any write to any of their
    storage slots changes it). A reverted transaction is still mined, so the senders' accounts and
    the state root do change; these must not."""
    state = chain.tester.backend.chain.get_vm().state
    out = []
    for a in addresses:
        raw = bytes.fromhex(a[2:])
        out.append((state.get_nonce(raw), state.get_balance(raw), state.get_code_hash(raw),
                    state._account_db._get_storage_root(raw)))  # py-evm has no public storage-root getter
    return tuple(out)


@dataclass
class Env:
    """The one chain of every example: token, market, TariffRule and the Paillier key."""
    chain: Chain
    op: Any  # deployer and minter
    coord: Any  # every round's coordinator
    grid: Any
    outsider: Any  # never a member of any round
    pool: list  # the accounts that may take part
    market: Market
    rule: str
    pub: Any
    priv: Any
    reader: Reader
    books: Books
    base: Any = None  # the snapshot each example starts from

    @property
    def accounts(self) -> list:
        """Every account that may hold tokens or a ledger balance."""
        return [*self.pool, self.outsider, self.grid, self.coord]

    @functools.cached_property
    def contracts(self) -> list[str]:
        """The market, its modules, the token and the rule."""
        f = self.market.contract.functions
        return [self.market.address, self.market.token.address, self.rule, f.paillier().call(), f.openings().call(),
                f.settlement().call()]

    @property
    def wallets(self) -> list:
        return [*self.accounts, self.op]

    def by_address(self, address: str) -> Any:
        return next(a for a in self.wallets if a.address == address)


_ENV: Env | None = None


def shared_env() -> Env:
    """The chain of every example (set up on first use)."""
    global _ENV
    if _ENV is None:
        chain = connect(None)
        _compile_with_view_batch(chain)
        accts = chain.accounts(4 + POOL)
        op, coord, grid, outsider, pool = accts[0], accts[1], accts[2], accts[3], accts[4:]
        market = Market.deploy(chain, op)
        rule_address = deploy_rule(chain, "TariffRule", op)
        pub, priv = generate_keypair(KEY_BITS)
        env = Env(chain, op, coord, grid, outsider, pool, market, rule_address, pub, priv, Reader(chain, op),
                  Books(chain, market))
        token = market.token.contract.functions
        market.token.mint_many(op, [(a, MINT) for a in env.accounts])
        chain.transact_many([(token.approve(market.address, 2**256 - 1), a) for a in env.accounts])
        snap = chain.snapshot()  # a throwaway round shows where the ledgers are kept
        params = RoundParams(rule=rule_address, slots=SLOTS, max_iterations=1, price_floor=FLOOR, price_cap=CAP,
                             grid_account=grid.address, n=pub.n, slot_bits=SLOT_BITS, slot_width=SLOT_WIDTH)
        rid, _ = market.create_round(coord, params)
        chain.transact(market.contract.functions.deposit(rid, 123_456_789), pool[0])
        env.books.calibrate(rid, pool[0].address, 123_456_789)
        chain.revert(snap)
        env.base = chain.snapshot()
        _ENV = env
    return _ENV


def _compile_with_view_batch(chain: Chain) -> None:
    """Compiles the contracts with tests/chain/contracts (ViewBatch) if present; without them if
    those do not compile. The compiler's extra sources are restored right away."""
    if not (VIEW_BATCH / "ViewBatch.sol").exists():
        return
    added = VIEW_BATCH.resolve() not in compiler.EXTRA_SOURCES
    compiler.add_sources(VIEW_BATCH)
    try:
        chain.artifacts
    except Exception:  # noqa: BLE001 - a broken test contract: go on without the batch reader
        chain._artifacts = None
    finally:
        if added:
            compiler.remove_sources(VIEW_BATCH)


# ----------------------------------------------------------------------------- the model
@dataclass
class Sub:
    """An accepted submission."""
    iteration: int
    values: list[int]
    salt: bytes
    ct: bytes
    commitment: bytes


@dataclass
class RoundModel:
    """What must be true of one round: every transition the contract makes, in Python."""
    rid: int
    kind: str  # "open", "allow" (allow-list) or "signed" (the coordinator's signatures)
    admitted: list[str]  # allow-list or signed members, by member index (open rounds: none)
    windows: Windows
    max_iterations: int
    deadline: int
    phase: str = "Registering"
    step: str = "Submitting"
    iteration: int = 0
    challenge_until: int = 0
    participants: list[str] = field(default_factory=list)  # registration order
    mask_keys: list[bytes] = field(default_factory=list)
    member_index: dict[str, int] = field(default_factory=dict)  # plus one
    dropped: dict[str, int] = field(default_factory=dict)  # droppedBeforePlusOne
    subs: dict[int, dict[str, Sub]] = field(default_factory=dict)  # per iteration, by participant
    aggregate: bytes | None = None  # the current iteration's aggregate, once complete
    openings: dict[int, tuple[bytes, int, int, bool]] = field(default_factory=dict)  # agg, m, rho, honest
    prices: list[int] = field(default_factory=list)
    final_sums: list[int] = field(default_factory=list)
    ledger: Counter = field(default_factory=Counter)
    withdrawals_checked: bool = False

    # -------------------------------------------------------------- views of the model
    @property
    def open(self) -> bool:
        return self.phase not in TERMINAL

    @property
    def active(self) -> list[str]:
        return [p for p in self.participants if p not in self.dropped]

    @property
    def current(self) -> dict[str, Sub]:
        return self.subs.setdefault(self.iteration, {})

    @property
    def pending(self) -> list[str]:
        """Active participants yet to submit in the current iteration."""
        return [p for p in self.active if p not in self.current] if self.phase == "Iterating" else []

    def last_sub(self, who: str) -> Sub | None:
        return next((s[who] for k, s in sorted(self.subs.items(), reverse=True) if who in s), None)

    def eligible(self, pool: Sequence[str]) -> list[str]:
        """Who may still register honestly."""
        allowed = self.admitted if self.kind != "open" else list(pool)
        return [a for a in allowed if a not in self.member_index]

    def coordinator_deadline(self) -> int:
        if self.phase == "Registering":
            return self.deadline + self.windows.coordinator
        if self.phase == "Concluded":
            return self.challenge_until + self.windows.coordinator
        if self.phase == "Iterating" and self.step == "Aggregating":
            return self.deadline
        return NEVER

    def settleable(self, block: int) -> bool:
        return self.phase == "Concluded" and (self.windows.challenge == 0 or block > self.challenge_until)

    def sums(self, iteration: int) -> list[int]:
        """The slot sums of an iteration's submissions."""
        return [sum(s.values[t] for s in self.subs.get(iteration, {}).values()) for t in range(SLOTS)]

    def reveals(self, reveal_dropped: Callable[[str], bool]) -> list[Reveal | None]:
        """Settle's reveals: the final submission of those that stayed; a dropped participant's last
        one if it reveals (and has one), else none."""
        out: list[Reveal | None] = []
        for p in self.participants:
            sub = self.current.get(p) if p not in self.dropped else self.last_sub(p)
            if p in self.dropped and not reveal_dropped(p):
                sub = None
            out.append(Reveal(sub.values, sub.salt, keccak(sub.ct)) if sub else None)
        return out

    def payments(self, reveals: Sequence[Reveal | None]) -> tuple[list[int], int]:
        """TariffRule's payments (positive = paid) of the participants and of the grid account."""
        rows = [r.values if r else [0] * SLOTS for r in reveals]
        standing = [int(p in self.dropped) for p in self.participants]
        return expected_payments(rows, self.prices, FLOOR, CAP, standing)

    # -------------------------------------------------------------- transitions
    def register(self, who: str, key: bytes) -> None:
        self.participants.append(who)
        self.mask_keys.append(key)
        self.member_index[who] = self.admitted.index(who) + 1 if self.kind != "open" else len(self.participants)

    def deposit(self, who: str, amount: int) -> None:
        self.ledger[who] += amount

    def withdraw(self, who: str) -> int:
        amount, self.ledger[who] = self.ledger[who], 0
        return amount

    def start(self, block: int, prices: list[int]) -> None:
        self.prices = list(prices)
        self.phase, self.step, self.deadline = "Iterating", "Submitting", block + self.windows.submission

    def submit(self, block: int, who: str, sub: Sub) -> None:
        self.current[who] = sub
        if len(self.current) == len(self.active):
            self.step, self.deadline = "Aggregating", block + self.windows.coordinator

    def advance(self, block: int, missing: Sequence[str]) -> None:
        for p in missing:
            self.dropped[p] = self.iteration + 1
        if len(self.active) < MIN_PARTICIPANTS:
            self.phase = "Closed"
        else:
            self.step, self.deadline = "Aggregating", block + self.windows.coordinator

    def publish(self, block: int, agg: bytes, m: int, rho: int, honest: bool, next_prices: list[int]) -> None:
        if self.windows.challenge:
            self.openings[self.iteration] = (agg, m, rho, honest)
        self.iteration += 1
        self.prices, self.aggregate = list(next_prices), None
        self.step, self.deadline = "Submitting", block + self.windows.submission

    def conclude(self, block: int, agg: bytes, m: int, rho: int, honest: bool, sums: list[int]) -> None:
        if self.windows.challenge:
            self.openings[self.iteration] = (agg, m, rho, honest)
        self.final_sums = list(sums)
        self.phase, self.challenge_until = "Concluded", block + self.windows.challenge

    def settle(self, amounts: Sequence[int], grid: str, grid_amount: int) -> None:
        for p, a in zip(self.participants, amounts):
            self.ledger[p] -= a
        self.ledger[grid] -= grid_amount
        self.phase = "Settled"

    def close(self) -> None:
        self.phase = "Closed"


def expected_payments(rows, prices, floor, cap, standing) -> tuple[list[int], int]:
    """The model's settlement (the off-chain tariff mechanism's, independent of the rule contract)."""
    return tariff_settlement(rows, prices, floor, cap, standing)


def decoded_sums(m: int) -> list[int]:
    return LAYOUT.unpack_sums(m)


# ----------------------------------------------------------------------------- the machine
class Rounds(RuleBasedStateMachine):
    """Random honest and hostile calls on up to MAX_ROUNDS rounds of one market."""

    def __init__(self) -> None:
        super().__init__()
        self.env = env = shared_env()
        env.chain.revert(env.base)
        self.chain, self.market = env.chain, env.market
        self.f = env.market.contract.functions
        self.rounds: list[RoundModel] = []
        self.wallet = Counter({a.address: MINT for a in env.accounts})
        self._block: int | None = None
        self.touched: set[int] = set()  # rounds a transaction went to since the last check
        self._sent0 = env.chain._sent
        self.events: list[tuple[str, dict, int]] = []  # (name, args, receipt index), not yet checked
        self.receipts = 0
        self.submitted: set[tuple[int, int, str]] = set()
        self.phase_seen: dict[int, str] = {}  # per round: the phase its PhaseChanged events reached
        self.phase_observed: dict[int, str] = {}
        self.salts = 0
        STATS.examples += 1

    def teardown(self) -> None:
        STATS.transactions += self.chain._sent - self._sent0
        for r in self.rounds:
            STATS.rounds[r.phase] += 1
        self.chain.revert(self.env.base)

    # -------------------------------------------------------------- chain helpers
    @property
    def block(self) -> int:
        """The block the next transaction lands in."""
        if self._block is None:
            self._block = self.chain.block_number + 1
        return self._block

    def _mine_to(self, block: int) -> None:
        """Mines until the next transaction lands in ``block`` or later."""
        self.chain.mine_until(block - 1)
        self._block = None

    def _tx(self, label: str, fn: Any, sender: Any) -> Any:
        """An honest call: it must go through. Its receipt; its events are kept for the invariants."""
        try:
            receipt = self.chain.transact(fn, sender)
        except ContractRevert as err:
            raise AssertionError(f"honest {label} rejected: {err}") from None
        self._took(receipt, fn.args[0] if fn.fn_name != "createRound" else len(self.rounds) + 1)
        return receipt

    def _took(self, receipt: Any, rid: int) -> None:
        """A transaction went through: keep its events, look at its round after the step."""
        self._block = None
        self.touched.add(rid)
        self.receipts += 1
        for name in ("PhaseChanged", "Submitted", "Payment"):
            for ev in self.chain.events(receipt, self.market.contract, name):
                self.events.append((name, dict(ev["args"]), self.receipts))
        for ev in self.chain.events(receipt, self.market.contract, "Closed"):
            STATS.closed[CLOSE_REASONS[ev["args"]["reason"]]] += 1

    def _rejected(self, label: str, names: Sequence[str], send: Callable[[], Any]) -> ContractRevert:
        """A call the model says must revert with one of the custom errors ``names`` and change
        nothing: the accounts of the contracts (every storage slot of the market and the token)
        stay as they were."""
        before = fingerprint(self.chain, self.env.contracts)
        try:
            send()
        except ContractRevert as err:
            self._block = None  # a reverted transaction is mined too
            if err.name not in names:
                raise AssertionError(f"{label}: expected {'/'.join(names)}, got {err}") from None
            if fingerprint(self.chain, self.env.contracts) != before:
                raise AssertionError(f"{label} reverted ({err}) but changed the chain's state") from None
            STATS.rejected[err.name] += 1
            return err
        self._block = None
        raise AssertionError(f"{label} was accepted; the model expected {'/'.join(names)}")

    def _reject(self, label: str, names: str | Sequence[str], fn: Any, sender: Any) -> ContractRevert:
        names = (names,) if isinstance(names, str) else tuple(names)
        return self._rejected(label, names, lambda: self.chain.transact(fn, sender))

    def _views(self, r: RoundModel) -> dict[str, Any]:
        """A round as its views show it (one eth_call): summary, prices, sums, participants, the
        coordinator's deadline and its participants' member records."""
        f, rid, reader = self.f, r.rid, self.env.reader
        calls: list[tuple[str, Callable[[], Any]]] = [
            (f"{v} {rid}", lambda v=v: getattr(f, v)(rid))
            for v in ("roundInfo", "prices", "finalSums", "participants", "coordinatorDeadline")]
        calls += [(f"member {rid} {p}", lambda p=p: f.member(rid, p)) for p in r.participants]
        raw = reader.read(calls)
        return {label.split(" ")[0] + (f" {label.split(' ')[2]}" if label.startswith("member") else ""):
                reader.decode(label, data) for label, data in raw.items()}

    # -------------------------------------------------------------- choosing
    def _where(self, pred: Callable[[RoundModel], bool]) -> list[RoundModel]:
        return [r for r in self.rounds if pred(r)]

    def _pick(self, pred: Callable[[RoundModel], bool], i: int) -> RoundModel:
        found = self._where(pred)
        return found[i % len(found)]

    def _addr(self, i: int, among: Sequence[Any] | None = None) -> Any:
        among = list(among if among is not None else self.env.accounts)
        return among[i % len(among)]

    def _mask_key(self, r: RoundModel, who: str) -> bytes:
        return keccak(b"mask key" + r.rid.to_bytes(32, "big") + bytes.fromhex(who[2:]))

    def _salt(self) -> bytes:
        self.salts += 1
        return keccak(b"salt" + self.salts.to_bytes(32, "big"))

    def _signature(self, r: RoundModel, who: str, index: int | None = None, signer: Any = None) -> tuple[int, bytes]:
        index = r.admitted.index(who) if index is None else index
        return index, self.market.member_signature(signer or self.env.coord, r.rid, who, index)

    def _register_fn(self, r: RoundModel, who: str, key: bytes) -> Any:
        if r.kind == "signed":
            return self.f.registerSigned(r.rid, key, *self._signature(r, who))
        return self.f.register(r.rid, key)

    def _ciphertext(self, values: Sequence[int]) -> bytes:
        return self.env.pub.to_bytes(self.env.pub.encrypt(LAYOUT.pack(values)))

    def _mb(self, x: int) -> bytes:
        return int(x).to_bytes(self.env.pub.nbytes, "big")

    # -------------------------------------------------------------- honest actions (the model's moves)
    def _create(self, spec: dict) -> RoundModel:
        env = self.env
        admitted = [env.pool[i].address for i in spec["admitted"]] if spec["kind"] != "open" else []
        params = RoundParams(rule=env.rule, slots=SLOTS, max_iterations=spec["max_iterations"], price_floor=FLOOR,
                             price_cap=CAP, grid_account=env.grid.address, n=env.pub.n, slot_bits=SLOT_BITS,
                             slot_width=SLOT_WIDTH, mechanism="fuzz", members=admitted if spec["kind"] == "allow" else [],
                             signed_members=spec["kind"] == "signed", windows=spec["windows"])
        receipt = self._tx("createRound", self.f.createRound(params.as_tuple()), env.coord)
        rid = len(self.rounds) + 1
        r = RoundModel(rid, spec["kind"], admitted, spec["windows"], spec["max_iterations"],
                       deadline=receipt["blockNumber"] + spec["windows"].registration)
        self.rounds.append(r)
        self.phase_seen[rid] = self.phase_observed[rid] = "Registering"
        return r

    def _register(self, r: RoundModel, accounts: Sequence[str]) -> None:
        for who in accounts:
            if self.block > r.deadline:
                return
            key = self._mask_key(r, who)
            self._tx("register", self._register_fn(r, who, key), self.env.by_address(who))
            r.register(who, key)

    def _deposit(self, r: RoundModel, items: Sequence[tuple[Any, int]]) -> None:
        for account, amount in items:
            self._tx("deposit", self.f.deposit(r.rid, amount), account)
            r.deposit(account.address, amount)
            self.wallet[account.address] -= amount

    def _start(self, r: RoundModel, prices: list[int]) -> None:
        receipt = self._tx("start", self.f.start(r.rid, prices), self.env.coord)
        r.start(receipt["blockNumber"], prices)

    def _submit(self, r: RoundModel, items: Sequence[tuple[str, list[int]]]) -> None:
        for who, values in items:
            if self.block > r.deadline or r.step != "Submitting":
                return
            salt, ct = self._salt(), self._ciphertext(values)
            cm = commitment(r.rid, r.iteration, who, values, salt)
            receipt = self._tx("submit", self.f.submit(r.rid, r.iteration, ct, cm, b"", b""), self.env.by_address(who))
            r.submit(receipt["blockNumber"], who, Sub(r.iteration, list(values), salt, ct, cm))

    def _advance(self, r: RoundModel, caller: Any) -> None:
        missing = r.pending
        receipt = self._tx("advance", self.f.advance(r.rid, missing), caller)
        r.advance(receipt["blockNumber"], missing)

    def _aggregate(self, r: RoundModel, chunk: int, caller: Any) -> None:
        subs = [r.current[p] for p in r.participants if p in r.current]
        so_far = b""
        for i in range(0, len(subs), chunk):
            part = subs[i:i + chunk]
            receipt = self._tx("aggregate", self.f.aggregate(r.rid, so_far, [s.ct for s in part],
                                                             [s.commitment for s in part]), caller)
            done = self.chain.events(receipt, self.market.contract, "Aggregated")
            ev = done or self.chain.events(receipt, self.market.contract, "AggregationProgress")
            so_far = bytes(ev[0]["args"]["aggregate" if done else "soFar"])
        expected = self.env.pub.add(*[int.from_bytes(s.ct, "big") for s in subs])
        assert int.from_bytes(so_far, "big") == expected, "on-chain aggregate is not the product of the submissions"
        r.aggregate = so_far

    def _open(self, r: RoundModel, conclude: bool, honest: bool, next_prices: list[int]) -> None:
        """The coordinator decrypts the aggregate and publishes (next prices) or concludes; a
        dishonest one adds 1 to the plaintext (its opening then fails a challenge)."""
        m, rho = self.env.priv.opening(int.from_bytes(r.aggregate, "big"))
        m += 0 if honest else 1
        args = (r.rid, r.aggregate, self._mb(m), self._mb(rho), [])
        fn = self.f.conclude(*args) if conclude else self.f.publish(*args, next_prices)
        label = "conclude" if conclude else "publish"
        if self.block > r.deadline:
            self._reject(f"late {label}", "DeadlinePassed", fn, self.env.coord)
            return
        receipt = self._tx(label, fn, self.env.coord)
        sums = [int(s) for s in self.chain.events(receipt, self.market.contract, "Concluded" if conclude else "Published")[0]["args"]["sums"]]
        expected = r.sums(r.iteration)
        expected[0] += 0 if honest else 1
        assert sums == expected == decoded_sums(m), f"{label}: decoded sums {sums}, model {expected}"
        if conclude:
            r.conclude(receipt["blockNumber"], r.aggregate, m, rho, honest, sums)
        else:
            r.publish(receipt["blockNumber"], r.aggregate, m, rho, honest, next_prices)

    def _challenge(self, r: RoundModel, iteration: int, caller: Any) -> None:
        agg, m, rho, honest = r.openings[iteration]
        held, receipts = self.market.challenge(caller, r.rid, iteration, agg, m, rho)
        for receipt in receipts:
            self._took(receipt, r.rid)
        assert held == honest, f"challenge of iteration {iteration}: held={held}, opening honest={honest}"
        if not honest:
            r.close()

    def _settle(self, r: RoundModel, reveal_dropped: Callable[[str], bool], caller: Any) -> None:
        reveals = r.reveals(reveal_dropped)
        amounts, grid_amount = r.payments(reveals)
        fn = self._settle_fn(r, reveals)
        if r.final_sums != r.sums(r.iteration):
            self._reject("settle against a false conclusion", "RevealedSumMismatch", fn, caller)
            return
        payers = [*zip(r.participants, amounts), (self.env.grid.address, grid_amount)]
        if any(a > r.ledger[p] for p, a in payers):
            self._reject("settle without deposits", "InsufficientDeposit", fn, caller)
            return
        receipt = self._tx("settle", fn, caller)
        paid = [(ev["args"]["account"], int(ev["args"]["amount"]))
                for ev in self.chain.events(receipt, self.market.contract, "Payment")]
        assert paid == payers, f"payments {paid}, model {payers}"
        r.settle(amounts, self.env.grid.address, grid_amount)

    def _settle_fn(self, r: RoundModel, reveals: Sequence[Reveal | None]) -> Any:
        values = [v for rv in reveals for v in (rv.values if rv else [0] * SLOTS)]
        salts = [rv.salt if rv else b"\0" * 32 for rv in reveals]
        hashes = [rv.ciphertext_hash if rv else b"\0" * 32 for rv in reveals]
        return self.f.settle(r.rid, values, salts, hashes)

    def _withdraw(self, r: RoundModel, accounts: Sequence[str]) -> None:
        for who in accounts:
            receipt = self._tx("withdraw", self.f.withdraw(r.rid), self.env.by_address(who))
            amount = r.withdraw(who)
            got = self.chain.events(receipt, self.market.contract, "Withdrawn")[0]["args"]["amount"]
            assert got == amount, f"withdrew {got}, ledger held {amount}"
            self.wallet[who] += amount

    def _close(self, r: RoundModel) -> None:
        self._tx("close", self.f.close(r.rid), self.env.coord)
        r.close()

    def _cancel(self, r: RoundModel, caller: Any) -> None:
        self._tx("cancel", self.f.cancel(r.rid), caller)
        r.close()

    # -------------------------------------------------------------- predicates of the rules
    def _can_register(self, r: RoundModel) -> bool:
        return r.phase == "Registering" and self.block <= r.deadline and bool(r.eligible(self._pool))

    def _can_start(self, r: RoundModel) -> bool:
        return (r.phase == "Registering" and len(r.participants) >= MIN_PARTICIPANTS
                and self.block <= r.coordinator_deadline())

    def _can_submit(self, r: RoundModel) -> bool:
        return r.phase == "Iterating" and r.step == "Submitting" and self.block <= r.deadline and bool(r.pending)

    def _can_advance(self, r: RoundModel) -> bool:
        return r.phase == "Iterating" and r.step == "Submitting" and self.block > r.deadline

    def _can_open(self, r: RoundModel) -> bool:
        return r.phase == "Iterating" and r.step == "Aggregating"

    def _can_settle(self, r: RoundModel) -> bool:
        return r.settleable(self.block)

    def _can_cancel(self, r: RoundModel) -> bool:
        return r.open and self.block > r.coordinator_deadline()

    def _challengeable(self, r: RoundModel) -> list[int]:
        if r.phase == "Concluded" and self.block > r.challenge_until:
            return []
        return sorted(r.openings) if r.phase in ("Iterating", "Concluded") else []

    def _holders(self, r: RoundModel) -> list[str]:
        return [a for a, v in r.ledger.items() if v > 0]

    def _can_withdraw(self, r: RoundModel) -> bool:
        return r.phase in ("Registering", *TERMINAL) and bool(self._holders(r))

    def _any(self, pred: Callable[[RoundModel], bool]) -> bool:
        return any(pred(r) for r in self.rounds)

    @property
    def _pool(self) -> list[str]:
        return [a.address for a in self.env.pool]

    # -------------------------------------------------------------- rules
    @initialize(spec=ROUND_SPECS)
    def first_round(self, spec):
        STATS.steps += 1
        self._create(spec)

    @precondition(lambda self: len(self.rounds) < MAX_ROUNDS and not self._any(lambda r: r.phase == "Registering"))
    @rule(spec=ROUND_SPECS)
    def create_round(self, spec):
        """Another round, once the others have started (or ended)."""
        STATS.steps += 1
        self._create(spec)

    @precondition(lambda self: self._any(self._can_register))
    @rule(i=INDEX, data=st.data())
    def register(self, i, data):
        """Members (allow-list, signed or open rounds) join."""
        STATS.steps += 1
        r = self._pick(self._can_register, i)
        eligible = r.eligible(self._pool)
        self._register(r, data.draw(st.lists(st.sampled_from(eligible), min_size=1, max_size=3, unique=True)))

    @precondition(lambda self: self._any(lambda r: r.open))
    @rule(i=INDEX, who=st.lists(st.integers(0, POOL + 2), min_size=1, max_size=4, unique=True),
          amount=st.sampled_from(DEPOSITS))
    def deposit(self, i, who, amount):
        STATS.steps += 1
        r = self._pick(lambda r: r.open, i)
        self._deposit(r, [(self._addr(j), amount) for j in who])

    @precondition(lambda self: self._any(self._can_start))
    @rule(i=INDEX, prices=PRICES)
    def start(self, i, prices):
        STATS.steps += 1
        self._start(self._pick(self._can_start, i), prices)

    @precondition(lambda self: self._any(self._can_submit))
    @rule(i=INDEX, data=st.data())
    def submit(self, i, data):
        """Some of the pending participants submit honestly (packed values, encrypted)."""
        STATS.steps += 1
        r = self._pick(self._can_submit, i)
        who = data.draw(st.lists(st.sampled_from(r.pending), min_size=1, max_size=len(r.pending), unique=True))
        self._submit(r, [(p, data.draw(VALUES)) for p in who])

    @rule(blocks=st.integers(1, 8))
    def mine(self, blocks):
        """Time passes."""
        STATS.steps += 1
        self._mine_to(self.block + blocks)

    @precondition(lambda self: self._any(self._can_advance))
    @rule(i=INDEX, caller=INDEX)
    def advance(self, i, caller):
        """After the deadline anyone drops the participants that did not submit."""
        STATS.steps += 1
        self._advance(self._pick(self._can_advance, i), self._addr(caller))

    @precondition(lambda self: self._any(self._can_open))
    @rule(i=INDEX, chunk=st.integers(1, 4), conclude=st.booleans(), honest=st.sampled_from([True] * 5 + [False]),
          prices=PRICES, caller=INDEX)
    def aggregate_and_open(self, i, chunk, conclude, honest, prices, caller):
        """Anyone aggregates (in chunks); the coordinator publishes the decryption with new prices
        or concludes (at the iteration cap it concludes)."""
        STATS.steps += 1
        r = self._pick(self._can_open, i)
        if r.aggregate is None:
            self._aggregate(r, chunk, self._addr(caller))
        self._open(r, conclude or r.iteration + 1 >= r.max_iterations, honest, prices)

    @precondition(lambda self: self._any(lambda r: bool(self._challengeable(r))))
    @rule(i=INDEX, k=INDEX, caller=INDEX)
    def challenge(self, i, k, caller):
        """Anyone checks a published opening on chain; a false one closes the round."""
        STATS.steps += 1
        r = self._pick(lambda r: bool(self._challengeable(r)), i)
        self._challenge(r, self._addr(k, self._challengeable(r)), self._addr(caller))

    @precondition(lambda self: self._any(self._can_settle))
    @rule(i=INDEX, data=st.data(), caller=INDEX)
    def settle(self, i, data, caller):
        """Anyone settles with the participants' reveals; a dropped participant may stay silent."""
        STATS.steps += 1
        r = self._pick(self._can_settle, i)
        silent = data.draw(st.sets(st.sampled_from(r.participants)))
        self._settle(r, lambda p: p not in silent, self._addr(caller))

    @precondition(lambda self: self._any(self._can_withdraw))
    @rule(i=INDEX, data=st.data())
    def withdraw(self, i, data):
        STATS.steps += 1
        r = self._pick(self._can_withdraw, i)
        self._withdraw(r, data.draw(st.lists(st.sampled_from(self._holders(r)), min_size=1, unique=True)))

    @precondition(lambda self: self._any(lambda r: r.open))
    @rule(i=INDEX, give_up=INDEX)
    def close(self, i, give_up):
        """The coordinator gives up (one time in eight; else it carries on)."""
        STATS.steps += 1
        if give_up % 8 == 5:
            self._close(self._pick(lambda r: r.open, i))

    @precondition(lambda self: self._any(self._can_cancel))
    @rule(i=INDEX, caller=INDEX)
    def cancel(self, i, caller):
        """The coordinator missed its deadline: anyone cancels."""
        STATS.steps += 1
        self._cancel(self._pick(self._can_cancel, i), self._addr(caller))

    @precondition(lambda self: self._any(self._unfinished))
    @rule(i=INDEX, moves=INDEX.map(lambda x: 1 + x % 6), data=st.data())
    def progress(self, i, moves, data):
        """A round's next honest moves (so that random runs get far): register and start, submit
        (and drop the late), aggregate and publish or conclude, top up the deposits and settle,
        withdraw; a false opening is challenged, a late coordinator cancelled."""
        STATS.steps += 1
        r = self._pick(self._unfinished, i)
        for _ in range(moves):
            if not self._unfinished(r):
                return
            self._next_move(r, data)

    def _unfinished(self, r: RoundModel) -> bool:
        return r.open or bool(self._holders(r))

    def _next_move(self, r: RoundModel, data: Any) -> None:
        env, outsider = self.env, self.env.outsider
        if r.phase == "Registering":
            if self._can_register(r) and (len(r.participants) < MIN_PARTICIPANTS or data.draw(st.booleans())):
                need = max(MIN_PARTICIPANTS - len(r.participants), 1) + data.draw(st.integers(0, 1))
                self._register(r, data.draw(st.permutations(r.eligible(self._pool)))[:need])
            if self._can_start(r):
                self._start(r, data.draw(PRICES))
            elif self.block > r.coordinator_deadline() or len(r.participants) < MIN_PARTICIPANTS:
                self._mine_to(max(self.block, r.coordinator_deadline() + 1))
                self._cancel(r, outsider)
        elif r.phase == "Iterating" and r.step == "Submitting":
            if self._can_submit(r):  # some or all of those pending submit; later moves drop the rest
                some = data.draw(st.booleans()) and data.draw(INDEX) % len(r.pending) + 1
                who = data.draw(st.permutations(r.pending))[:some or len(r.pending)]
                self._submit(r, [(p, data.draw(VALUES)) for p in who])
            elif r.step == "Submitting":
                self._mine_to(max(self.block, r.deadline + 1))
                self._advance(r, outsider)
        elif r.phase == "Iterating":
            if self.block > r.deadline:
                self._mine_to(max(self.block, r.coordinator_deadline() + 1))
                self._cancel(r, outsider)
                return
            if r.aggregate is None:
                left = max(r.deadline - self.block, 1)  # blocks before the coordinator must open
                self._aggregate(r, max(1, -(-len(r.current) // left)), outsider)
            self._open(r, r.iteration + 1 >= r.max_iterations or data.draw(st.booleans()), True, data.draw(PRICES))
        elif r.phase == "Concluded":
            false = r.final_sums != r.sums(r.iteration)
            if false and self._challengeable(r):
                self._challenge(r, r.iteration, outsider)
            elif false:
                self._mine_to(max(self.block, r.coordinator_deadline() + 1))
                self._cancel(r, outsider)
            else:
                self._mine_to(max(self.block, r.challenge_until + 1))
                amounts, grid_amount = r.payments(r.reveals(lambda p: True))
                short = [(env.by_address(p), a - r.ledger[p]) for p, a in
                         [*zip(r.participants, amounts), (env.grid.address, grid_amount)] if a > r.ledger[p]]
                self._deposit(r, short)
                self._settle(r, lambda p: True, outsider)
        else:
            self._withdraw(r, self._holders(r))

    @rule(i=INDEX, attack=INDEX, data=st.data())
    def hostile(self, i, attack, data):
        """A call that must fail, any of `_attacks`."""
        STATS.steps += 1
        busy = [r for r in self.rounds if r.phase in ("Iterating", "Concluded")]
        among = busy if busy and i % 4 else self.rounds  # mostly rounds under way: they have the most to attack
        self._attack(self._attacks(among[i % len(among)] if among else None, data), attack)

    @precondition(lambda self: self._any(lambda r: r.phase in ("Registering", "Iterating", "Concluded")))
    @rule(i=INDEX, attack=INDEX, data=st.data())
    def hostile_turn(self, i, attack, data):
        """A call that must fail, aimed at what the round is doing now: registering, submitting,
        dropping the late, aggregating, opening, settling (not the calls of other phases)."""
        STATS.steps += 1
        r = self._pick(lambda r: r.phase in ("Registering", "Iterating", "Concluded"), i)
        attacks = self._attacks(r, data)
        self._attack([a for a in attacks if a[0] not in GENERIC] or attacks, attack)

    def _attack(self, attacks: list, choice: int) -> None:
        label, names, fn, sender = attacks[(choice * 40503 + 12345) % len(attacks)]  # 0, drawn often, lands anywhere
        self._reject(label, names, fn, sender)
        STATS.hostile[label] += 1

    # -------------------------------------------------------------- hostile calls
    def _attacks(self, r: RoundModel | None, data: Any) -> list[tuple[str, Any, Any, Any]]:
        """Every hostile call that applies to round ``r`` now: (label, expected error(s), call, sender)."""
        env, f, B = self.env, self.f, self.block
        coord, outsider, grid = env.coord, env.outsider, env.grid
        out: list[tuple[str, Any, Any, Any]] = [
            ("withdraw from an unknown round", "UnknownRound", f.withdraw(len(self.rounds) + 1), outsider)]
        if r is None:
            return out
        rid, n, L = r.rid, env.pub.n, env.pub.nbytes
        add = lambda label, names, fn, sender: out.append((label, names, fn, sender))  # noqa: E731
        parts = [env.by_address(p) for p in r.participants]
        someone = parts[0] if parts else outsider
        holders = self._holders(r)

        # ledger
        if r.open:
            add("deposit nothing", "ZeroAmount", f.deposit(rid, 0), someone)
            add("deposit more than the wallet holds", "ERC20InsufficientBalance",
                f.deposit(rid, self.wallet[outsider.address] + 1), outsider)
        else:
            add("deposit into a finished round", "AlreadySettled" if r.phase == "Settled" else "RoundClosed",
                f.deposit(rid, 1), someone)
        if r.phase in ("Iterating", "Concluded"):
            add("withdraw mid-round", "WrongPhase", f.withdraw(rid), env.by_address(holders[0]) if holders else someone)
        else:
            empty = [a for a in env.accounts if r.ledger[a.address] == 0]
            if empty:  # every account may hold a balance in the round
                add("withdraw an empty balance", "ZeroAmount", f.withdraw(rid), empty[0])

        # the coordinator's powers
        add("close by a non-coordinator", "NotCoordinator", f.close(rid), someone)
        add("publish by a non-coordinator", "NotCoordinator",
            f.publish(rid, r.aggregate or b"", self._mb(1), self._mb(1), [], r.prices or FLOOR), someone)
        add("conclude by a non-coordinator", "NotCoordinator",
            f.conclude(rid, r.aggregate or b"", self._mb(1), self._mb(1), []), outsider)
        add("start by a non-coordinator", "NotCoordinator", f.start(rid, FLOOR), someone)
        if not r.open:
            end = "AlreadySettled" if r.phase == "Settled" else "RoundClosed"
            add("close a finished round", end, f.close(rid), coord)
            add("cancel a finished round", end, f.cancel(rid), outsider)
        elif B <= r.coordinator_deadline():
            add("cancel early", "DeadlineNotPassed", f.cancel(rid), someone)

        # registration
        if r.phase != "Registering":
            if parts:
                who = parts[-1]
                key = keccak(b"late" + bytes(r.mask_keys[-1]))
                add("register after the start", "WrongPhase", self._register_fn(r, who.address, key), who)
            add("start twice", "WrongPhase", f.start(rid, FLOOR), coord)
        else:
            eligible = [env.by_address(a) for a in r.eligible(self._pool)]
            if B > r.deadline and eligible:
                add("register late", "DeadlinePassed", self._register_fn(r, eligible[0].address, keccak(b"late")), eligible[0])
            if B <= r.deadline:
                for who in eligible[:1]:
                    for label, key in (("a zero mask key", b"\0" * 32), ("a zero mask key (top bit set)", HIGH_BIT_ZERO),
                                       ("a small-order mask key", SMALL_ORDER)):
                        add(f"register with {label}", "MaskKeyRejected", self._register_fn(r, who.address, key), who)
                    if r.mask_keys:
                        add("register with a repeated mask key", "MaskKeyRepeated",
                            self._register_fn(r, who.address, r.mask_keys[0]), who)
                for who in parts[:1]:
                    add("register twice", "AlreadyRegistered", self._register_fn(r, who.address, keccak(b"again")), who)
                if r.kind == "signed":
                    index, sig = self._signature(r, grid.address, index=0)
                    add("the grid account registers", "GridAccountCannotRegister",
                        f.registerSigned(rid, keccak(b"grid"), index, sig), grid)
                elif r.kind == "open":
                    add("the grid account registers", "GridAccountCannotRegister", f.register(rid, keccak(b"grid")), grid)
            if r.kind == "allow":
                add("a non-member registers", "NotMember", f.register(rid, keccak(b"x")), outsider)
                add("register with a signature in an allow-list round", "BadSignature",
                    f.registerSigned(rid, keccak(b"x"), 0, b"\0" * 65), outsider)
            elif r.kind == "signed":
                add("register without a signature", "BadSignature", f.register(rid, keccak(b"x")), outsider)
                index, sig = self._signature(r, outsider.address, index=0, signer=env.op)
                add("register with a stranger's signature", "BadSignature", f.registerSigned(rid, keccak(b"x"), index, sig), outsider)
                for who in eligible[:1]:
                    index, sig = self._signature(r, who.address)
                    add("register with another index than signed", "BadSignature",
                        f.registerSigned(rid, keccak(b"x"), index + 1, sig), who)
                    add("register with another's signature", "BadSignature",
                        f.registerSigned(rid, keccak(b"x"), index, sig), outsider)
            if B > r.coordinator_deadline():
                add("start late", "DeadlinePassed", f.start(rid, FLOOR), coord)
            elif len(r.participants) < MIN_PARTICIPANTS:
                add("start with too few participants", "TooFewParticipants", f.start(rid, FLOOR), coord)
            else:
                add("start below the price floor", "PriceOutOfBand", f.start(rid, [FLOOR[0] - 1, FLOOR[1]]), coord)
                add("start above the price cap", "PriceOutOfBand", f.start(rid, [CAP[0], CAP[1] + 1]), coord)
                add("start with a price too few", "PriceLength", f.start(rid, FLOOR[:1]), coord)

        # submissions
        ct = self._ciphertext([1] * SLOTS)
        k = r.iteration

        def submit(who: Any, c: bytes = ct, iteration: int = k, pair: bytes = b"", point: bytes = b"") -> Any:
            return f.submit(rid, iteration, c, commitment(rid, iteration, who.address, [1] * SLOTS, b"\1" * 32), pair, point)

        if r.phase != "Iterating":
            add("submit outside the iterations", "WrongPhase", submit(someone), someone)
            add("advance outside the iterations", "WrongPhase", f.advance(rid, []), outsider)
            add("aggregate outside the iterations", "WrongPhase", f.aggregate(rid, b"", [ct], [b"\0" * 32]), outsider)
        elif r.step == "Aggregating":
            add("submit after everyone did", "WrongStep", submit(env.by_address(r.active[0])), env.by_address(r.active[0]))
            add("advance after everyone submitted", "WrongStep", f.advance(rid, []), outsider)
        elif B > r.deadline:
            for who in [env.by_address(p) for p in r.pending[:1]]:
                add("submit late", "DeadlinePassed", submit(who), who)
            missing = r.pending
            if missing:
                add("advance leaving out a late participant", "MissingCount", f.advance(rid, missing[:-1]), outsider)
            if r.current:
                add("advance dropping one that submitted", "NotMissing",
                    f.advance(rid, sorted([*missing, *r.current], key=r.participants.index)), outsider)
            if len(missing) >= 2:
                add("advance out of registration order", "NotMissing", f.advance(rid, missing[::-1]), outsider)
                add("advance naming one twice", "NotMissing", f.advance(rid, [missing[0], *missing]), outsider)
        else:
            add("advance before the deadline", "DeadlineNotPassed", f.advance(rid, r.pending), outsider)
            add("submit for the next iteration", "WrongIteration", submit(someone, iteration=k + 1), someone)
            add("submit without being registered", "NotRegistered", submit(outsider), outsider)
            for p in list(r.dropped)[:1]:
                add("submit after being dropped", "NotActive", submit(env.by_address(p)), env.by_address(p))
            for p in list(r.current)[:1]:
                add("submit twice", "AlreadySubmitted", submit(env.by_address(p)), env.by_address(p))
            seen = [s.ct for it in r.subs.values() for s in it.values()]
            for who in [env.by_address(p) for p in r.pending[:1]]:
                bad = [("a ciphertext of one", (1).to_bytes(2 * L, "big"), "CiphertextIsOne"),
                       ("the ciphertext n", n.to_bytes(2 * L, "big"), "CiphertextMultipleOfN"),
                       ("a multiple of n", (n * data.draw(st.integers(2, n - 1), label="multiplier")).to_bytes(2 * L, "big"),
                        "CiphertextMultipleOfN"),
                       ("a zero ciphertext", bytes(2 * L), "CiphertextOutOfRange"),
                       ("the ciphertext n^2", (n * n).to_bytes(2 * L, "big"), "CiphertextOutOfRange"),
                       ("a short ciphertext", ct[:L], "CiphertextLength")]
                if seen:
                    bad.append(("a replayed ciphertext", data.draw(st.sampled_from(seen), label="replayed"),
                                "CiphertextRepeated"))
                for label, c, name in bad:
                    add(f"submit {label}", name, submit(who, c), who)
                add("submit pair messages in a round without lanes", "PairMessagesLength", submit(who, pair=b"\0" * 8), who)
                add("submit a mask point without recovery", "MaskPointInvalid", submit(who, point=b"\2" + b"\0" * 32), who)
        if r.phase == "Iterating" and r.step == "Submitting":
            add("aggregate before the submissions close", "WrongStep", f.aggregate(rid, b"", [ct], [b"\0" * 32]), outsider)

        # aggregation and openings
        if r.phase == "Iterating" and r.step == "Aggregating":
            subs = [r.current[p] for p in r.participants if p in r.current]
            cts, cms = [s.ct for s in subs], [s.commitment for s in subs]
            if r.aggregate is not None:
                add("aggregate twice", "AlreadyAggregated", f.aggregate(rid, b"", cts, cms), outsider)
            else:
                add("aggregate a tampered commitment", "SubmissionMismatch",
                    f.aggregate(rid, b"", cts, [keccak(cms[0]), *cms[1:]]), outsider)
                add("aggregate a ciphertext too many", "SubmissionCount", f.aggregate(rid, b"", [*cts, cts[0]], [*cms, cms[0]]), outsider)
                add("aggregate from a made-up product", "AggregateMismatch", f.aggregate(rid, ct, cts, cms), outsider)
                if len(subs) >= 2:
                    add("aggregate out of order", "SubmissionMismatch", f.aggregate(rid, b"", cts[::-1], cms[::-1]), outsider)
            agg = r.aggregate or ct
            m, rho = env.priv.opening(int.from_bytes(agg, "big"))

            def opening(mm: bytes, rr: bytes, corrections=(), conclude=False, prices=None):
                if conclude:
                    return f.conclude(rid, agg, mm, rr, list(corrections))
                return f.publish(rid, agg, mm, rr, list(corrections), prices or r.prices)

            add("publish a short plaintext", "PlaintextLength", opening(self._mb(m)[1:], self._mb(rho)), coord)
            add("publish with corrections in a round without recovery", "CorrectionsLength",
                opening(self._mb(m), self._mb(rho), [0] * SLOTS), coord)
            if B > r.deadline:
                add("publish late", "DeadlinePassed", opening(self._mb(m), self._mb(rho)), coord)
                add("conclude late", "DeadlinePassed", opening(self._mb(m), self._mb(rho), conclude=True), coord)
            elif r.aggregate is None:
                add("publish before the aggregate", "NotAggregated", opening(self._mb(m), self._mb(rho)), coord)
            else:
                add("publish another aggregate", "AggregateMismatch",
                    f.publish(rid, ct, self._mb(m), self._mb(rho), [], r.prices), coord)
                add("publish a plaintext >= n", "PlaintextOutOfRange", opening(self._mb(n), self._mb(rho)), coord)
                add("publish a zero opening", "OpeningNotCanonical", opening(self._mb(m), self._mb(0)), coord)
                add("conclude an opening >= n", "OpeningNotCanonical", opening(self._mb(m), self._mb(n), conclude=True), coord)
                if k + 1 >= r.max_iterations:
                    add("publish at the iteration cap", "IterationCapReached", opening(self._mb(m), self._mb(rho)), coord)
                else:
                    add("publish prices above the cap", "PriceOutOfBand",
                        opening(self._mb(m), self._mb(rho), prices=[CAP[0] + 1, CAP[1]]), coord)
        elif r.phase == "Iterating":
            add("publish while submitting", "WrongStep", f.publish(rid, b"", self._mb(1), self._mb(1), [], r.prices), coord)
        else:
            add("conclude outside the iterations", "WrongPhase", f.conclude(rid, b"", self._mb(1), self._mb(1), []), coord)

        # challenges
        dummy = bytes(4 * L)
        if r.windows.challenge == 0:
            add("challenge in a round without challenges", "NoChallenges", f.challengeOpening(rid, 0, dummy, b"", 1), outsider)
        elif r.phase in ("Iterating", "Concluded"):
            add("challenge an opening never published", "ChallengeMismatch",
                f.challengeOpening(rid, r.iteration + 1, dummy, b"", 1), outsider)
            if r.phase == "Concluded" and B > r.challenge_until:
                agg, m, rho, _ = r.openings[r.iteration]
                add("challenge after the window", "ChallengeWindowClosed",
                    f.challengeOpening(rid, r.iteration, agg + self._mb(m) + self._mb(rho), b"", 1), outsider)
        else:
            add("challenge outside the iterations", "WrongPhase", f.challengeOpening(rid, 0, dummy, b"", 1), outsider)

        # settlement
        if r.phase == "Settled":
            add("settle twice", "AlreadySettled", f.settle(rid, [], [], []), outsider)
        elif r.phase != "Concluded":
            add("settle early", "WrongPhase", f.settle(rid, [], [], []), outsider)
        elif not r.settleable(B):
            add("settle inside the challenge window", "ChallengeWindowOpen", f.settle(rid, [], [], []), outsider)
        else:
            reveals = r.reveals(lambda p: True)
            stayed = [i for i, p in enumerate(r.participants) if p not in r.dropped]
            i = stayed[data.draw(st.integers(0, len(stayed) - 1), label="tampered")]
            rv = reveals[i]
            tampered = list(reveals)
            tampered[i] = Reveal([rv.values[0] + 1, *rv.values[1:]], rv.salt, rv.ciphertext_hash)
            add("settle with a tampered reveal", "CommitmentMismatch", self._settle_fn(r, tampered), outsider)
            silent = list(reveals)
            silent[i] = None
            add("settle with a final participant silent", "CommitmentMismatch", self._settle_fn(r, silent), outsider)
            huge = list(reveals)
            huge[i] = Reveal([2**63, *rv.values[1:]], rv.salt, rv.ciphertext_hash)
            add("settle a reveal beyond int64", "RevealOutOfRange", self._settle_fn(r, huge), outsider)
            add("settle with a reveal missing", "RevealCount", self._settle_fn(r, reveals[:-1]), outsider)
        return out

    # -------------------------------------------------------------- invariants
    @invariant()
    def check(self):
        books = self.env.books.read([r.rid for r in self.rounds], [a.address for a in self.env.accounts],
                                    [a.address for a in self.env.wallets] + [self.market.address])
        self._check_conservation(books)
        self._check_events()
        self._check_books(books)
        for r in self.rounds:
            if r.rid in self.touched:
                self._check_round(r)
        self.touched.clear()
        self._check_withdrawals()

    def _check_conservation(self, books: dict) -> None:
        market = books["wallet"][self.market.address]
        ledgers = sum(books["ledger"].values())
        assert market == ledgers, f"token conservation: the market holds {market}, its ledgers sum to {ledgers}"
        wallets = sum(books["wallet"].values()) - market
        assert books["supply"] == wallets + market, f"minted {books['supply']}, wallets {wallets} + market {market}"

    def _check_events(self) -> None:
        payments: dict[int, int] = {}
        for name, args, receipt in self.events:
            rid = args["roundId"]
            if name == "Submitted":
                key = (rid, args["iteration"], args["participant"])
                assert key not in self.submitted, f"a second accepted submission: round {key[0]}, iteration {key[1]}, {key[2]}"
                self.submitted.add(key)
            elif name == "Payment":
                payments[receipt] = payments.get(receipt, 0) + int(args["amount"])
            else:
                frm, to = PHASES[args["from"]], PHASES[args["to"]]
                assert frm == self.phase_seen[rid], f"round {rid}: PhaseChanged from {frm}, but it was {self.phase_seen[rid]}"
                assert PHASE[frm] < PHASE[to] and frm not in TERMINAL, f"round {rid}: phase went back: {frm} -> {to}"
                self.phase_seen[rid] = to
        self.events.clear()
        bad = {k: s for k, s in payments.items() if s != 0}
        assert not bad, f"settlement payments do not sum to zero: {bad}"
        for r in self.rounds:
            accepted = sum(len(s) for s in r.subs.values())
            on_chain = sum(1 for key in self.submitted if key[0] == r.rid)
            assert accepted == on_chain, f"round {r.rid}: {on_chain} Submitted events, the model accepted {accepted}"

    def _check_books(self, books: dict) -> None:
        """Every wallet and every ledger balance of every round is what the model says."""
        for who, amount in books["wallet"].items():
            if who != self.market.address:
                assert amount == self.wallet[who], f"wallet of {who}: {amount}, model {self.wallet[who]}"
        for r in self.rounds:
            for a in self.env.accounts:
                got = books["ledger"][(r.rid, a.address)]
                assert got == r.ledger[a.address], f"round {r.rid}: ledger of {a.address}: {got}, model {r.ledger[a.address]}"

    def _check_round(self, r: RoundModel) -> None:
        """The round's views agree with the model."""
        rid, v = r.rid, self._views(r)
        info = v["roundInfo"]
        chain = {"phase": PHASES[info[0]], "step": ("Submitting", "Recovering", "Aggregating")[info[1]],
                 "iteration": info[2], "deadline": info[3], "participants": info[9], "active": info[10],
                 "submissions": info[11], "aggregated": info[17], "challenge_until": info[24],
                 "challenge in progress": info[25], "coordinator deadline": v["coordinatorDeadline"],
                 "final sums": list(v["finalSums"])}
        model = {"phase": r.phase, "step": r.step, "iteration": r.iteration, "deadline": r.deadline,
                 "participants": len(r.participants), "active": len(r.active), "submissions": len(r.current),
                 "aggregated": r.aggregate is not None, "challenge_until": r.challenge_until,
                 "challenge in progress": 0, "coordinator deadline": r.coordinator_deadline(),
                 "final sums": r.final_sums}
        if r.phase != "Iterating":  # aggregation leaves the last iteration's marks; submissions count on
            for key in ("aggregated", "submissions"):
                chain.pop(key), model.pop(key)
        if r.phase != "Registering":
            chain["prices"], model["prices"] = list(v["prices"]), r.prices
        diff = {key: (chain[key], model[key]) for key in model if chain[key] != model[key]}
        assert not diff, f"round {rid}: (chain, model) differ: {diff}"
        assert PHASE[chain["phase"]] >= PHASE[self.phase_observed[rid]], f"round {rid}: phase went back"
        self.phase_observed[rid] = chain["phase"]
        accounts, keys = v["participants"]
        assert [to_checksum_address(a) for a in accounts] == r.participants, f"round {rid}: participants"
        assert [bytes(k) for k in keys] == r.mask_keys, f"round {rid}: mask keys"
        for position, who in enumerate(r.participants, 1):
            m, last = v[f"member {who}"], r.last_sub(who)
            want = (position, last.iteration + 1 if last else 0, r.dropped.get(who, 0), 0, r.member_index[who], False)
            assert tuple(m[1:7]) == want, f"round {rid}: member {who}: chain {tuple(m[1:7])}, model {want}"
            assert not m[7] and set(m[8]) | set(m[9]) | set(m[10]) == {0}, f"round {rid}: member {who}: blame state"
            if last:
                assert bytes(m[0]) == keccak(keccak(last.ct) + last.commitment)[:26], f"round {rid}: submission of {who}"

    def _check_withdrawals(self) -> None:
        """Once a round is Settled or Closed, every balance on its ledger comes out in full (tried
        in a snapshot, reverted)."""
        for r in self.rounds:
            if r.open or r.withdrawals_checked:
                continue
            r.withdrawals_checked = True
            holders = self._holders(r)
            if not holders:
                continue
            snap = self.chain.snapshot()
            try:
                token = self.market.token
                for who in holders:
                    before = token.balance_of(who)
                    self.chain.transact(self.f.withdraw(r.rid), self.env.by_address(who))
                    got = token.balance_of(who) - before
                    assert got == r.ledger[who], f"round {r.rid}: {who} withdrew {got} of {r.ledger[who]}"
                    assert self.market.balance(r.rid, who) == 0
            except ContractRevert as err:
                raise AssertionError(f"round {r.rid} is {r.phase} but a withdrawal failed: {err}") from None
            finally:
                self.chain.revert(snap)
                self._block = None
            STATS.withdrawal_checks += 1


# ----------------------------------------------------------------------------- running
def fuzz_settings(examples: int, steps: int, seed: int | None = None) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                    derandomize=seed is not None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def run_fuzz(examples: int, steps: int, seed: int | None = None, progress: Callable[[dict], None] | None = None) -> dict:
    """Runs ``examples`` random sequences of up to ``steps`` calls each (reproducible with ``seed``)
    and reports: examples and steps run, transactions sent, rejected calls by error, the phases
    the rounds ended in, and the failure (``failed``; hypothesis' shrunk example) if any.
    ``progress(report)`` is called after each example."""
    global STATS
    STATS = Stats()
    shared_env()  # set up outside the timing of the first example
    t0 = time.perf_counter()

    class Run(Rounds):
        def teardown(self) -> None:
            super().teardown()
            if progress is not None:
                progress(_report(t0))

    Run.__name__ = Run.__qualname__ = "Rounds"
    if seed is not None:
        Run._hypothesis_internal_use_seed = seed
    lines: list[str] = []
    failure = None
    try:
        with with_reporter(lines.append):
            run_state_machine_as_test(Run, settings=fuzz_settings(examples, steps, seed))
    except Exception as exc:  # noqa: BLE001 - any failure of the machine is the report's
        notes = "\n".join(getattr(exc, "__notes__", []))
        where = "".join(traceback.format_tb(exc.__traceback__)[-2:]).rstrip()  # the harness' or the model's line
        failure = "\n".join(x for x in (f"{type(exc).__name__}: {exc}", where, notes, *lines) if x)
    out = _report(t0)
    out.update(failed=failure is not None, failure=failure, seed=seed, max_examples=examples, max_steps=steps)
    return out


def _report(t0: float) -> dict:
    return {"examples": STATS.examples, "steps": STATS.steps, "transactions": STATS.transactions,
            "rejected": dict(sorted(STATS.rejected.items())), "rejections": sum(STATS.rejected.values()),
            "hostile_calls": dict(sorted(STATS.hostile.items())),
            "round_outcomes": dict(STATS.rounds), "closed": dict(STATS.closed), "withdrawal_checks": STATS.withdrawal_checks,
            "wall_seconds": round(time.perf_counter() - t0, 2)}
