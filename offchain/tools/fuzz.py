"""Property-based stateful tests of the round contract: hypothesis drives random sequences of honest
and hostile calls against PrivateRounds (and its modules), TariffRule and the SettlementToken on
one embedded chain; a Python model of the rounds (`RoundModel`, the one place that says what must
be true) predicts the outcome of every call and is checked against the chain after every step.

The fuzzer holds every party's secrets and plays them all: participants that register their keys
A || Y(0), deposit their collateral and submit, honestly or as the round's hostile participant
(`HOSTILE`: a re-randomised copy c r^n of another's ciphertext, the deterministic encryptions
1 + n and n^2 - 1, made-up masks, a next mask point that is not a H_{k+1}, or a cheat that encrypts
its values + 1 and commits the true ones); the disputes all but the cheat cause (openings, false
claims, accusations, false openings challenged, culprits and non-openers dropped, a new attempt);
the reveals, the blame step a cheat causes and the settlement; a coordinator that is honest or
publishes false sums or a false dispute, starts or goes late.

Invariants (`Rounds.check`, after every step):
  * token conservation: the market holds exactly its rounds' ledgers and forfeited pools, and the
    minted supply is what the wallets and the market hold;
  * every settlement's Payment events sum to zero (and are the model's);
  * at most one accepted submission per participant and attempt; phases only move forward;
  * the chain equals the model: each round's summary, prices, sums and member records, every
    ledger and wallet, and the Dropped, Blamed, Compensated and Closed events (who is dropped why,
    who forfeits what, who is compensated what);
  * at a round's end, forfeits = compensations (a pool stays only when nobody may share it), and
    every ledger balance can be withdrawn in full (tried in a chain snapshot);
  * no frozen round: from every state a round reaches, passing the deadlines and calling `advance`
    or `cancel` ends it (tried in a chain snapshot).
Every hostile call (`Rounds._attacks`) must revert with the custom error the model names and
change nothing. One chain serves every example (token, market, rule and a 512-bit Paillier key set
up once; each example starts from that snapshot). `run_fuzz` runs the machine and reports
(`gridshare bench fuzz`); tests/chain/test_invariants.py runs a short version.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import secrets
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
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from ..chain import compiler
from ..chain.backends import Chain, ContractRevert, connect
from ..chain.market import (CLOSE_REASONS, DROP_REASONS, FAULTS, MIN_PARTICIPANTS, PHASES, STEPS, Market, Reveal,
                           RoundParams, Windows, aggregate_key, blame_key, commitment, deploy_rule, dispute_key,
                           values_hash)
from ..mechanisms.tariff.market import settlement as tariff_settlement
from ..privacy import secagg
from ..privacy.packing import SlotLayout
from ..privacy.paillier import generate_keypair

# ----------------------------------------------------------------------------- the rounds' shape
KEY_BITS = 512
SLOTS, SLOT_BITS, SLOT_WIDTH = 2, 32, 40  # two periods and the check slot; 8 headroom bits
MODULUS = 1 << SLOT_BITS
FLOOR = [50_000, 40_000]  # feed-in price per period (1e-6 token/kWh)
CAP = [300_000, 320_000]  # retail price per period
VALUE = 1_000  # |energy| per period and participant, 1e-6 kWh
POOL = 6  # accounts that may take part (the neighbour graph is complete)
MAX_ROUNDS = 3  # rounds per example
MINT = 10**22  # every account's wallet at the start
COLLATERAL = BOND = 10**15  # above the largest payment: 2 periods x 1,000 x 320,000 x 10^6
DEPOSITS = (10**12, COLLATERAL, 10**16)  # too little, enough, plenty
LAYOUT = SlotLayout(SLOTS, SLOT_BITS, SLOT_WIDTH, participants=1)
CHECK_SLOT = 1 << (SLOTS * SLOT_WIDTH)  # 1 in the check slot of a plaintext
PHASE = {name: i for i, name in enumerate(PHASES)}
TERMINAL = ("Settled", "Closed")
NEVER = 2**64 - 1  # coordinatorDeadline while the participants are the ones to act
OFF_CURVE = next(x for x in range(1, 99) if pow(x**3 + 7, (secagg.P - 1) // 2, secagg.P) != 1)
BAD_POINTS = {"x >= N": b"\x02" + secagg.Q.to_bytes(32, "big"), "x off the curve": b"\x02" + OFF_CURVE.to_bytes(32, "big")}
SOME_POINT = secagg.multiply(secagg.GENERATOR, 7)  # a valid point, nobody's mask point
HOSTILE = ("cheat", "copy", "one-plus-n", "minus-one", "garble", "bad-point")
MASK_BREAKERS = ("copy", "one-plus-n", "minus-one", "garble")  # submissions whose masks cannot cancel
LOGGED = ("Dropped", "Blamed", "Compensated", "Closed")  # events compared with the model's log
GENERIC = {"UnknownRound", "ZeroAmount", "ERC20InsufficientBalance", "NotCoordinator", "WrongPhase", "RoundClosed",
           "AlreadySettled", "NoChallenges"}  # errors of hostile calls that any round attracts, whatever it does
VIEW_BATCH = compiler.ROOT / "tests" / "chain" / "contracts"  # ViewBatch: many views in one eth_call


def but_one_in(n: int) -> st.SearchStrategy[bool]:
    """True but one time in ``n`` (hypothesis' simplest draw, 0, is true)."""
    return st.integers(0, n - 1).map(lambda x: x != n - 1)


# a choice among n things, taken modulo n: hypothesis draws small ranges' lower bound a third of the time
INDEX = st.integers(0, 2**16)
MOSTLY = but_one_in(8)
VALUES = st.lists(st.integers(-VALUE, VALUE), min_size=SLOTS, max_size=SLOTS)
PRICES = st.tuples(*[st.integers(f, c) for f, c in zip(FLOOR, CAP)]).map(list)
ROUND_SPECS = st.fixed_dictionaries({
    "kind": st.sampled_from(["open", "allow", "signed"]),
    "admitted": st.permutations(range(POOL)).flatmap(lambda p: st.sampled_from([5, 6, 4, 3]).map(lambda k: p[:k])),
    "windows": st.builds(Windows, registration=st.integers(20, 48), submission=st.integers(6, 16),
                         coordinator=st.integers(6, 20), challenge=st.sampled_from([3, 2, 4, 3, 0])),
    "max_iterations": st.integers(1, 3),
    "collateral": st.sampled_from([COLLATERAL, 0]),
    "bond": st.sampled_from([BOND, 0]),
    "hostile": st.sampled_from([None, "cheat", *HOSTILE]),  # what its second participant does
})
COORDINATOR = st.sampled_from(["honest"] * 10 + ["false sums", "false dispute"])


@dataclass
class Stats:
    """What the runs did (module-wide; `run_fuzz` resets it)."""
    examples: int = 0
    steps: int = 0
    transactions: int = 0  # the sequences' (not the invariant checks' in snapshots)
    rejected: Counter = field(default_factory=Counter)  # hostile (and predicted) rejections by error
    hostile: Counter = field(default_factory=Counter)  # hostile calls (all rejected) by kind
    rounds: Counter = field(default_factory=Counter)  # the phase each round ended an example in
    closed: Counter = field(default_factory=Counter)  # Closed events by reason
    flow: Counter = field(default_factory=Counter)  # Disputed, Accused, BlameStarted, ... events
    faults: Counter = field(default_factory=Counter)  # Blamed events by fault
    withdrawal_checks: int = 0  # finished rounds whose every balance was withdrawn in a snapshot
    end_checks: int = 0  # round states that passing the deadlines ended (in a snapshot)


STATS = Stats()


# ----------------------------------------------------------------------------- the shared chain
class Reader:
    """Reads many views in one eth_call (the test-only ViewBatch contract): decoded results by
    label, a struct as a dict by field name."""

    def __init__(self, chain: Chain, sender: Any):
        self.batch = chain.deploy("ViewBatch", sender=sender)
        self._encoded: dict[str, tuple] = {}

    def read(self, calls: Sequence[tuple[str, Callable[[], Any]]]) -> dict[str, Any]:
        """``calls``: (label, a factory of the web3 function), encoded once per label."""
        plan = []
        for label, make in calls:
            if label not in self._encoded:
                fn = make()
                out = fn.abi["outputs"][0]
                self._encoded[label] = (fn.address, bytes.fromhex(fn._encode_transaction_data()[2:]),
                                        get_abi_output_types(fn.abi), [c["name"] for c in out.get("components", [])])
            plan.append((label, self._encoded[label]))
        raw = self.batch.functions.read([e[0] for _, e in plan], [e[1] for _, e in plan]).call()
        results = {}
        for (label, (_, _, types, names)), data in zip(plan, raw):
            assert data[:1] == b"\x01", f"{label} reverted"
            value = abi_decode(types, bytes(data[1:]))[0]
            results[label] = dict(zip(names, value)) if names else value
        return results


def _slot(key: int | str, slot: int) -> int:
    """The storage slot of ``mapping[key]`` for a mapping at ``slot``."""
    k = int(key, 16) if isinstance(key, str) else key
    return int.from_bytes(keccak(k.to_bytes(32, "big") + slot.to_bytes(32, "big")), "big")


class Books:
    """The token's books and the rounds' ledgers, read from the embedded chain's storage (a few
    microseconds a slot, where a view costs milliseconds of interpreted EVM). The slots are found
    and checked against the views once (`calibrate`)."""

    TOKEN_BALANCES, TOKEN_SUPPLY = 0, 2  # OpenZeppelin ERC20: _balances, _allowances, _totalSupply
    ROUNDS = 0  # RoundStorage._rounds, PrivateRounds' first storage variable

    def __init__(self, chain: Chain, market: Market):
        self.chain, self.market = chain, market
        self.token, self.address = bytes.fromhex(market.token.address[2:]), bytes.fromhex(market.address[2:])
        self.ledger_offset = 0  # of Round.balances within the Round struct

    def _state(self) -> Any:
        return self.chain.tester.backend.chain.get_vm().state

    def calibrate(self, rid: int, account: str, amount: int) -> None:
        """Finds Round.balances from a deposit of ``amount`` by ``account`` in round ``rid`` and
        checks the token's slots against its views."""
        state = self._state()
        found = [o for o in range(64) if state.get_storage(self.address, _slot(account, _slot(rid, self.ROUNDS) + o)) == amount]
        assert len(found) == 1 and state.get_storage(self.token, self.TOKEN_SUPPLY) == \
            self.market.token.contract.functions.totalSupply().call(), "the token's or the market's storage moved"
        assert state.get_storage(self.token, _slot(account, self.TOKEN_BALANCES)) == self.market.token.balance_of(account)
        self.ledger_offset = found[0]

    def read(self, rids: Sequence[int], accounts: Sequence[str], wallets: Sequence[str]) -> dict:
        """{"supply": n, "wallet": {address: n}, "ledger": {(rid, address): n}}."""
        state = self._state()
        return {"supply": state.get_storage(self.token, self.TOKEN_SUPPLY),
                "wallet": {a: state.get_storage(self.token, _slot(a, self.TOKEN_BALANCES)) for a in wallets},
                "ledger": {(rid, a): state.get_storage(self.address, _slot(a, _slot(rid, self.ROUNDS) + self.ledger_offset))
                           for rid in rids for a in accounts}}


def fingerprint(chain: Chain, addresses: Sequence[str]) -> tuple:
    """The contracts' accounts: nonce, balance, code and storage root (any write to any of their
    storage slots changes it). A reverted transaction is still mined, so the senders' accounts and
    the state root do change; these must not."""
    state = chain.tester.backend.chain.get_vm().state
    return tuple((state.get_nonce(raw), state.get_balance(raw), state.get_code_hash(raw),
                  state._account_db._get_storage_root(raw))  # py-evm has no public storage-root getter
                 for raw in (bytes.fromhex(a[2:]) for a in addresses))


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
                f.settlement().call(), f.disputes().call()]

    def by_address(self, address: str) -> Any:
        return next(a for a in [*self.accounts, self.op] if a.address == address)


_ENV: Env | None = None


def shared_env() -> Env:
    """The chain of every example (set up on first use)."""
    global _ENV
    if _ENV is None:
        chain = connect(None)
        added = VIEW_BATCH.resolve() not in compiler.EXTRA_SOURCES
        compiler.add_sources(VIEW_BATCH)  # ViewBatch, compiled with the contracts; no other chain sees it
        try:
            chain.artifacts
        finally:
            if added:
                compiler.remove_sources(VIEW_BATCH)
        op, coord, grid, outsider, *pool = chain.accounts(4 + POOL)
        market = Market.deploy(chain, op)
        pub, priv = generate_keypair(KEY_BITS)
        env = Env(chain, op, coord, grid, outsider, pool, market, deploy_rule(chain, "TariffRule", op), pub, priv,
                  Reader(chain, op), Books(chain, market))
        market.token.mint_many(op, [(a, MINT) for a in env.accounts])
        chain.transact_many([(market.token.contract.functions.approve(market.address, 2**256 - 1), a) for a in env.accounts])
        snap = chain.snapshot()  # a throwaway round shows where the ledgers are kept
        rid, _ = market.create_round(coord, RoundParams(rule=env.rule, slots=SLOTS, max_iterations=1, price_floor=FLOOR,
                                                        price_cap=CAP, grid_account=grid.address, n=pub.n,
                                                        slot_bits=SLOT_BITS, slot_width=SLOT_WIDTH))
        chain.transact(market.contract.functions.deposit(rid, 123_456_789), pool[0])
        env.books.calibrate(rid, pool[0].address, 123_456_789)
        chain.revert(snap)
        env.base = chain.snapshot()
        _ENV = env
    return _ENV


def mask_secret(rid: int, who: str) -> int:
    """A participant's mask secret a (the fuzzer's, reproducible)."""
    return 1 + int.from_bytes(keccak(b"mask secret" + rid.to_bytes(32, "big") + bytes.fromhex(who[2:])), "big") % (secagg.Q - 1)


def hash16(data: bytes) -> bytes:
    """bytes16(keccak256(data)), as the contract keeps points, keys and claims; zero for nothing."""
    return keccak(data)[:16] if data else bytes(16)


# ----------------------------------------------------------------------------- the model
class Revert(Exception):
    """The contract must reject the call with the custom error ``name``."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def need(ok: Any, error: str) -> None:
    if not ok:
        raise Revert(error)


@dataclass
class Sub:
    """An accepted submission (``kind``: "honest" or one of HOSTILE)."""
    iteration: int
    attempt: int
    kind: str
    values: list[int]  # committed (and revealed)
    salt: bytes
    ct: bytes
    commitment: bytes
    point: bytes  # the next mask point it posted

    @property
    def reveal(self) -> Reveal:
        return Reveal(self.values, self.salt, keccak(self.ct))


@dataclass
class RoundModel:
    """What must be true of one round: every transition the contract makes, in Python. Each
    transition takes the block its transaction lands in and raises `Revert` where the contract
    must reject it (the machine applies it to a copy first)."""
    rid: int
    kind: str  # "open", "allow" (allow-list) or "signed" (the coordinator's signatures)
    admitted: list[str]  # allow-list or signed members, by member index (open rounds: none)
    windows: Windows
    max_iterations: int
    collateral: int
    bond: int
    hostile: str | None
    coordinator: str
    grid: str
    n: int
    context: bytes  # what binds the masks to the round (secagg.round_context)
    deadline: int
    phase: str = "Registering"
    step: str = "Submitting"
    iteration: int = 0
    attempt: int = 0
    submissions: int = 0  # in the attempt (in a dispute: its openings)
    challenge_until: int = 0
    reveal_until: int = 0
    blame_until: int = 0
    participants: list[str] = field(default_factory=list)  # registration order
    member_index: dict[str, int] = field(default_factory=dict)  # plus one
    secret: dict[str, int] = field(default_factory=dict)  # a, per participant
    key: dict[str, bytes] = field(default_factory=dict)  # A = a G
    point: dict[str, bytes] = field(default_factory=dict)  # Member.pointHash's point
    next_point: dict[str, bytes] = field(default_factory=dict)  # Member.nextPointHash's point
    dropped: dict[str, int] = field(default_factory=dict)  # droppedBeforePlusOne
    culprits: set[str] = field(default_factory=set)
    subs: dict[str, Sub] = field(default_factory=dict)  # each one's latest accepted submission
    accepted: int = 0  # Submitted events
    aggregate: bytes | None = None  # the attempt's aggregate, once complete
    claims: dict[str, list[int]] = field(default_factory=dict)  # this dispute's openings: check values
    opened: dict[str, int] = field(default_factory=dict)  # openedPlusOne
    last_claims: dict[str, list[int]] = field(default_factory=dict)  # Member.checkHash's claims
    openings: dict[int, tuple[bytes, int, int]] = field(default_factory=dict)  # challengeable: key -> ct, m, rho
    revealed: dict[str, Reveal] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)
    prices: list[int] = field(default_factory=list)
    final_sums: list[int] = field(default_factory=list)
    ledger: Counter = field(default_factory=Counter)
    pool: int = 0  # forfeited, not yet shared
    log: list[tuple] = field(default_factory=list)  # the LOGGED events, as `Rounds._entry` writes them
    withdrawals_checked: bool = False
    plan: secagg.Plan | None = None  # from the start (shared by the model's copies)

    # -------------------------------------------------------------- views of the model
    @property
    def open(self) -> bool:
        return self.phase not in TERMINAL

    @property
    def active(self) -> list[str]:
        return [p for p in self.participants if p not in self.dropped]

    @property
    def current(self) -> dict[str, Sub]:
        """This attempt's submissions, registration order."""
        return {p: self.subs[p] for p in self.participants
                if p in self.subs and (self.subs[p].iteration, self.subs[p].attempt) == (self.iteration, self.attempt)}

    @property
    def missing(self) -> list[str]:
        """Active participants yet to submit in the attempt (to open, in a dispute)."""
        acted = self.claims if self.step == "Disputing" else self.current
        return [p for p in self.active if p not in acted] if self.phase == "Iterating" else []

    @property
    def epoch(self) -> int:
        """The current dispute's mark (openedPlusOne)."""
        return aggregate_key(self.iteration, self.attempt) + 1

    def eligible(self, pool: Sequence[str]) -> list[str]:
        """Who may still register honestly."""
        return [a for a in (self.admitted if self.kind != "open" else pool) if a not in self.member_index]

    def keys(self, who: str) -> bytes:
        """What ``who`` registers: A = a G and Y(0) = a H_0."""
        a = mask_secret(self.rid, who)
        return secagg.multiply(secagg.GENERATOR, a) + secagg.multiply(secagg.iteration_point(self.context, 0), a)

    def coordinator_deadline(self) -> int:
        if self.phase == "Registering":
            return self.deadline + self.windows.coordinator
        if self.phase == "Concluded":
            ready = self.challenge_until + self.windows.challenge if self.blame_until else self.reveal_until
            return ready + self.windows.coordinator
        return self.deadline if self.phase == "Iterating" and self.step == "Aggregating" else NEVER

    def challenge_window(self, key: int) -> int:
        """The last block the opening under ``key`` may be challenged in."""
        if self.phase == "Concluded":
            return self.challenge_until
        disputing = self.step == "Disputing"
        if key >> 128 == 1:  # a dispute opening: in its own dispute only
            return self.deadline if disputing and key >> 16 & (2**112 - 1) == self.epoch - 1 else 0
        return self.deadline if disputing else NEVER

    # -------------------------------------------------------------- masks
    def pos(self, who: str) -> int:
        return self.participants.index(who)

    def y(self, who: str) -> bytes:
        """Y(k) of the current iteration as the chain keeps it (RoundDisputes._pointHash)."""
        last = self.subs.get(who)
        return self.point[who] if last and last.iteration == self.iteration else self.next_point[who]

    def masks(self, who: str) -> secagg.MaskSecrets:
        return secagg.MaskSecrets(self.pos(who), self.plan, self.secret[who])

    def mask_args(self) -> tuple[dict[int, bytes], set[int]]:
        """The iteration's mask points as posted and the active positions."""
        return {self.pos(p): self.y(p) for p in self.active}, {self.pos(p) for p in self.active}

    def mask(self, who: str) -> list[int]:
        """``who``'s honest mask of the attempt."""
        return self.masks(who).mask(self.iteration, self.attempt, *self.mask_args(), SLOTS, SLOT_BITS)

    def neighbours(self, who: str) -> list[str]:
        return [self.participants[j] for j in self.plan.active_neighbours(self.pos(who), self.mask_args()[1])]

    def provable(self, who: str, other: str) -> int:
        """The check value of ``who``'s pair mask with ``other`` that ``who`` can prove: from a_who Y_other(k)."""
        pair = secagg.multiply(self.y(other), self.secret[who])
        return self.plan.check_of(self.pos(who), self.pos(other), pair, self.iteration, self.attempt, SLOTS, SLOT_BITS)

    def genuine(self, who: str) -> bool:
        """Whether ``who``'s mask point of the iteration is a H_k (else it cannot prove it)."""
        return self.y(who) == secagg.multiply(self.plan.point(self.iteration), self.secret[who])

    def signed(self, who: str, claims: Sequence[int]) -> int:
        """The check mask that claims add up to (each added or subtracted as ``who``'s masks are)."""
        i = self.pos(who)
        return sum(self.plan.sign(i, self.pos(j)) * e for j, e in zip(self.neighbours(who), claims)) % MODULUS

    def differ(self, i: str, j: str) -> bool:
        """Whether the check values ``i`` and ``j`` opened of their pair mask differ."""
        return self.claims[i][self.neighbours(i).index(j)] != self.claims[j][self.neighbours(j).index(i)]

    def accusable(self) -> list[tuple[str, str]]:
        """(accuser, accused) pairs whose accusation holds (the accuser proves its claim, which differs)."""
        return [(i, j) for i in self.claims for j in self.claims if j != i and j not in self.culprits and self.differ(i, j)
                and self.genuine(i) and self.claims[i][self.neighbours(i).index(j)] == self.provable(i, j)]

    def masks_break(self) -> bool:
        """Whether the attempt's masks cannot cancel: a mask breaker, or a false mask point in use."""
        return any(s.kind in MASK_BREAKERS for s in self.current.values()) or not all(map(self.genuine, self.active))

    # -------------------------------------------------------------- the end
    def settle_rows(self) -> tuple[list[list[int]], list[bytes], list[str]]:
        """Settle's reveals (zeros where one does not count), ciphertext hashes and standings."""
        rows, hashes, standing = [], [], []
        for p in self.participants:
            rv, stayed = self.revealed.get(p), p not in self.dropped
            counted = rv is not None and p not in self.culprits and not (stayed and self.blame_until and p not in self.cleared)
            rows.append(list(rv.values) if counted else [0] * SLOTS)
            hashes.append(rv.ciphertext_hash if counted else bytes(32))
            standing.append("Final" if counted and stayed else "DroppedRevealed" if counted else "DroppedSilent")
        return rows, hashes, standing

    def payments(self) -> list[tuple[str, int]]:
        """TariffRule's payments (positive = paid) of the participants, then of the grid account."""
        rows, _, standing = self.settle_rows()
        amounts, grid = tariff_settlement(rows, self.prices, FLOOR, CAP, [int(s != "Final") for s in standing])
        return [*zip(self.participants, amounts), (self.grid, grid)]

    def settle_error(self, block: int) -> str | None:
        """Why a settlement must wait (or None)."""
        if self.phase != "Concluded":
            return "AlreadySettled" if self.phase == "Settled" else "WrongPhase"
        if (self.blame_until or block <= self.reveal_until) and block <= self.challenge_until:
            return "ChallengeWindowOpen"
        if not self.blame_until and block <= self.reveal_until and any(p not in self.revealed for p in self.active):
            return "RevealWindowOpen"
        return None

    # -------------------------------------------------------------- faults and endings
    def drop(self, who: str, reason: str) -> None:
        self.dropped[who] = self.iteration + 1
        self.log.append(("Dropped", self.iteration, who, reason))

    def forfeit(self, who: str, fault: str) -> None:
        """``who`` forfeits its balance (the coordinator: its bond, as far as its balance holds it)."""
        amount = min(self.ledger[who], self.bond) if who == self.coordinator else self.ledger[who]
        if who != self.coordinator:
            self.culprits.add(who)
        self.ledger[who] -= amount
        self.pool += amount
        self.log.append(("Blamed", who, amount, fault))

    def share(self, eligible: Sequence[str]) -> None:
        """The pool in equal shares to ``eligible`` (none: every non-culprit), the remainder to the
        first; with nobody to share it, to the grid account."""
        eligible = list(eligible) or [p for p in self.participants if p not in self.culprits]
        if not self.pool:
            return
        if not eligible:
            self.ledger[self.grid] += self.pool
            self.log.append(("Compensated", self.grid, self.pool))
            self.pool = 0
            return
        each, rest = divmod(self.pool, len(eligible))
        self.pool = 0
        for i, p in enumerate(eligible):
            self.ledger[p] += each + (rest if i == 0 else 0)
            self.log.append(("Compensated", p, each + (rest if i == 0 else 0)))

    def close(self, reason: str) -> None:
        self.phase = "Closed"
        self.log.append(("Closed", reason))
        self.share([])

    def begin_attempt(self, block: int) -> None:
        self.phase, self.step, self.deadline = "Iterating", "Submitting", block + self.windows.submission
        self.submissions, self.aggregate = 0, None

    # -------------------------------------------------------------- transitions
    def register(self, block: int, who: str) -> None:
        need(self.phase == "Registering", "WrongPhase")
        need(block <= self.deadline, "DeadlinePassed")
        keys = self.keys(who)
        self.participants.append(who)
        self.member_index[who] = self.admitted.index(who) + 1 if self.kind != "open" else len(self.participants)
        self.secret[who], self.key[who], self.point[who], self.next_point[who] = mask_secret(self.rid, who), keys[:33], b"", keys[33:]

    def deposit(self, who: str, amount: int) -> None:
        need(self.phase != "Settled", "AlreadySettled")
        need(self.phase != "Closed", "RoundClosed")
        self.ledger[who] += amount

    def withdraw(self, who: str) -> int:
        need(self.phase in TERMINAL, "WrongPhase")
        amount, self.ledger[who] = self.ledger[who], 0
        return amount

    def start(self, block: int, prices: list[int]) -> None:
        need(self.phase == "Registering", "WrongPhase")
        need(block <= self.coordinator_deadline(), "DeadlinePassed")
        need(self.ledger[self.coordinator] >= self.bond, "InsufficientDeposit")
        for p in self.participants:
            if self.ledger[p] < self.collateral:
                self.drop(p, "NoCollateral")
        need(len(self.active) >= MIN_PARTICIPANTS, "TooFewParticipants")
        self.prices, self.plan = list(prices), secagg.Plan(self.participants, self.context)
        self.begin_attempt(block)

    def submit(self, block: int, who: str, sub: Sub) -> None:
        need(self.phase == "Iterating", "WrongPhase")
        need(self.step == "Submitting", "WrongStep")
        need(block <= self.deadline, "DeadlinePassed")
        last = self.subs.get(who)
        if not last or last.iteration != self.iteration:  # its first submission of the iteration
            self.point[who] = self.next_point[who]
        self.next_point[who], self.subs[who] = sub.point, sub
        self.accepted += 1
        self.submissions += 1
        if self.submissions == len(self.active):
            self.step, self.deadline = "Aggregating", block + self.windows.coordinator

    def advance(self, block: int) -> None:
        """Drops those missing (and, after a dispute, its culprits): a new attempt, or the end."""
        need(self.phase == "Iterating", "WrongPhase")
        need(self.step != "Aggregating", "WrongStep")
        need(block > self.deadline, "DeadlineNotPassed")
        dispute, missing = self.step == "Disputing", self.missing
        for p in missing:
            self.drop(p, "MissedOpening" if dispute else "MissedSubmission")
        culprits = [p for p in self.active if p in self.culprits] if dispute else []
        for p in culprits:
            self.drop(p, "Culprit")
        if dispute and not missing and not culprits:
            self.close("DisputeUnresolved")
        elif len(self.active) < MIN_PARTICIPANTS:
            self.close("TooFewParticipants")
        else:
            self.attempt += 1
            self.begin_attempt(block)

    def decrypted(self, block: int, how: str, m: int, rho: int, prices: list[int]) -> list[int]:
        """publish, conclude or dispute (``how``) of the decryption (m, rho); the decoded sums."""
        need(self.phase == "Iterating", "WrongPhase")
        need(self.step == "Aggregating", "WrongStep")
        need(block <= self.deadline, "DeadlinePassed")
        need(self.aggregate is not None, "NotAggregated")
        need(m < self.n, "PlaintextOutOfRange")
        need(0 < rho < self.n, "OpeningNotCanonical")
        sums, check = LAYOUT.unpack(m)
        need(check != 0 if how == "dispute" else check == 0, "MasksCancel" if how == "dispute" else "MasksDoNotCancel")
        if self.windows.challenge:
            self.openings[aggregate_key(self.iteration, self.attempt)] = (self.aggregate, m, rho)
        if how == "publish":
            need(self.iteration + 1 < self.max_iterations, "IterationCapReached")
            need(all(f <= p <= c for p, f, c in zip(prices, FLOOR, CAP)), "PriceOutOfBand")
            self.prices, self.iteration, self.attempt = list(prices), self.iteration + 1, 0
            self.begin_attempt(block)
        elif how == "conclude":
            self.final_sums, self.phase = sums, "Concluded"
            self.challenge_until = block + self.windows.challenge
            self.reveal_until = self.challenge_until + self.windows.challenge + self.windows.submission
        elif not self.windows.challenge:
            self.close("MasksDoNotCancel")
        else:
            self.submissions, self.claims = 0, {}
            self.step, self.deadline = "Disputing", block + 2 * self.windows.submission
        return sums

    def open_check(self, block: int, who: str, claims: list[int], opened: tuple[bytes, int, int]) -> None:
        need(self.phase == "Iterating", "WrongPhase")
        need(self.step == "Disputing", "WrongStep")
        need(block <= self.deadline - self.windows.submission, "DeadlinePassed")
        need(self.signed(who, claims) == LAYOUT.unpack(opened[1])[1], "CheckOpeningInvalid")
        self.openings[dispute_key(self.iteration, self.attempt, self.pos(who) + 1)] = opened
        self.opened[who], self.claims[who], self.last_claims[who] = self.epoch, list(claims), list(claims)
        self.submissions += 1

    def accuse(self, block: int, accuser: str, accused: str) -> None:
        need(self.phase == "Iterating", "WrongPhase")
        need(self.step == "Disputing", "WrongStep")
        need(block <= self.deadline, "DeadlinePassed")
        need(accused not in self.culprits, "AlreadyCulprit")
        need((accuser, accused) in self.accusable(), "AccusationInvalid")
        self.forfeit(accused, "FalseCheck")

    def challenge(self, block: int, key: int, holds: bool) -> None:
        need(self.windows.challenge != 0, "NoChallenges")
        need(self.phase in ("Iterating", "Concluded"), "WrongPhase")
        need(block <= self.challenge_window(key), "ChallengeWindowClosed")
        if holds:
            return
        if key >> 128 == 0:  # the coordinator's decryption
            self.forfeit(self.coordinator, "CoordinatorFalseOpening")
            self.close("OpeningDisproved")
            return
        who = self.participants[(key & 0xFFFF) - 1]
        self.cleared.discard(who)
        if who not in self.culprits:
            self.forfeit(who, "FalseOpening")

    def reveal(self, block: int, who: str) -> None:
        need(self.phase == "Concluded", "WrongPhase")
        need(block <= self.reveal_until and not self.blame_until, "DeadlinePassed")
        need(block > self.challenge_until, "ChallengeWindowOpen")
        self.revealed[who] = self.subs[who].reveal

    def settle(self, block: int) -> list[tuple[str, int]] | None:
        """The payments booked (None: a blame step began, or the round closed)."""
        error = self.settle_error(block)
        need(error is None, error or "")
        if not self.blame_until:
            withheld = [p for p in self.active if p not in self.revealed and p not in self.culprits]
            for p in withheld:
                self.forfeit(p, "WithheldReveal")
            rows, _, standing = self.settle_rows()
            if withheld or [sum(col) for col in zip(*[r for r, s in zip(rows, standing) if s == "Final"])] != self.final_sums:
                if not self.windows.challenge:
                    self.close("RevealsDoNotAddUp")
                    return None
                self.blame_until = block + self.windows.submission
                self.challenge_until = self.blame_until + self.windows.challenge
                return None
        else:  # the one that did not open cheated, several are named, none: the sums were false
            withheld = [p for p in self.active if p not in self.revealed]
            culprits = [p for p in self.active if p in self.revealed and p in self.culprits]
            unopened = [p for p in self.active if p in self.revealed and p not in self.culprits | self.cleared]
            if len(unopened) == 1 and not withheld and not culprits:
                self.forfeit(unopened[0], "SumCheated")
            elif unopened:
                self.log += [("Blamed", p, 0, "NotOpened") for p in unopened]
            elif not withheld and not culprits:
                self.forfeit(self.coordinator, "CoordinatorFalseSums")
        while True:  # billed more than it holds: it forfeits that and is settled without its reveal
            standing = dict(zip(self.participants, self.settle_rows()[2]))
            over = [p for p, a in self.payments() if standing.get(p, "DroppedSilent") != "DroppedSilent" and self.ledger[p] < a]
            if not over:
                break
            for p in over:
                self.forfeit(p, "Overdrawn")
        paid = self.payments()
        need(all(a <= self.ledger[p] for p, a in paid), "InsufficientDeposit")
        for p, a in paid:
            self.ledger[p] -= a
        self.phase = "Settled"
        self.share([p for p, s in zip(self.participants, self.settle_rows()[2]) if s == "Final"])
        return paid

    def open_blame(self, block: int, who: str, opened: tuple[bytes, int, int]) -> None:
        need(self.phase == "Concluded", "WrongPhase")
        need(self.blame_until != 0, "NoBlame")
        need(block <= self.blame_until, "DeadlinePassed")
        self.cleared.add(who)
        self.openings[blame_key(self.pos(who) + 1)] = opened

    def close_by_coordinator(self) -> None:
        need(self.phase != "Settled", "AlreadySettled")
        need(self.phase != "Closed", "RoundClosed")
        need(self.phase != "Concluded", "WrongPhase")
        self.close("ByCoordinator")

    def cancel(self, block: int) -> None:
        need(self.phase != "Settled", "AlreadySettled")
        need(self.phase != "Closed", "RoundClosed")
        need(block > self.coordinator_deadline(), "DeadlineNotPassed")
        if self.phase == "Concluded":
            self.close("NotSettled")
            return
        if self.participants:  # it kept someone waiting
            self.forfeit(self.coordinator, "CoordinatorLate")
        self.close("CoordinatorLate")


# ----------------------------------------------------------------------------- the machine
class Rounds(RuleBasedStateMachine):
    """Random honest and hostile calls on up to MAX_ROUNDS rounds of one market."""

    def __init__(self) -> None:
        super().__init__()
        self.env = env = shared_env()
        env.chain.revert(env.base)
        self.chain, self.market, self.f = env.chain, env.market, env.market.contract.functions
        self.rounds: list[RoundModel] = []
        self.wallet = Counter({a.address: MINT for a in env.accounts})
        self._block: int | None = None
        self.touched: set[int] = set()  # rounds a transaction went to since the last check
        self.sent = env.chain._sent  # before the example, plus the invariant checks' transactions (not the example's)
        self.events: list[tuple[str, dict, int]] = []  # (name, args, receipt index), not yet checked
        self.logged: dict[int, list[tuple]] = {}  # per round: the LOGGED events, in order
        self.receipts = 0
        self.submitted: set[tuple[int, int, int, str]] = set()
        self.phase_seen: dict[int, str] = {}  # per round: the phase its PhaseChanged events reached
        self.decided: set[tuple] = set()  # (round, step, who or what): decided there (to stay silent, ...)
        self.ended: set[tuple] = set()  # round states already shown to end when the deadlines pass
        self.salts = 0
        STATS.examples += 1

    def teardown(self) -> None:
        STATS.transactions += self.chain._sent - self.sent
        STATS.rounds.update(r.phase for r in self.rounds)
        STATS.flow["pools left unshared"] += sum(1 for r in self.rounds if not r.open and r.pool)
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

    @contextlib.contextmanager
    def _snapshot(self):
        """A chain snapshot reverted afterwards (its transactions are an invariant check's)."""
        snap, sent = self.chain.snapshot(), self.chain._sent
        try:
            yield
        finally:
            self.chain.revert(snap)
            self._block = None
            self.sent += self.chain._sent - sent

    def _tx(self, label: str, fn: Any, sender: Any) -> Any:
        """An honest call: it must go through. Its receipt; its events are kept for the invariants."""
        try:
            receipt = self.chain.transact(fn, sender)
        except ContractRevert as err:
            raise AssertionError(f"honest {label} rejected: {err}") from None
        self._block = None
        self.touched.add(fn.args[0] if fn.fn_name != "createRound" else len(self.rounds) + 1)
        self.receipts += 1
        c = self.market.contract
        for name in ("PhaseChanged", "Submitted", "Payment"):
            self.events += [(name, dict(ev["args"]), self.receipts) for ev in self.chain.events(receipt, c, name)]
        for _, name, args in sorted((ev["logIndex"], name, ev["args"]) for name in LOGGED
                                    for ev in self.chain.events(receipt, c, name)):
            self.logged.setdefault(args["roundId"], []).append(self._entry(name, args))
        for name in ("Disputed", "Accused", "BlameStarted", "OpeningDisproved", "OpeningConfirmed"):
            STATS.flow[name] += len(self.chain.events(receipt, c, name))
        return receipt

    @staticmethod
    def _entry(name: str, a: Any) -> tuple:
        if name == "Dropped":
            return name, a["iteration"], a["participant"], DROP_REASONS[a["reason"]]
        if name == "Blamed":
            STATS.faults[FAULTS[a["fault"]]] += 1
            return name, a["culprit"], int(a["forfeited"]), FAULTS[a["fault"]]
        if name == "Compensated":
            return name, a["account"], int(a["amount"])
        STATS.closed[CLOSE_REASONS[a["reason"]]] += 1
        return name, CLOSE_REASONS[a["reason"]]

    def _reject(self, label: str, name: str, fn: Any, sender: Any) -> None:
        """A call that must revert with the custom error ``name`` and change nothing: the accounts of
        the contracts (every storage slot of the market, its modules and the token) stay as they were."""
        before = fingerprint(self.chain, self.env.contracts)
        try:
            self.chain.transact(fn, sender)
        except ContractRevert as err:
            self._block = None  # a reverted transaction is mined too
            if err.name != name:
                raise AssertionError(f"{label}: expected {name}, got {err}") from None
            if fingerprint(self.chain, self.env.contracts) != before:
                raise AssertionError(f"{label} reverted ({err}) but changed the chain's state") from None
            STATS.rejected[err.name] += 1
            return
        self._block = None
        raise AssertionError(f"{label} was accepted; the model expected {name}")

    def _act(self, r: RoundModel, label: str, fn: Any, sender: Any, change: Callable[[RoundModel, int], Any]) -> tuple:
        """Sends ``fn``: ``change(model, block)``, the round's transition applied to a copy of the
        model, says whether the contract must accept it (the copy becomes the model) or reject it
        (`Revert`). (receipt or None, what ``change`` returned)."""
        trial = copy.deepcopy(r, {id(r.plan): r.plan})
        try:
            result = change(trial, self.block)
        except Revert as err:
            self._reject(label, err.name, fn, sender)
            return None, None
        receipt = self._tx(label, fn, sender)
        r.__dict__.update(trial.__dict__)
        return receipt, result

    def _views(self, rounds: Sequence[RoundModel]) -> dict[int, dict[str, Any]]:
        """Rounds as their views show them (one eth_call): summary, prices, sums, participants, the
        coordinator's deadline and the participants' member records."""
        f, calls = self.f, []
        for r in rounds:
            calls += [(f"{v} {r.rid}", lambda v=v, rid=r.rid: getattr(f, v)(rid))
                      for v in ("roundInfo", "prices", "finalSums", "participants", "coordinatorDeadline")]
            calls += [(f"member {r.rid} {p}", lambda p=p, rid=r.rid: f.member(rid, p)) for p in r.participants]
        out: dict[int, dict[str, Any]] = {r.rid: {} for r in rounds}
        for label, value in self.env.reader.read(calls).items():
            name, rid, *who = label.split(" ")
            out[int(rid)][" ".join([name, *who])] = value
        return out

    # -------------------------------------------------------------- choosing
    def _pick(self, pred: Callable[[RoundModel], bool], i: int) -> RoundModel:
        found = [r for r in self.rounds if pred(r)]
        return found[i % len(found)]

    def _any(self, pred: Callable[[RoundModel], bool]) -> bool:
        return any(pred(r) for r in self.rounds)

    def _addr(self, i: int) -> Any:
        return self.env.accounts[i % len(self.env.accounts)]

    def _holders(self, r: RoundModel) -> list[str]:
        return [a for a, v in r.ledger.items() if v > 0]

    def _unfinished(self, r: RoundModel) -> bool:
        return r.open or bool(self._holders(r))

    def _overdue(self, r: RoundModel) -> bool:
        return r.open and self.block > r.coordinator_deadline()

    def _mb(self, x: int) -> bytes:
        return int(x).to_bytes(self.env.pub.nbytes, "big")

    def _opened(self, ct: bytes, m: int, rho: int) -> bytes:
        return ct + self._mb(m) + self._mb(rho)

    def _register_fn(self, r: RoundModel, who: str, keys: bytes, index: int | None = None, signer: Any = None) -> Any:
        if r.kind != "signed":
            return self.f.register(r.rid, keys)
        index = r.admitted.index(who) if index is None else index
        return self.f.registerSigned(r.rid, keys, index, self.market.member_signature(signer or self.env.coord, r.rid, who, index))

    def _settle_fn(self, r: RoundModel, rows: Sequence[Sequence[int]], hashes: Sequence[bytes]) -> Any:
        return self.f.settle(r.rid, [v for row in rows for v in row], list(hashes))

    # -------------------------------------------------------------- honest (and dishonest) moves
    def _create(self, spec: dict) -> None:
        env, w = self.env, spec["windows"]
        admitted = [env.pool[i].address for i in spec["admitted"]] if spec["kind"] != "open" else []
        params = RoundParams(rule=env.rule, slots=SLOTS, max_iterations=spec["max_iterations"], price_floor=FLOOR,
                             price_cap=CAP, grid_account=env.grid.address, n=env.pub.n, slot_bits=SLOT_BITS,
                             slot_width=SLOT_WIDTH, mechanism="fuzz", members=admitted if spec["kind"] == "allow" else [],
                             signed_members=spec["kind"] == "signed", collateral=spec["collateral"], bond=spec["bond"],
                             windows=w)
        receipt = self._tx("createRound", self.f.createRound(params.as_tuple()), env.coord)
        rid = len(self.rounds) + 1
        self.rounds.append(RoundModel(rid, spec["kind"], admitted, w, spec["max_iterations"], spec["collateral"],
                                      spec["bond"], spec["hostile"], env.coord.address, env.grid.address, env.pub.n,
                                      secagg.round_context(self.market.address, rid, self.chain.chain_id),
                                      deadline=receipt["blockNumber"] + w.registration))
        self.phase_seen[rid] = "Registering"

    def _deposit(self, r: RoundModel, items: Sequence[tuple[str, int]]) -> None:
        for who, amount in items:
            if self._act(r, "deposit", self.f.deposit(r.rid, amount), self.env.by_address(who),
                         lambda t, B: t.deposit(who, amount))[0]:
                self.wallet[who] -= amount

    def _submit(self, r: RoundModel, who: str, values: list[int]) -> None:
        """``who`` submits ``values``: honestly, or as the round's hostile participant does."""
        pub, k = self.env.pub, r.iteration
        kind = r.hostile if r.hostile and who == r.participants[1] else "honest"
        mask = r.mask(who)
        if kind == "garble":
            mask = [(v + 1) % MODULUS for v in mask]
        c = pub.encrypt(LAYOUT.pack([v + 1 for v in values] if kind == "cheat" else values, mask))
        victims = [s.ct for p, s in r.subs.items() if p != who]
        if kind == "copy" and victims:  # another's latest ciphertext, re-randomised
            c = pub.add(int.from_bytes(victims[-1], "big"), pub.encrypt(0))
        elif kind in ("one-plus-n", "minus-one"):
            c = 1 + pub.n if kind == "one-plus-n" else pub.n_sq - 1
        kind = "honest" if kind == "copy" and not victims else kind
        point = secagg.multiply(secagg.GENERATOR if kind == "bad-point" else r.plan.point(k + 1),
                                secagg.random_scalar() if kind == "bad-point" else r.secret[who])
        self.salts += 1
        salt = keccak(b"salt" + self.salts.to_bytes(32, "big"))
        sub = Sub(k, r.attempt, kind, list(values), salt, pub.to_bytes(c), commitment(r.rid, k, who, values, salt), point)
        self._act(r, "submit", self.f.submit(r.rid, k, sub.ct, sub.commitment, b"", point), self.env.by_address(who),
                  lambda t, B: t.submit(B, who, sub))

    def _advance(self, r: RoundModel) -> None:
        self._mine_to(max(self.block, r.deadline + 1))
        self._act(r, "advance", self.f.advance(r.rid, r.missing), self.env.outsider, lambda t, B: t.advance(B))

    def _aggregate(self, r: RoundModel, chunk: int, caller: Any) -> None:
        subs, so_far = list(r.current.values()), b""
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

    def _decrypt(self, r: RoundModel, how: str, m: int, rho: int, prices: list[int]) -> None:
        """The coordinator publishes, concludes or disputes the decryption (m, rho) of the aggregate."""
        agg, mm, rr = r.aggregate, self._mb(m), self._mb(rho)
        fn = (self.f.publish(r.rid, agg, mm, rr, prices) if how == "publish" else
              getattr(self.f, how)(r.rid, agg, mm, rr))
        receipt, sums = self._act(r, how, fn, self.env.coord, lambda t, B: t.decrypted(B, how, m, rho, prices))
        if receipt:
            ev = self.chain.events(receipt, self.market.contract, {"publish": "Published", "conclude": "Concluded",
                                                                   "dispute": "Disputed"}[how])[0]["args"]
            got, want = (ev["check"], LAYOUT.unpack(m)[1]) if how == "dispute" else (list(ev["sums"]), sums)
            assert got == want, f"{how}: the chain decoded {got}, the model {want}"

    def _open_check(self, r: RoundModel, who: str, data: Any) -> None:
        """``who`` opens its submission in the dispute: honestly, with false claims (that add up to its
        plaintext's check slot, so that only a neighbour's proof shows them false), with a false
        plaintext (a copy, which knows no opening), or not at all."""
        s = r.subs[who]
        choices = {"copy": ["silent", "forge"], "one-plus-n": ["open", "silent"], "minus-one": ["open", "silent"],
                   "garble": ["open", "silent"]}.get(s.kind, ["open"] * 6 + ["lie", "silent"])
        choice = data.draw(st.sampled_from(choices), label="opening")
        if choice == "silent":
            self.decided.add((r.rid, r.epoch, who))
            return
        m, rho = self.env.priv.opening(int.from_bytes(s.ct, "big"))
        if choice == "forge":
            m, rho = LAYOUT.pack(s.values, r.mask(who)), 1 + secrets.randbelow(r.n - 1)
        claims = [r.provable(who, j) for j in r.neighbours(who)]
        delta = (LAYOUT.unpack(m)[1] - r.signed(who, claims)) % MODULUS
        if delta or choice == "lie":  # the first claim moved by the difference (a lie: by 1, and back on the second)
            i, nb = r.pos(who), [r.pos(j) for j in r.neighbours(who)]
            claims[0] = (claims[0] + r.plan.sign(i, nb[0]) * (delta or 1)) % MODULUS
            if not delta:
                claims[1] = (claims[1] - r.plan.sign(i, nb[1])) % MODULUS
        fn = self.f.openCheck(r.rid, s.commitment, self._opened(s.ct, m, rho), claims)
        self._act(r, "openCheck", fn, self.env.by_address(who), lambda t, B: t.open_check(B, who, claims, (s.ct, m, rho)))

    def _challenge(self, r: RoundModel, key: int, caller: Any) -> None:
        self.decided.add((r.rid, "challenged", key))
        ct, m, rho = r.openings[key]
        holds = self.env.pub.verify_opening(int.from_bytes(ct, "big"), m, rho)
        fn = self.f.challengeOpening(r.rid, key, self._opened(ct, m, rho), b"", self.env.pub.nbytes // 32)
        receipt, _ = self._act(r, "challenge", fn, caller, lambda t, B: t.challenge(B, key, holds))
        if receipt:
            held = bool(self.chain.events(receipt, self.market.contract, "OpeningConfirmed"))
            assert held == holds, f"challenge of {key:#x}: held={held}, opening honest={holds}"

    def _watch(self, r: RoundModel, data: Any) -> bool:
        """Someone challenges (mostly) each false opening not yet challenged in its window; whether it did."""
        false = [key for key, (ct, m, rho) in r.openings.items() if (r.rid, "challenged", key) not in self.decided
                 and self.block <= r.challenge_window(key) and not self.env.pub.verify_opening(int.from_bytes(ct, "big"), m, rho)]
        chosen = [key for key in false if data.draw(MOSTLY, label="challenge")]
        for key in chosen:
            if r.open:
                self._challenge(r, key, self.env.outsider)
        return bool(chosen)

    def _open_blame(self, r: RoundModel, who: str, data: Any) -> None:
        """``who`` opens its final ciphertext and proves its masks; a cheat cannot (it may forge a
        plaintext, which only a challenge shows false) and anyone may stay silent."""
        s = r.subs[who]
        m, rho = self.env.priv.opening(int.from_bytes(s.ct, "big"))
        mask = r.mask(who)
        truthful = LAYOUT.unpack(m, mask) == (s.values, 0)
        choice = data.draw(st.sampled_from(["open"] * 6 + ["silent"] if truthful else ["forge", "silent"]), label="blame")
        if choice == "silent":
            self.decided.add((r.rid, "blame", who))
            return
        if choice == "forge":
            m, rho = LAYOUT.pack(s.values, mask), 1 + secrets.randbelow(r.n - 1)
        fn = self.f.openBlame(r.rid, s.values, self._opened(s.ct, m, rho), r.masks(who).blame_masks(r.iteration, *r.mask_args()))
        self._act(r, "openBlame", fn, self.env.by_address(who), lambda t, B: t.open_blame(B, who, (s.ct, m, rho)))

    def _settle(self, r: RoundModel, top_up: bool) -> None:
        """Anyone settles with the reveals (the short payers top up their deposits first, if ``top_up``)."""
        if top_up:
            self._deposit(r, [(p, a - r.ledger[p]) for p, a in r.payments() if a > r.ledger[p]])
        receipt, paid = self._act(r, "settle", self._settle_fn(r, *r.settle_rows()[:2]), self.env.outsider,
                                  lambda t, B: t.settle(B))
        if receipt and paid is not None:
            got = [(ev["args"]["account"], int(ev["args"]["amount"]))
                   for ev in self.chain.events(receipt, self.market.contract, "Payment")]
            assert got == paid, f"payments {got}, model {paid}"

    def _withdraw(self, r: RoundModel, accounts: Sequence[str]) -> None:
        for who in accounts:
            receipt, amount = self._act(r, "withdraw", self.f.withdraw(r.rid), self.env.by_address(who),
                                        lambda t, B: t.withdraw(who))
            got = self.chain.events(receipt, self.market.contract, "Withdrawn")[0]["args"]["amount"]
            assert got == amount, f"withdrew {got}, ledger held {amount}"
            self.wallet[who] += amount

    def _cancel(self, r: RoundModel, caller: Any, wait: bool = False) -> None:
        """Anyone cancels (``wait``: after the coordinator's deadline)."""
        if wait:
            self._mine_to(max(self.block, r.coordinator_deadline() + 1))
        self._act(r, "cancel", self.f.cancel(r.rid), caller, lambda t, B: t.cancel(B))

    # -------------------------------------------------------------- a round's next honest moves
    def _next_move(self, r: RoundModel, data: Any) -> None:
        if r.phase == "Registering":
            self._registering(r, data)
        elif r.phase == "Iterating":
            {"Submitting": self._submitting, "Aggregating": self._aggregating, "Disputing": self._disputing}[r.step](r, data)
        elif r.phase == "Concluded":
            self._concluded(r, data)
        else:
            self._withdraw(r, self._holders(r))

    def _registering(self, r: RoundModel, data: Any) -> None:
        eligible = r.eligible([a.address for a in self.env.pool])
        if self.block <= r.deadline and eligible and (len(r.participants) < MIN_PARTICIPANTS or data.draw(st.booleans())):
            more = max(MIN_PARTICIPANTS - len(r.participants), 1) + data.draw(st.integers(0, 1))
            for who in data.draw(st.permutations(eligible))[:more]:
                if self.block <= r.deadline:
                    self._act(r, "register", self._register_fn(r, who, r.keys(who)), self.env.by_address(who),
                              lambda t, B: t.register(B, who))
        short = [(p, r.collateral - r.ledger[p]) for p in r.participants if r.ledger[p] < r.collateral]
        short += [(r.coordinator, r.bond - r.ledger[r.coordinator])] if r.ledger[r.coordinator] < r.bond else []
        self._deposit(r, [item for item in short if data.draw(MOSTLY, label="deposits")])
        if self.block <= r.coordinator_deadline() and len(r.participants) >= MIN_PARTICIPANTS:
            prices = data.draw(PRICES)
            self._act(r, "start", self.f.start(r.rid, prices), self.env.coord, lambda t, B: t.start(B, prices))
        elif self.block > r.deadline:
            self._cancel(r, self.env.outsider, wait=True)

    def _submitting(self, r: RoundModel, data: Any) -> None:
        if self.block > r.deadline:
            self._advance(r)
            return
        some = data.draw(st.booleans()) and data.draw(INDEX) % len(r.missing) + 1  # some or all of those missing
        for who in data.draw(st.permutations(r.missing))[:some or len(r.missing)]:
            if self.block <= r.deadline:
                self._submit(r, who, data.draw(VALUES))

    def _aggregating(self, r: RoundModel, data: Any) -> None:
        if self.block > r.deadline:
            self._cancel(r, self.env.outsider, wait=True)
            return
        if r.aggregate is None:
            left = max(r.deadline - self.block, 1)  # blocks before the coordinator must decrypt
            self._aggregate(r, max(1, -(-len(r.current) // left)), self._addr(data.draw(INDEX)))
        m, rho = self.env.priv.opening(int.from_bytes(r.aggregate, "big"))
        check, how = LAYOUT.unpack(m)[1], data.draw(COORDINATOR)
        assert bool(check) == r.masks_break(), f"round {r.rid}: check slot {check}, but masks_break={r.masks_break()}"
        if check or how == "false dispute":
            self._decrypt(r, "dispute", m if check else m + CHECK_SLOT, rho, [])
        else:
            conclude = r.iteration + 1 >= r.max_iterations or data.draw(st.booleans())
            self._decrypt(r, "conclude" if conclude else "publish", m + (how == "false sums"), rho, data.draw(PRICES))

    def _disputing(self, r: RoundModel, data: Any) -> None:
        waiting = [p for p in r.current if p not in r.claims and (r.rid, r.epoch, p) not in self.decided]
        if self.block <= r.deadline - r.windows.submission and waiting:
            for who in waiting:
                if self.block <= r.deadline - r.windows.submission:
                    self._open_check(r, who, data)
        elif (r.rid, r.epoch, "accused") not in self.decided and self.block <= r.deadline:
            self.decided.add((r.rid, r.epoch, "accused"))
            for i, j in r.accusable():
                if (i, j) in r.accusable() and self.block <= r.deadline and data.draw(MOSTLY, label="accuse"):
                    fn = self.f.accuse(r.rid, j, r.claims[i], r.claims[j], r.masks(i).accusation(r.iteration, r.y(j)))
                    self._act(r, "accuse", fn, self.env.by_address(i), lambda t, B: t.accuse(B, i, j))
            self._watch(r, data)
        else:
            self._advance(r)

    def _concluded(self, r: RoundModel, data: Any) -> None:
        if self.block <= r.challenge_until and not r.blame_until:
            if not self._watch(r, data):
                self._mine_to(r.challenge_until + 1)
            return
        if not r.blame_until:
            waiting = [p for p in r.participants if p in r.subs and p not in r.revealed and (r.rid, "reveal", p) not in self.decided]
            if waiting and self.block <= r.reveal_until:
                for who in waiting:  # those that stayed reveal (mostly), the dropped ones half the time
                    if self.block > r.reveal_until:
                        return
                    if data.draw(but_one_in(10 if who not in r.dropped else 2), label="reveals"):
                        rv = r.subs[who].reveal
                        self._act(r, "reveal", self.f.reveal(r.rid, rv.values, rv.salt, rv.ciphertext_hash),
                                  self.env.by_address(who), lambda t, B: t.reveal(B, who))
                    else:
                        self.decided.add((r.rid, "reveal", who))
                return
            if any(p not in r.revealed for p in r.active):
                self._mine_to(max(self.block, r.reveal_until + 1))
        else:
            waiting = [p for p in r.active if p in r.revealed and p not in r.culprits | r.cleared
                       and (r.rid, "blame", p) not in self.decided]
            if waiting and self.block <= r.blame_until:
                for who in waiting:
                    if self.block <= r.blame_until:
                        self._open_blame(r, who, data)
                return
            if self._watch(r, data):
                return
            self._mine_to(max(self.block, r.challenge_until + 1))
        self._settle(r, data.draw(MOSTLY, label="top up"))

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

    @precondition(lambda self: self._any(lambda r: r.open))
    @rule(i=INDEX, who=st.lists(st.integers(0, POOL + 2), min_size=1, max_size=4, unique=True),
          amount=st.sampled_from(DEPOSITS))
    def deposit(self, i, who, amount):
        STATS.steps += 1
        self._deposit(self._pick(lambda r: r.open, i), [(self._addr(j).address, amount) for j in who])

    @rule(blocks=st.integers(1, 8))
    def mine(self, blocks):
        """Time passes."""
        STATS.steps += 1
        self._mine_to(self.block + blocks)

    @precondition(lambda self: self._any(lambda r: r.open))
    @rule(i=INDEX, give_up=INDEX)
    def close(self, i, give_up):
        """The coordinator gives up (one time in sixteen; else it carries on)."""
        STATS.steps += 1
        if give_up % 16 == 5:
            r = self._pick(lambda r: r.open, i)
            self._act(r, "close", self.f.close(r.rid), self.env.coord, lambda t, B: t.close_by_coordinator())

    @precondition(lambda self: self._any(self._overdue))
    @rule(i=INDEX, caller=INDEX)
    def cancel(self, i, caller):
        """The coordinator missed its deadline: anyone cancels."""
        STATS.steps += 1
        self._cancel(self._pick(self._overdue, i), self._addr(caller))

    @precondition(lambda self: self._any(lambda r: bool(r.openings) and r.windows.challenge and r.open))
    @rule(i=INDEX, key=INDEX, caller=INDEX)
    def challenge(self, i, key, caller):
        """Anyone challenges a posted opening (a true one holds; one out of its window is rejected)."""
        STATS.steps += 1
        r = self._pick(lambda r: bool(r.openings) and r.windows.challenge and r.open, i)
        self._challenge(r, sorted(r.openings)[key % len(r.openings)], self._addr(caller))

    @precondition(lambda self: self._any(self._unfinished))
    @rule(i=INDEX, moves=INDEX.map(lambda x: 12 - x % 12), data=st.data())
    def progress(self, i, moves, data):
        """A round's next moves (so that random runs get far): register, deposit and start, submit
        (honestly or as its hostile participant does) and drop the late, aggregate and decrypt
        (honestly or not), open, accuse and challenge in a dispute and drop its culprits, reveal,
        settle (after a blame step), withdraw; a late coordinator is cancelled. Between the moves,
        hostile calls aimed at what the round is doing."""
        STATS.steps += 1
        r = self._pick(self._unfinished, i)
        for _ in range(moves):
            if self._unfinished(r):
                self._next_move(r, data)
            if r.open and data.draw(st.booleans(), label="hostile"):  # in the midst of it, a hostile call aimed at it
                self._hostile(self._attacks(r), data.draw(INDEX), aimed=True)

    @precondition(lambda self: self._any(self._unfinished))
    @rule(data=st.data())
    def move_on(self, data):
        """Every round makes its next move (a second way in, so that swarm testing, which turns a
        random set of rules off for a whole example, seldom stops the rounds)."""
        STATS.steps += 1
        for r in self.rounds:
            if self._unfinished(r):
                self._next_move(r, data)

    @rule(i=INDEX, attack=INDEX, aimed=st.booleans())
    def hostile(self, i, attack, aimed):
        """A call that must fail: any of `_attacks` of a round (mostly one under way), or, ``aimed``,
        one aimed at what an open round is doing now (not a call any round attracts)."""
        STATS.steps += 1
        busy = [r for r in self.rounds if (r.open if aimed else r.phase in ("Iterating", "Concluded"))]
        among = busy if busy and (aimed or i % 4) else self.rounds
        self._hostile(self._attacks(among[i % len(among)] if among else None), attack, aimed)

    def _hostile(self, attacks: list, choice: int, aimed: bool) -> None:
        attacks = [a for a in attacks if a[1] not in GENERIC] or attacks if aimed else attacks
        label, name, fn, sender = attacks[(choice * 40503 + 12345) % len(attacks)]  # 0, drawn often, lands anywhere
        self._reject(label, name, fn, sender)
        STATS.hostile[label] += 1

    # -------------------------------------------------------------- hostile calls
    def _attacks(self, r: RoundModel | None) -> list[tuple[str, str, Any, Any]]:
        """Every hostile call that applies to round ``r`` now: (label, expected error, call, sender)."""
        env, f, B = self.env, self.f, self.block
        coord, outsider, grid = env.coord, env.outsider, env.grid
        out: list[tuple[str, str, Any, Any]] = [
            ("withdraw from an unknown round", "UnknownRound", f.withdraw(len(self.rounds) + 1), outsider)]
        if r is None:
            return out
        rid, n, L, k, mb, acct = r.rid, env.pub.n, env.pub.nbytes, r.iteration, self._mb, env.by_address
        add = lambda label, name, fn, sender: out.append((label, name, fn, sender))  # noqa: E731
        someone = acct(r.participants[0]) if r.participants else outsider
        dummy = bytes(4 * L)

        # the ledger and the coordinator's powers
        if r.open:
            add("deposit nothing", "ZeroAmount", f.deposit(rid, 0), someone)
            add("deposit more than the wallet holds", "ERC20InsufficientBalance",
                f.deposit(rid, self.wallet[outsider.address] + 1), outsider)
            add("withdraw before the end", "WrongPhase", f.withdraw(rid), acct((self._holders(r) or [someone.address])[0]))
            if B <= r.coordinator_deadline():
                add("cancel early", "DeadlineNotPassed", f.cancel(rid), someone)
            if r.phase == "Concluded":
                add("close after conclusion", "WrongPhase", f.close(rid), coord)
        else:
            end = "AlreadySettled" if r.phase == "Settled" else "RoundClosed"
            add("deposit into a finished round", end, f.deposit(rid, 1), someone)
            add("close a finished round", end, f.close(rid), coord)
            add("cancel a finished round", end, f.cancel(rid), outsider)
            for a in [a for a in env.accounts if r.ledger[a.address] == 0][:1]:
                add("withdraw an empty balance", "ZeroAmount", f.withdraw(rid), a)
        add("close by a non-coordinator", "NotCoordinator", f.close(rid), someone)
        add("start by a non-coordinator", "NotCoordinator", f.start(rid, FLOOR), someone)
        add("publish by a non-coordinator", "NotCoordinator", f.publish(rid, b"", mb(1), mb(1), FLOOR), someone)
        add("conclude by a non-coordinator", "NotCoordinator", f.conclude(rid, b"", mb(1), mb(1)), outsider)
        add("dispute by a non-coordinator", "NotCoordinator", f.dispute(rid, b"", mb(1), mb(1)), someone)

        # registration
        if r.phase != "Registering":
            add("start twice", "WrongPhase", f.start(rid, FLOOR), coord)
            for who in r.participants[-1:]:
                add("register after the start", "WrongPhase", self._register_fn(r, who, r.keys(who)), acct(who))
        else:
            eligible = r.eligible([a.address for a in env.pool])
            for who in eligible[:1]:
                good = r.keys(who)
                if B > r.deadline:
                    add("register late", "DeadlinePassed", self._register_fn(r, who, good), acct(who))
                    continue
                add("register A without Y(0)", "KeysLength", self._register_fn(r, who, good[:33]), acct(who))
                for label, point in BAD_POINTS.items():
                    add(f"register a key with {label}", "MaskPointInvalid", self._register_fn(r, who, point + good[33:]), acct(who))
                    add(f"register a Y(0) with {label}", "MaskPointInvalid", self._register_fn(r, who, good[:33] + point), acct(who))
            if B <= r.deadline:
                for who in r.participants[:1]:
                    add("register twice", "AlreadyRegistered", self._register_fn(r, who, r.keys(who)), acct(who))
                if r.kind != "allow":
                    index = {"index": 0} if r.kind == "signed" else {}
                    add("the coordinator registers", "NotMember", self._register_fn(r, coord.address, r.keys(coord.address), **index), coord)
                    add("the grid account registers", "GridAccountCannotRegister",
                        self._register_fn(r, grid.address, r.keys(grid.address), **index), grid)
            keys = r.keys(outsider.address)
            if r.kind == "allow":
                add("a non-member registers", "NotMember", f.register(rid, keys), outsider)
                add("register with a signature in an allow-list round", "BadSignature", f.registerSigned(rid, keys, 0, bytes(65)), outsider)
            elif r.kind == "signed":
                add("register without a signature", "BadSignature", f.register(rid, keys), outsider)
                add("register with a stranger's signature", "BadSignature",
                    self._register_fn(r, outsider.address, keys, index=0, signer=env.op), outsider)
                for who in eligible[:1]:
                    signed = self._register_fn(r, who, r.keys(who))
                    add("register with another index than signed", "BadSignature",
                        f.registerSigned(rid, signed.args[1], signed.args[2] + 1, signed.args[3]), acct(who))
                    add("register with another's signature", "BadSignature", signed, outsider)
            if B > r.coordinator_deadline():
                add("start late", "DeadlinePassed", f.start(rid, FLOOR), coord)
            elif r.ledger[coord.address] < r.bond:
                add("start without the bond", "InsufficientDeposit", f.start(rid, FLOOR), coord)
            elif sum(r.ledger[p] >= r.collateral for p in r.participants) < MIN_PARTICIPANTS:
                add("start with too few collateralised participants", "TooFewParticipants", f.start(rid, FLOOR), coord)
            else:
                add("start below the price floor", "PriceOutOfBand", f.start(rid, [FLOOR[0] - 1, FLOOR[1]]), coord)
                add("start with a price too few", "PriceLength", f.start(rid, FLOOR[:1]), coord)

        # submissions and every step's out-of-turn calls
        ct = env.pub.to_bytes(env.pub.encrypt(LAYOUT.pack([1] * SLOTS)))

        def submit(who: Any, c: bytes = ct, iteration: int = k, pair: bytes = b"", point: bytes = SOME_POINT) -> Any:
            return f.submit(rid, iteration, c, commitment(rid, iteration, who.address, [1] * SLOTS, b"\1" * 32), pair, point)

        step = r.step if r.phase == "Iterating" else None
        if step is None:
            add("submit outside the iterations", "WrongPhase", submit(someone), someone)
            add("advance outside the iterations", "WrongPhase", f.advance(rid, []), outsider)
            add("aggregate outside the iterations", "WrongPhase", f.aggregate(rid, b"", [ct], [bytes(32)]), outsider)
            add("conclude outside the iterations", "WrongPhase", f.conclude(rid, b"", mb(1), mb(1)), coord)
            add("open a check outside a dispute", "WrongPhase", f.openCheck(rid, bytes(32), dummy, []), someone)
            add("accuse outside a dispute", "WrongPhase", f.accuse(rid, someone.address, [], [], b""), someone)
        else:
            if step != "Submitting":
                add("submit out of turn", "WrongStep", submit(acct(r.active[0])), acct(r.active[0]))
            if step == "Aggregating":
                add("advance while aggregating", "WrongStep", f.advance(rid, []), outsider)
            else:
                add("aggregate out of turn", "WrongStep", f.aggregate(rid, b"", [ct], [bytes(32)]), outsider)
                add("publish out of turn", "WrongStep", f.publish(rid, b"", mb(1), mb(1), r.prices), coord)
                add("dispute out of turn", "WrongStep", f.dispute(rid, b"", mb(1), mb(1)), coord)
            if step != "Disputing":
                add("open a check out of turn", "WrongStep", f.openCheck(rid, bytes(32), dummy, []), someone)
                add("accuse out of turn", "WrongStep", f.accuse(rid, someone.address, [], [], b""), someone)
        if step == "Submitting" and B > r.deadline:
            missing = r.missing
            add("submit late", "DeadlinePassed", submit(acct(missing[0])), acct(missing[0]))
            add("advance leaving out a late participant", "MissingCount", f.advance(rid, missing[:-1]), outsider)
            if r.current:
                add("advance dropping one that submitted", "NotMissing",
                    f.advance(rid, sorted([*missing, *r.current], key=r.participants.index)), outsider)
            if len(missing) >= 2:
                add("advance out of registration order", "NotMissing", f.advance(rid, missing[::-1]), outsider)
                add("advance naming one twice", "NotMissing", f.advance(rid, [missing[0], *missing]), outsider)
        elif step == "Submitting":
            add("advance before the deadline", "DeadlineNotPassed", f.advance(rid, r.missing), outsider)
            add("submit for the next iteration", "WrongIteration", submit(someone, iteration=k + 1), someone)
            add("submit without being registered", "NotRegistered", submit(outsider), outsider)
            for p in list(r.dropped)[:1]:
                add("submit after being dropped", "NotActive", submit(acct(p)), acct(p))
            for p in list(r.current)[:1]:
                add("submit twice in an attempt", "AlreadySubmitted", submit(acct(p)), acct(p))
            who = acct(r.missing[0])
            for label, c, name in [("a ciphertext of one", (1).to_bytes(2 * L, "big"), "CiphertextIsOne"),
                                   ("the ciphertext n", n.to_bytes(2 * L, "big"), "CiphertextMultipleOfN"),
                                   ("a multiple of n", (n * (k + 2)).to_bytes(2 * L, "big"), "CiphertextMultipleOfN"),
                                   ("a zero ciphertext", bytes(2 * L), "CiphertextOutOfRange"),
                                   ("the ciphertext n^2", (n * n).to_bytes(2 * L, "big"), "CiphertextOutOfRange"),
                                   ("a short ciphertext", ct[:L], "CiphertextLength")]:
                add(f"submit {label}", name, submit(who, c), who)
            add("submit pair messages in a round without lanes", "PairMessagesLength", submit(who, pair=bytes(8)), who)
            add("submit no next mask point", "MaskPointInvalid", submit(who, point=b""), who)
            for label, point in BAD_POINTS.items():
                add(f"submit a next mask point with {label}", "MaskPointInvalid", submit(who, point=point), who)
        elif step == "Aggregating":
            self._aggregation_attacks(r, add)
        elif step == "Disputing":
            self._dispute_attacks(r, add)
        if r.phase == "Concluded":
            self._end_attacks(r, add)
        else:
            add("reveal out of turn", "WrongPhase", f.reveal(rid, [0] * SLOTS, bytes(32), bytes(32)), someone)
            add("open blame out of turn", "WrongPhase", f.openBlame(rid, [0] * SLOTS, dummy, b""), someone)
            add("settle twice" if r.phase == "Settled" else "settle early",
                "AlreadySettled" if r.phase == "Settled" else "WrongPhase", f.settle(rid, [], []), outsider)

        # challenges
        if not r.windows.challenge:
            add("challenge in a round without challenges", "NoChallenges", f.challengeOpening(rid, 0, dummy, b"", 1), outsider)
        elif r.phase in ("Iterating", "Concluded"):
            add("challenge an opening never posted", "ChallengeMismatch",
                f.challengeOpening(rid, aggregate_key(k + 9, 0), dummy, b"", 1), outsider)
            for key, o in list(r.openings.items())[:1]:
                add("challenge in zero steps", "ChallengeMismatch", f.challengeOpening(rid, key, self._opened(*o), b"", 0), outsider)
            for key, o in [(key, o) for key, o in r.openings.items() if B > r.challenge_window(key)][:1]:
                add("challenge after the window", "ChallengeWindowClosed",
                    f.challengeOpening(rid, key, self._opened(*o), b"", L // 32), outsider)
        else:
            add("challenge outside the iterations", "WrongPhase", f.challengeOpening(rid, 0, dummy, b"", 1), outsider)
        return out

    def _aggregation_attacks(self, r: RoundModel, add: Callable) -> None:
        """False aggregates, and false or late decryptions."""
        f, rid, n, mb, coord, outsider = self.f, r.rid, self.env.pub.n, self._mb, self.env.coord, self.env.outsider
        subs = list(r.current.values())
        cts, cms = [s.ct for s in subs], [s.commitment for s in subs]
        if r.aggregate is not None:
            add("aggregate twice", "AlreadyAggregated", f.aggregate(rid, b"", cts, cms), outsider)
        else:
            add("aggregate a tampered commitment", "SubmissionMismatch", f.aggregate(rid, b"", cts, [keccak(cms[0]), *cms[1:]]), outsider)
            add("aggregate a ciphertext too many", "SubmissionCount", f.aggregate(rid, b"", [*cts, cts[0]], [*cms, cms[0]]), outsider)
            add("aggregate from a made-up product", "AggregateMismatch", f.aggregate(rid, cts[0], cts, cms), outsider)
            add("aggregate out of order", "SubmissionMismatch", f.aggregate(rid, b"", cts[::-1], cms[::-1]), outsider)
        agg = r.aggregate or cts[0]
        m, rho = self.env.priv.opening(int.from_bytes(agg, "big"))
        publish = lambda mm, rr, agg=agg, prices=r.prices: f.publish(rid, agg, mb(mm), mb(rr), prices)  # noqa: E731
        if self.block > r.deadline:
            add("publish late", "DeadlinePassed", publish(m, rho), coord)
            add("conclude late", "DeadlinePassed", f.conclude(rid, agg, mb(m), mb(rho)), coord)
            add("dispute late", "DeadlinePassed", f.dispute(rid, agg, mb(m), mb(rho)), coord)
            return
        add("publish a short plaintext", "PlaintextLength", f.publish(rid, agg, mb(m)[1:], mb(rho), r.prices), coord)
        if r.aggregate is None:
            add("publish before the aggregate", "NotAggregated", publish(m, rho), coord)
            return
        add("publish another aggregate", "AggregateMismatch", publish(m, rho, agg=cts[0][::-1]), coord)
        add("publish a plaintext >= n", "PlaintextOutOfRange", publish(n, rho), coord)
        add("publish a zero opening", "OpeningNotCanonical", publish(m, 0), coord)
        add("conclude an opening >= n", "OpeningNotCanonical", f.conclude(rid, agg, mb(m), mb(n)), coord)
        if LAYOUT.unpack(m)[1]:
            add("publish when the masks do not cancel", "MasksDoNotCancel", publish(m, rho), coord)
            add("conclude when the masks do not cancel", "MasksDoNotCancel", f.conclude(rid, agg, mb(m), mb(rho)), coord)
        else:
            add("dispute when the masks cancel", "MasksCancel", f.dispute(rid, agg, mb(m), mb(rho)), coord)
            if r.iteration + 1 >= r.max_iterations:
                add("publish at the iteration cap", "IterationCapReached", publish(m, rho), coord)
            else:
                add("publish prices above the cap", "PriceOutOfBand", publish(m, rho, prices=[CAP[0] + 1, CAP[1]]), coord)

    def _dispute_attacks(self, r: RoundModel, add: Callable) -> None:
        """False, late and repeated openings and accusations, and false proofs."""
        f, rid, k, acct, outsider = self.f, r.rid, r.iteration, self.env.by_address, self.env.outsider
        dummy = bytes(4 * self.env.pub.nbytes)
        openers, waiting = list(r.claims), [p for p in r.current if p not in r.claims]
        if self.block > r.deadline - r.windows.submission:
            for p in waiting[:1]:
                add("open a check after the openings", "DeadlinePassed", f.openCheck(rid, r.subs[p].commitment, dummy, []), acct(p))
        else:
            add("open a check as an outsider", "NotInDispute", f.openCheck(rid, bytes(32), dummy, []), outsider)
            for p in list(r.dropped)[:1]:
                add("open a check after being dropped", "NotInDispute", f.openCheck(rid, bytes(32), dummy, []), acct(p))
            for p in openers[:1]:
                add("open a check twice", "AlreadyOpened", f.openCheck(rid, r.subs[p].commitment, dummy, r.claims[p]), acct(p))
            for p in waiting[:1]:
                s = r.subs[p]
                m, rho = self.env.priv.opening(int.from_bytes(s.ct, "big"))
                claims = [r.provable(p, j) for j in r.neighbours(p)]
                wrong = (LAYOUT.unpack(m)[1] - r.signed(p, claims) + 1) % MODULUS or 1  # then the sum misses by 1 or 2
                claims[0] = (claims[0] + r.plan.sign(r.pos(p), r.pos(r.neighbours(p)[0])) * wrong) % MODULUS
                opened = self._opened(s.ct, m, rho)
                add("open a short opening", "OpeningLength", f.openCheck(rid, s.commitment, opened[:-1], claims), acct(p))
                add("open another commitment", "CheckOpeningInvalid", f.openCheck(rid, keccak(s.commitment), opened, claims), acct(p))
                add("open a check value too few", "ChecksLength", f.openCheck(rid, s.commitment, opened, claims[1:]), acct(p))
                add("open check values that do not add up", "CheckOpeningInvalid", f.openCheck(rid, s.commitment, opened, claims), acct(p))
        accuse = lambda i, j, proof, mine=None: f.accuse(rid, j, mine or r.claims[i], r.claims[j], proof)  # noqa: E731
        pairs = [(i, j) for i in openers for j in openers if i != j and j not in r.culprits]
        if self.block > r.deadline:
            for i, j in pairs[:1]:
                add("accuse late", "DeadlinePassed", accuse(i, j, b""), acct(i))
            return
        add("advance before the dispute's deadline", "DeadlineNotPassed", f.advance(rid, r.missing), outsider)
        for j in [p for p in openers if p not in r.culprits][:1]:
            add("accuse oneself (no neighbour)", "NotNeighbours", accuse(j, j, b""), acct(j))
            for p in [*waiting, outsider.address][:1]:
                add("accuse without having opened", "NotInDispute", f.accuse(rid, j, [], r.claims[j], b""), acct(p))
        for j in [p for p in openers if p in r.culprits][:1]:
            add("accuse a culprit twice", "AlreadyCulprit", accuse(openers[0], j, b""), acct(openers[0]))
        for i, j in [(i, j) for i, j in pairs if not r.differ(i, j)][:1]:
            add("accuse without a mismatch", "NoMismatch", accuse(i, j, b""), acct(i))
        for i, j in [(i, j) for i, j in pairs if r.differ(i, j)][:1]:
            add("accuse with check values other than opened", "AccusationInvalid",
                accuse(i, j, b"", mine=[(c + 1) % MODULUS for c in r.claims[i]]), acct(i))
        for i, j in [(i, j) for i, j in pairs if r.differ(i, j) and (i, j) not in r.accusable()][:1]:
            add("accuse with a claim its proof contradicts", "AccusationInvalid", accuse(i, j, r.masks(i).accusation(k, r.y(j))), acct(i))
        for i, j in r.accusable()[:1]:
            proof, other = r.masks(i).accusation(k, r.y(j)), next(p for p in r.neighbours(i) if p != j)
            add("accuse with another's key", "AccusationInvalid", accuse(i, j, r.key[j] + proof[33:]), acct(i))
            add("accuse with the pair point of another neighbour", "AccusationInvalid",
                accuse(i, j, proof[:258] + r.masks(i).accusation(k, r.y(other))[258:]), acct(i))
            add("accuse with a proof one byte short", "MasksLength", accuse(i, j, proof[:-1]), acct(i))

    def _end_attacks(self, r: RoundModel, add: Callable) -> None:
        """False, early, late and repeated reveals, settlements and blame openings, and false proofs."""
        f, rid, B, acct, outsider = self.f, r.rid, self.block, self.env.by_address, self.env.outsider
        dummy = bytes(4 * self.env.pub.nbytes)
        unrevealed = [p for p in r.participants if p in r.subs and p not in r.revealed]
        reveal = lambda p, values=None, salt=None: f.reveal(  # noqa: E731
            rid, values or r.subs[p].values, salt or r.subs[p].salt, keccak(r.subs[p].ct))
        if B > r.reveal_until or r.blame_until:
            for p in unrevealed[:1]:
                add("reveal late", "DeadlinePassed", reveal(p), acct(p))
        elif B <= r.challenge_until:
            for p in unrevealed[:1]:
                add("reveal in the challenge window", "ChallengeWindowOpen", reveal(p), acct(p))
        else:
            bound = (2**(SLOT_BITS - 1) - 1) // len(r.participants)
            for p in unrevealed[:1]:
                values = r.subs[p].values
                add("reveal a value out of the slot range", "RevealOutOfRange", reveal(p, [bound + 1, *values[1:]]), acct(p))
                add("reveal a value beyond int64", "RevealOutOfRange", reveal(p, [2**63, *values[1:]]), acct(p))
                add("reveal values that do not open the commitment", "CommitmentMismatch", reveal(p, [values[0] + 1, *values[1:]]), acct(p))
                add("reveal with another salt", "CommitmentMismatch", reveal(p, salt=keccak(r.subs[p].salt)), acct(p))
                add("reveal a value too many", "RevealLength", reveal(p, [*values, 0]), acct(p))
            for p in list(r.revealed)[:1]:
                add("reveal twice", "AlreadyRevealed", reveal(p), acct(p))
            add("reveal without being registered", "NotRegistered", f.reveal(rid, [0] * SLOTS, bytes(32), bytes(32)), outsider)
            for p in [p for p in r.participants if p not in r.subs][:1]:
                add("reveal without a submission", "NothingToReveal", f.reveal(rid, [0] * SLOTS, bytes(32), bytes(32)), acct(p))
        rows, hashes, _ = r.settle_rows()
        if r.settle_error(B):
            add("settle early", r.settle_error(B), self._settle_fn(r, rows, hashes), outsider)
        else:
            add("settle with values that do not match the reveals", "RevealMismatch",
                self._settle_fn(r, [[rows[0][0] + 1, *rows[0][1:]], *rows[1:]], hashes), outsider)
            add("settle with a reveal missing", "RevealCount", self._settle_fn(r, rows[:-1], hashes[:-1]), outsider)
            add("settle with a value missing", "RevealLength", self._settle_fn(r, [*rows[:-1], rows[-1][:-1]], hashes), outsider)
        if not r.blame_until:
            add("open blame without a blame step", "NoBlame", f.openBlame(rid, [0] * SLOTS, dummy, b""), acct(r.participants[0]))
            return
        openers = [p for p in r.active if p in r.revealed and p not in r.culprits]
        if B > r.blame_until:
            for p in openers[:1]:
                add("open blame late", "DeadlinePassed", f.openBlame(rid, r.subs[p].values, dummy, b""), acct(p))
            return
        for p in [p for p in r.participants if p not in openers][:1]:
            add("open blame without standing in it", "NotInBlame", f.openBlame(rid, [0] * SLOTS, dummy, b""), acct(p))
        for p in [p for p in openers if p in r.cleared][:1]:
            add("open blame twice", "AlreadyCleared", f.openBlame(rid, r.subs[p].values, dummy, b""), acct(p))
        for p in [p for p in openers if p not in r.cleared][:1]:
            s, mask = r.subs[p], r.mask(p)
            m, rho = self.env.priv.opening(int.from_bytes(s.ct, "big"))
            masks = r.masks(p).blame_masks(r.iteration, *r.mask_args())
            if LAYOUT.unpack(m, mask) != (s.values, 0):
                add("open a cheat's true blame opening", "BlameOpeningInvalid",
                    f.openBlame(rid, s.values, self._opened(s.ct, m, rho), masks), acct(p))
                m = LAYOUT.pack(s.values, mask)
            opened, other = self._opened(s.ct, m, rho), r.neighbours(p)[0]
            blame = lambda o=opened, ms=masks, values=s.values: f.openBlame(rid, values, o, ms)  # noqa: E731
            add("open blame of other values than revealed", "BlameOpeningInvalid", blame(values=[s.values[0] + 1, *s.values[1:]]), acct(p))
            add("open blame of a short opening", "OpeningLength", blame(o=opened[:-1]), acct(p))
            add("open blame with masks one pair short", "MasksLength", blame(ms=masks[:-258]), acct(p))
            add("open blame with another's key", "BlameOpeningInvalid", blame(ms=r.key[other] + masks[33:]), acct(p))
            add("open blame with another's mask point", "BlameOpeningInvalid",
                blame(ms=masks[:33] + r.masks(other).blame_masks(r.iteration, *r.mask_args())[33:258] + masks[258:]), acct(p))
            add("open blame with its pair proofs swapped", "BlameOpeningInvalid",
                blame(ms=masks[:258] + masks[516:774] + masks[258:516] + masks[774:]), acct(p))
            add("open blame of a plaintext its masks do not open", "BlameOpeningInvalid", blame(o=self._opened(s.ct, m + 1, rho)), acct(p))

    # -------------------------------------------------------------- invariants
    @invariant()
    def check(self):
        views = self._views([r for r in self.rounds if r.rid in self.touched])  # the others did not change
        books = self.env.books.read([r.rid for r in self.rounds], [a.address for a in self.env.accounts],
                                    [a.address for a in [*self.env.accounts, self.env.op]] + [self.market.address])
        market = books["wallet"][self.market.address]
        held = sum(books["ledger"].values()) + sum(views[r.rid]["roundInfo"]["forfeited"] if r.rid in views else r.pool
                                                   for r in self.rounds)
        assert market == held, f"token conservation: the market holds {market}, its ledgers and pools sum to {held}"
        assert books["supply"] == sum(books["wallet"].values()), f"minted {books['supply']}, held {sum(books['wallet'].values())}"
        for who, amount in books["wallet"].items():
            assert who == self.market.address or amount == self.wallet[who], f"wallet of {who}: {amount}, model {self.wallet[who]}"
        for (rid, who), amount in books["ledger"].items():
            assert amount == self.rounds[rid - 1].ledger[who], f"round {rid}: ledger of {who}: {amount}, model {self.rounds[rid - 1].ledger[who]}"
        self._check_events()
        for r in self.rounds:
            if r.rid in self.touched:
                self._check_round(r, views[r.rid])
                self._check_ends(r)
        self.touched.clear()
        self._check_withdrawals()

    def _check_events(self) -> None:
        payments: dict[int, int] = {}
        for name, args, receipt in self.events:
            rid = args["roundId"]
            if name == "Submitted":
                key = (rid, args["iteration"], args["attempt"], args["participant"])
                assert key not in self.submitted, f"a second accepted submission in an attempt: {key}"
                self.submitted.add(key)
            elif name == "Payment":
                payments[receipt] = payments.get(receipt, 0) + int(args["amount"])
            else:
                frm, to = PHASES[args["from"]], PHASES[args["to"]]
                assert frm == self.phase_seen[rid], f"round {rid}: PhaseChanged from {frm}, but it was {self.phase_seen[rid]}"
                assert PHASE[frm] < PHASE[to] and frm not in TERMINAL, f"round {rid}: phase went back: {frm} -> {to}"
                self.phase_seen[rid] = to
        self.events.clear()
        assert all(s == 0 for s in payments.values()), f"settlement payments do not sum to zero: {payments}"
        for r in self.rounds:
            on_chain = sum(1 for key in self.submitted if key[0] == r.rid)
            assert r.accepted == on_chain, f"round {r.rid}: {on_chain} Submitted events, the model accepted {r.accepted}"
            assert self.logged.get(r.rid, []) == r.log, f"round {r.rid}: events {self.logged.get(r.rid, [])}, model {r.log}"

    def _check_round(self, r: RoundModel, v: dict) -> None:
        """The round's views equal the model; at its end, forfeits = compensations."""
        model = {"phase": PHASE[r.phase], "step": STEPS.index(r.step), "iteration": r.iteration, "attempt": r.attempt,
                 "deadline": r.deadline, "participantCount": len(r.participants), "active": len(r.active),
                 "submissions": r.submissions, "revealed": len(r.revealed), "aggregated": r.aggregate is not None,
                 "forfeited": r.pool, "challengeUntil": r.challenge_until, "revealUntil": r.reveal_until,
                 "blameUntil": r.blame_until, "challengeKeyPlusOne": 0, "coordinatorDeadline": r.coordinator_deadline(),
                 "finalSums": r.final_sums, "prices": r.prices,
                 "participants": r.participants}
        chain = {**v["roundInfo"], **{key: v[key] for key in ("coordinatorDeadline", "finalSums", "prices")},
                 "participants": [to_checksum_address(a) for a in v["participants"]]}
        diff = {key: (chain[key], m) for key, m in model.items() if (list(chain[key]) if isinstance(m, list) else chain[key]) != m}
        assert not diff, f"round {r.rid}: (chain, model) differ: {diff}"
        for position, who in enumerate(r.participants, 1):
            s, rv, got = r.subs.get(who), r.revealed.get(who), v[f"member {who}"]
            width = len(got["submissionHash"])  # the contract keeps a prefix of the hash
            want = {"submissionHash": keccak(keccak(s.ct) + s.commitment)[:width] if s else bytes(width),
                    "position": position, "submittedIterationPlusOne": s.iteration + 1 if s else 0,
                    "submittedAttempt": s.attempt if s else 0, "droppedBeforePlusOne": r.dropped.get(who, 0),
                    "memberIndexPlusOne": r.member_index[who], "openedPlusOne": r.opened.get(who, 0),
                    "culprit": who in r.culprits, "revealed": rv is not None, "cleared": who in r.cleared,
                    "pointHash": hash16(r.point[who]), "nextPointHash": hash16(r.next_point[who]), "keyHash": hash16(r.key[who]),
                    "checkHash": hash16(b"".join(c.to_bytes(32, "big") for c in r.last_claims.get(who, []))),
                    "revealHash": keccak(values_hash(rv.values) + rv.ciphertext_hash) if rv else bytes(32)}
            assert got == want, f"round {r.rid}: member {who}: chain {got}, model {want}"
        if not r.open:  # what was forfeited was shared, unless nobody may take a share
            blamed = sum(e[2] for e in r.log if e[0] == "Blamed")
            shared = sum(e[2] for e in r.log if e[0] == "Compensated")
            assert blamed == shared + r.pool, f"round {r.rid}: forfeited {blamed}, compensated {shared}, pool {r.pool}"
            assert not r.pool, f"round {r.rid}: {r.pool} left unshared"

    def _check_ends(self, r: RoundModel) -> None:
        """No frozen round: from the round's state, passing each deadline and calling `advance`
        (participants' steps) or `cancel` (the coordinator's) ends it, whatever the model says
        (in a snapshot, reverted). Once per state of the round."""
        state = (r.rid, r.phase, r.step, r.iteration, r.attempt, r.blame_until)
        if not r.open or state in self.ended:
            return
        self.ended.add(state)
        with self._snapshot():
            try:
                for _ in range(2 * POOL + 4):  # each advance drops someone or ends the round
                    v = self._views([r])[r.rid]
                    info, members = v["roundInfo"], [(p, v[f"member {p}"]) for p in r.participants]
                    phase, step, k, attempt = PHASES[info["phase"]], STEPS[info["step"]], info["iteration"], info["attempt"]
                    if phase in TERMINAL:
                        break
                    if phase == "Iterating" and step != "Aggregating":
                        acted = (lambda x: x["openedPlusOne"] == aggregate_key(k, attempt) + 1) if step == "Disputing" else \
                            (lambda x: (x["submittedIterationPlusOne"], x["submittedAttempt"]) == (k + 1, attempt))
                        self.chain.mine_until(info["deadline"] + 1)
                        self.chain.transact(self.f.advance(r.rid, [p for p, x in members if not x["droppedBeforePlusOne"]
                                                                   and not acted(x)]), self.env.outsider)
                    else:
                        self.chain.mine_until(v["coordinatorDeadline"] + 1)
                        self.chain.transact(self.f.cancel(r.rid), self.env.outsider)
                else:
                    raise AssertionError(f"round {r.rid} did not end from {state}")
            except ContractRevert as err:
                raise AssertionError(f"round {r.rid} from {state}: passing the deadlines was rejected: {err}") from None
        STATS.end_checks += 1

    def _check_withdrawals(self) -> None:
        """Once a round is Settled or Closed, every balance on its ledger comes out in full (in a
        snapshot, reverted)."""
        for r in self.rounds:
            if r.open or r.withdrawals_checked:
                continue
            r.withdrawals_checked = True
            with self._snapshot():
                for who in self._holders(r):
                    before = self.market.token.balance_of(who)
                    try:
                        self.chain.transact(self.f.withdraw(r.rid), self.env.by_address(who))
                    except ContractRevert as err:
                        raise AssertionError(f"round {r.rid} is {r.phase} but a withdrawal failed: {err}") from None
                    got = self.market.token.balance_of(who) - before
                    assert got == r.ledger[who] and self.market.balance(r.rid, who) == 0, \
                        f"round {r.rid}: {who} withdrew {got} of {r.ledger[who]}"
            STATS.withdrawal_checks += 1


# ----------------------------------------------------------------------------- running
def fuzz_settings(examples: int, steps: int, seed: int | None = None) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                    derandomize=seed is not None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def run_fuzz(examples: int, steps: int, seed: int | None = None, progress: Callable[[dict], None] | None = None) -> dict:
    """Runs ``examples`` random sequences of up to ``steps`` calls each (reproducible with ``seed``)
    and reports: examples and steps run, transactions sent, hostile calls by kind, rejected calls
    by error, disputes, accusations, blame steps, faults, the phases the rounds ended in, and the
    failure (``failed``; hypothesis' shrunk example) if any. ``progress(report)`` is called after
    each example."""
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
            "hostile_calls": dict(sorted(STATS.hostile.items())), "hostile": sum(STATS.hostile.values()),
            "rejected": dict(sorted(STATS.rejected.items())), "rejections": sum(STATS.rejected.values()),
            "disputes": STATS.flow["Disputed"], "accusations": STATS.flow["Accused"],
            "blame_steps": STATS.flow["BlameStarted"], "openings_disproved": STATS.flow["OpeningDisproved"],
            "openings_confirmed": STATS.flow["OpeningConfirmed"], "faults": dict(STATS.faults),
            "pools_left_unshared": STATS.flow["pools left unshared"],
            "round_outcomes": dict(STATS.rounds), "closed": dict(STATS.closed),
            "withdrawal_checks": STATS.withdrawal_checks, "end_checks": STATS.end_checks,
            "wall_seconds": round(time.perf_counter() - t0, 2)}
