"""How the messages of a round move between its parties: one interface, three implementations.

* :class:`PlainTransport`: in process, in the clear. The coordinator receives every
  participant's vector and sums it exactly; pair messages are handed over as they are (standard
  ADMM's leak). The reference mode.
* :class:`PrivateTransport`: in process, private. Each participant masks, packs and encrypts its
  vector under the coordinator's Paillier key and seals each pair message with a one-time pad
  (:class:`~offchain.protocol.keys.MemberKeys`); the transport multiplies the ciphertexts (what
  the contract does on chain) and the coordinator decrypts only the product.
* :class:`ChainTransport`: the same sealing, with the contract as the bus: ``createRound``,
  ``register`` (each participant's key and first mask point), ``deposit``, ``start``, then per
  iteration ``submit`` (ciphertext, commitment, pair messages, next mask point), ``advance``
  after a deadline when someone is missing (the others submit again, masked among themselves),
  ``aggregate`` (in chunks) and ``publish`` or ``conclude`` (or ``dispute`` when the decrypted
  check slot shows masks that do not cancel: ``openCheck``, ``accuse``, ``advance``), then each
  participant's ``reveal``, ``settle`` (after a blame step if the reveals do not add up),
  ``withdraw``. Every participant checks every opening posted (the coordinator's decryptions,
  the others' dispute and blame openings) and challenges a false one.

Dropouts: ``drops`` ({iteration: [participant names]}) makes those participants go silent from
that iteration on (a crash), in every transport alike, so all modes still follow the same
trajectory; each :class:`Delivery` names who dropped out in its iteration.

All three carry the same integers, so a round follows the same trajectory in every mode. The
in-process transports settle with the mechanism's Python mirror of its rule contract.
"""
from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from eth_utils import to_checksum_address

from ..chain.market import CULPRIT_FAULTS, aggregate_key, blame_key, dispute_key
from ..errors import ProtocolViolation
from ..framework import Answer, Contribution, MirrorSettlement, RoundSetup
from ..privacy import secagg
from ..privacy.packing import SlotLayout
from ..record import Transaction
from .keys import CoordinatorKeys, MemberKeys, Sealed

FINAL, DROPPED_REVEALED, DROPPED_SILENT = 0, 1, 2  # a participant's standing at settlement (RoundTypes.Standing)
FAULTY = ("accuse", "challenge", "settle", "cancel")  # the transactions that can name a party at fault


@dataclass
class Delivery:
    """What one iteration's exchange delivers: the sums (to the coordinator), per participant the
    pair messages sent to it ({sender index: values}), and who dropped out in this iteration."""
    sums: list[int]
    received: list[dict[int, list[int]]]
    individual: list[list[int]] | None = None  # plain mode only: what the coordinator saw of each
    dropped: list[int] = field(default_factory=list)  # participant indices


@dataclass
class ChainInfo:
    kind: str
    url: str | None
    chain_id: int
    hardfork: str
    market: str
    token: str
    rule: str
    round_id: int
    parent_round_id: int = 0


class Transport(ABC):
    """One round's message bus. ``open`` once, then ``start``, ``exchange``/``publish`` per
    iteration, then ``settle`` or ``close_round``, and ``finish``."""

    kind = ""

    def __init__(self, drops: dict[int, list[str]] | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.gas: dict[str, list[int]] = defaultdict(list)
        self.transactions: list[Transaction] = []
        self.addresses: dict[str, str] = {}
        self.chain_info: ChainInfo | None = None
        self.drops = {int(k): list(v) for k, v in (drops or {}).items()}
        self.active: set[int] = set()  # participant indices still in the round
        self.dropped_at: dict[int, int] = {}  # participant index -> iteration it dropped out in
        self.attempts: dict[int, int] = {}  # iteration -> attempts it took (a dropout or a dispute adds one)
        self.blamed: dict[str, tuple[int, str]] = {}  # party named at fault -> (what it forfeited, why)

    @abstractmethod
    def open(self, setup: RoundSetup, parent: "Transport | None" = None) -> None: ...

    def nested(self, operator: str) -> "Transport":
        """A fresh transport of this kind for a child round that ``operator`` (a participant of this
        round) coordinates."""
        return type(self)()

    def start(self, prices: list[int]) -> None:
        pass

    @abstractmethod
    def exchange(self, k: int, contributions: dict[int, Contribution]) -> Delivery:
        """``contributions``: {participant index: contribution} of the active participants."""

    def publish(self, k: int, answer: Answer, delivery: Delivery) -> None:
        pass

    @abstractmethod
    def settle(self, prices: list[int]) -> MirrorSettlement: ...

    def close_round(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def gas_of_iteration(self, k: int) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for t in self.transactions:
            if t.iteration == k:
                out[t.kind] += t.gas
        return dict(out)

    @property
    def standing(self) -> list[int]:
        """Each participant's standing at settlement: in the final sums, or dropped (silent: a
        crashed participant reveals nothing)."""
        return [FINAL if i in self.active else DROPPED_SILENT for i in range(len(self.setup.participants))]

    # -- helpers shared by the implementations --------------------------------------------------
    def _begin(self, setup: RoundSetup) -> None:
        self.setup = setup
        names = [p.name for p in setup.participants]
        unknown = sorted({n for v in self.drops.values() for n in v} - set(names))
        if unknown:
            raise ProtocolViolation(f"cannot drop {', '.join(unknown)}: not participants of {setup.label}")
        self.active = set(range(len(names)))

    def _submitters(self, k: int, contributions: dict[int, Contribution]) -> tuple[list[int], list[int]]:
        """(who submits in iteration k, who drops out now), participant indices in order."""
        names = [p.name for p in self.setup.participants]
        leaving = {names.index(n) for n in self.drops.get(k, [])} & self.active
        if set(contributions) != self.active:
            raise ProtocolViolation(f"iteration {k}: contributions from other than the active participants")
        return sorted(self.active - leaving), sorted(leaving)

    def _drop(self, k: int, gone: list[int]) -> None:
        for i in gone:
            self.active.discard(i)
            self.dropped_at[i] = k

    def _name_addresses(self, setup: RoundSetup) -> None:
        """Stand-in addresses of the parties of an in-process round (0x...01, 0x...02, ...)."""
        names = [p.name for p in setup.participants]
        if len(set(names)) != len(names):
            raise ProtocolViolation("participants must have distinct names")
        roles = [setup.coordinator_role, *setup.payees, *names]
        self.addresses = {r: to_checksum_address(f"0x{i + 1:040x}") for i, r in enumerate(roles)}
        self.addresses["coordinator"] = self.addresses[setup.coordinator_role]

    def _mirror(self, setup: RoundSetup, reveals: list[list[int]], prices: list[int]) -> MirrorSettlement:
        return setup.settlement(reveals, prices, self.addresses, self.standing)


class PlainTransport(Transport):
    """In process, in the clear."""

    kind = "plaintext"

    def open(self, setup: RoundSetup, parent: Transport | None = None) -> None:
        self._begin(setup)
        self._name_addresses(setup)
        self.reveals: dict[int, list[int]] = {}

    def exchange(self, k: int, contributions: dict[int, Contribution]) -> Delivery:
        senders, gone = self._submitters(k, contributions)
        self._drop(k, gone)
        n = len(self.setup.participants)
        live = [contributions[i] for i in senders]
        keyed = self.setup.slots and self.setup.encrypted  # a round without a key carries no sums, in every mode
        sums = [sum(col) for col in zip(*(c.sums for c in live))] if keyed else []
        received: list[dict[int, list[int]]] = [{} for _ in range(n)]
        for i in senders:
            for j, v in contributions[i].pairs.items():
                if j in self.active:
                    received[j][i] = [int(x) for x in v]
        for i in senders:
            self.reveals[i] = contributions[i].committed
        return Delivery(sums, received, individual=[list(c.sums) for c in live], dropped=gone)

    def settle(self, prices: list[int]) -> MirrorSettlement:
        return self._mirror(self.setup, self._final_reveals(), prices)

    def _final_reveals(self) -> list[list[int]]:
        length = len(next(iter(self.reveals.values()))) if self.reveals else 0
        return [self.reveals[i] if i in self.active else [0] * length for i in range(len(self.setup.participants))]


class _Sealing:
    """The sealing shared by the private transports: the parties' keys, the layout, the public mask
    plan, pair routing. ``kept(party)`` gives a party's :class:`~offchain.keystore.PartySecrets` in
    a run's key store (None: secrets in memory only)."""

    kept = None

    def _kept(self, party: str):
        return self.kept(party) if self.kept is not None else None

    def _keys(self, setup: RoundSetup, key_bits: int) -> None:
        from ..privacy.paillier import start_worker

        t0 = time.perf_counter()
        if setup.encrypted:
            start_worker()  # forked before any key exists: it holds no secret
        self.coordinator_keys = CoordinatorKeys(key_bits, self._kept("coordinator")) if setup.encrypted else None
        self.layout = (SlotLayout.for_round(setup.slots, len(setup.participants), key_bits, slot_bits=setup.slot_bits)
                       if setup.encrypted else None)
        self.seconds["setup"] += time.perf_counter() - t0

    def _join(self, peers: list[tuple[str, bytes]], context: bytes) -> None:
        """Every participant agrees its pads with the registered ``peers`` (address, keys); the mask
        points of iteration 0 are the second half of each one's keys."""
        key = self.coordinator_keys.public if self.coordinator_keys else None
        self.plan = secagg.Plan([a for a, _ in peers], context)
        for m in self.members:
            m.join(key, self.layout, peers, self.plan)
        self.points: dict[int, dict[int, bytes]] = {0: {i: bytes(k[secagg.POINT_BYTES:]) for i, (_, k) in enumerate(peers)}}
        self.sealed: dict[int, Sealed] = {}  # each participant's latest accepted submission

    def _seal_all(self, round_id: int, k: int, attempt: int, contributions: dict[int, Contribution],
                  senders: list[int]) -> dict[int, Sealed]:
        """Each sender's submission for the attempt, masked among the active participants (a copy
        of another's ciphertext last, once there is one to copy)."""
        t0 = time.perf_counter()
        addresses = [m.address.lower() for m in self.members]
        out: dict[int, Sealed] = {}
        for i in sorted(senders, key=lambda i: self.members[i].behaviour == "copy"):
            c = contributions[i]
            partners = {addresses[j]: v for j, v in c.pairs.items() if j in self.active} if self.setup.pair_lanes else {}
            if self.setup.pair_lanes and set(partners) != {addresses[j] for j in self.active if j != i}:
                raise ProtocolViolation(f"{self.setup.participants[i].name}: pair messages must go to every other "
                                        "active participant of a round with pair lanes")
            member = self.members[i]
            if member.behaviour == "copy" and out:
                member.copy_of = next(iter(out.values())).ciphertext
            out[i] = member.seal(round_id, k, attempt, c, partners, self.points.get(k), self.active)
        self.seconds["encrypt"] += time.perf_counter() - t0
        return dict(sorted(out.items()))

    def _route(self, k: int, attempt: int, blobs: dict[int, bytes]) -> list[dict[int, list[int]]]:
        """Each active participant opens the blocks sealed for it in the attempt."""
        n, lanes = len(self.members), self.setup.pair_lanes
        received: list[dict[int, list[int]]] = [{} for _ in range(n)]
        if not lanes:
            return received
        for i, blob in blobs.items():
            sender = self.members[i].address
            others = [self.members[j].address for j in sorted(self.active) if j != i]
            for j in self.active:
                if j != i:
                    received[j][i] = self.members[j].open_pairs(k, attempt, sender, blob, lanes, others)
        return received

    def _decrypt(self, aggregate: int) -> tuple[list[int], int, int, int]:
        t0 = time.perf_counter()
        out = self.coordinator_keys.open(aggregate, self.layout)
        self.seconds["decrypt"] += time.perf_counter() - t0
        return out

    def _final_reveals(self) -> list[list[int] | None]:
        return [self.sealed[i].reveal if i in self.active else None for i in range(len(self.members))]

    def _leave(self) -> None:
        for m in self.members:
            m.leave()


class PrivateTransport(_Sealing, Transport):
    """In process, masked and encrypted (the chain's sealing without the chain)."""

    kind = "private"

    def __init__(self, key_bits: int = 2048, drops: dict[int, list[str]] | None = None) -> None:
        super().__init__(drops)
        self.key_bits = key_bits

    def nested(self, operator: str) -> "PrivateTransport":
        return PrivateTransport(self.key_bits)

    def open(self, setup: RoundSetup, parent: Transport | None = None) -> None:
        self._begin(setup)
        self._name_addresses(setup)
        self._keys(setup, self.key_bits)
        self.members = [MemberKeys(self.addresses[p.name]) for p in setup.participants]
        context = b"gridshare/in-process"
        keyed, lanes = setup.encrypted, bool(setup.pair_lanes)
        self._join([(m.address, m.registration_keys(context, keyed, lanes)) for m in self.members], context)

    def exchange(self, k: int, contributions: dict[int, Contribution]) -> Delivery:
        senders, gone = self._submitters(k, contributions)
        attempt = 0
        if gone:  # the attempt they missed is tried again without them, as on chain
            self._drop(k, gone)
            attempt = 1
        self.attempts[k] = attempt + 1
        sealed = self._seal_all(0, k, attempt, contributions, senders)
        self.sealed.update(sealed)
        if self.coordinator_keys is not None:
            self.points[k + 1] = {i: s.next_point for i, s in sealed.items()}
        sums: list[int] = []
        if self.coordinator_keys is not None:
            key = self.coordinator_keys.public
            aggregate = key.add(*(int.from_bytes(s.ciphertext, "big") for s in sealed.values()))
            sums, check, _, _ = self._decrypt(aggregate)
            if check:
                raise ProtocolViolation(f"iteration {k}: the masks did not cancel")
        return Delivery(sums, self._route(k, attempt, {i: s.pairs for i, s in sealed.items()}), dropped=gone)

    def settle(self, prices: list[int]) -> MirrorSettlement:
        length = len(next(iter(self.sealed.values())).reveal)
        return self._mirror(self.setup, [r or [0] * length for r in self._final_reveals()], prices)

    def finish(self) -> None:
        self._leave()


class ChainTransport(_Sealing, Transport):
    """The round as transactions of a PrivateRounds contract (deployed here unless given). Each
    participant sends its own transactions from its own account; the coordinator's client sends
    the coordinator's and, as anyone may, moves the round on after a deadline."""

    kind = "chain"

    def __init__(self, chain, key_bits: int = 2048, verify_openings: bool = True, market=None,
                 rules: dict[str, str] | None = None, hardfork: str | None = None, account_offset: int = 0,
                 drops: dict[int, list[str]] | None = None, windows: dict[str, int | None] | None = None,
                 kept=None, announce=None, behaviours: dict[str, str] | None = None) -> None:
        super().__init__(drops)
        self.kept = kept
        self.behaviours = dict(behaviours or {})  # simulated hostile participants: name -> keys.BEHAVIOURS
        self.announce = announce  # called with the round's market and id once it is created
        self.chain, self.key_bits, self.verify_openings = chain, key_bits, verify_openings
        self.account_offset = account_offset
        self.market = market
        self.rules = dict(rules or {})  # rule contract name -> deployed address (reused)
        self.hardfork = hardfork or chain.hardfork
        self.windows = dict(windows or {})  # deadlines given ({window: blocks}); the rest sized to the round
        self._checked: dict[bytes, bool] = {}  # openings checked: every party computes the same verdict from public data
        self._later: list = []  # decryptions being checked in the background
        self._culprits: set[str] = set()  # participants the chain named at fault (forfeited)
        self._parent: ChainTransport | None = None  # the round this one is a child of
        self._children = 0  # child rounds opened by this round's operators so far

    # -- bookkeeping -----------------------------------------------------------------------------
    def _record(self, kind: str, receipts, party: str | list[str], iteration: int | None = None) -> None:
        """Gas and hash of each receipt, with the party that sent it (``party``: one per receipt,
        or one for all)."""
        receipts = receipts if isinstance(receipts, list) else [receipts]
        parties = party if isinstance(party, list) else [party] * len(receipts)
        for r, who in zip(receipts, parties):
            gas = int(r["gasUsed"])
            self.gas[kind].append(gas)
            self.transactions.append(Transaction(r["transactionHash"].to_0x_hex(), who, kind, iteration, gas))
        if kind in FAULTY:
            self._note_blamed(receipts)

    def _note_blamed(self, receipts) -> None:
        names: dict[str, str] = {}
        for n, a in self.addresses.items():  # the coordinator's role before its alias "coordinator"
            names.setdefault(a.lower(), n)
        for address, (amount, fault) in self.market.blamed(receipts).items():
            name = names.get(address.lower(), address)
            self.blamed[name] = (amount, fault)
            if fault in CULPRIT_FAULTS:
                self._culprits.add(name)

    def _timed(self, phase: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[phase] += time.perf_counter() - t0

    def _names(self, indices) -> list[str]:
        return [self.setup.participants[i].name for i in indices]

    def _account(self, i: int):
        return self.accounts[self.setup.participants[i].name]

    def _events(self, receipts, event: str) -> list[dict]:
        return [dict(ev["args"]) for r in receipts for ev in self.chain.events(r, self.market.contract, event)]

    def _info(self) -> dict:
        return self.market.round_info(self.round_id)

    def _silent(self, k: int) -> set[int]:
        """Participants crashed by iteration k (simulated: they send nothing from then on)."""
        names = [p.name for p in self.setup.participants]
        return {names.index(n) for it, gone in self.drops.items() if it <= k for n in gone}

    # -- the round -------------------------------------------------------------------------------
    def open(self, setup: RoundSetup, parent: Transport | None = None) -> None:
        from dataclasses import replace

        from ..chain.market import Market, RoundParams, Windows, deploy_rule

        self._begin(setup)
        chain = self.chain
        n = len(setup.participants)
        self._parent = parent if isinstance(parent, ChainTransport) else None
        if parent is not None and hasattr(parent, "allocate"):  # a child round: accounts after every other round's
            self.account_offset = parent.allocate(n + 1 + len(setup.payees))
        self._next_account = self.account_offset + n + 1 + len(setup.payees)
        accounts = chain.accounts(n + 1 + len(setup.payees), offset=self.account_offset)
        self.coordinator_account, payees, parts = accounts[0], accounts[1:1 + len(setup.payees)], accounts[1 + len(setup.payees):]
        self.minter = self.coordinator_account  # the token's owner mints the collateral
        if parent is not None:  # a nested round: its coordinator is a participant of the parent
            self.coordinator_account = parent.account_of(setup.coordinator.name)
            self.minter = parent.minter
        self.accounts = {setup.coordinator_role: self.coordinator_account, "coordinator": self.coordinator_account,
                         **dict(zip(setup.payees, payees)), **{p.name: a for p, a in zip(setup.participants, parts)}}
        self.addresses = {k: a.address for k, a in self.accounts.items()}
        if self.kept is not None:  # whose account is whose, for a refund that names the parties
            self.kept("names").keep("addresses", lambda: {a: k for k, a in self.addresses.items() if k != "coordinator"})
        self._keys(setup, self.key_bits)
        t0 = time.perf_counter()
        operator = self.coordinator_account
        if self.market is None:
            self.market = parent.market if parent is not None else Market.deploy(chain, operator)
        from ..registry import get

        rule_name = get(setup.public_rule["mechanism"]).rule_contract
        rule = self.rules.get(rule_name) or (parent.rules.get(rule_name) if parent is not None else None)
        if rule is None:
            rule = self.rules[rule_name] = deploy_rule(chain, rule_name, operator)
        key = self.coordinator_keys.public if self.coordinator_keys else None
        windows = Windows.for_round(n, **self.windows)
        if setup.child_rounds and self.windows.get("submission") is None:  # the operators' child rounds run in it
            from ..chain.market import child_round_blocks

            room = sum(child_round_blocks(m, cap) for m, cap in setup.child_rounds.values())
            windows = replace(windows, submission=windows.submission + room)
        if key is None or not self.verify_openings:
            windows = replace(windows, challenge=0)
        self.challenges = windows.challenge != 0  # openings may be challenged
        collateral = [setup.collateral(p.name) for p in setup.participants]
        self.bond = setup.bond if setup.bond is not None else max(collateral, default=0)
        params = RoundParams(
            rule=rule, slots=setup.slots, max_iterations=setup.max_iterations, price_floor=setup.price_floor,
            price_cap=setup.price_cap, grid_account=self.addresses[setup.balancing_role], n=key.n if key else None,
            slot_bits=self.layout.slot_bits if key else 0, slot_width=self.layout.slot_width if key else 0,
            mechanism=json.dumps(setup.public_rule, sort_keys=True), pair_lanes=setup.pair_lanes,
            terms=setup.terms(self.addresses) if setup.terms else b"",
            members=[self.addresses[p.name] for p in setup.participants] if setup.allow_list else [],
            signed_members=not setup.allow_list, collateral=min(collateral, default=0), bond=self.bond,
            windows=windows, parent_round_id=parent.round_id if parent is not None else 0)
        self.round_id, receipt = self.market.create_round(operator, params)
        self._record("create_round", receipt, setup.coordinator_role)
        if self.announce is not None:  # before any deposit: where a refund would look
            self.announce({"market": self.market.address, "token": self.market.token.address, "round_id": self.round_id,
                           "url": chain.url, "chain_id": chain.chain_id})
        self.context = secagg.round_context(self.market.address, self.round_id, chain.chain_id)
        self.members = [MemberKeys(a.address, self._kept(a.address), behaviour=self.behaviours.get(p.name))
                        for p, a in zip(setup.participants, parts)]
        keyed, lanes = key is not None, bool(setup.pair_lanes)
        # one by one: the registration order is the participants' order (and the allow-list's)
        for i, (p, account, m) in enumerate(zip(setup.participants, parts, self.members)):
            item = (account, self.round_id, m.registration_keys(self.context, keyed, lanes))
            if params.signed_members:
                item += (i, self.market.member_signature(operator, self.round_id, account, i))
            self._record("register", self.market.register_many([item]), p.name)
        self._deposit(setup)
        peers = self.market.registered(self.round_id, from_block=int(receipt["blockNumber"]))
        if [a.lower() for a, _ in peers] != [a.address.lower() for a in parts]:
            raise ProtocolViolation("the chain's registration order differs from the order registered")
        self.seconds["chain"] += time.perf_counter() - t0
        self._join(peers, self.context)
        self.chain_info = ChainInfo(kind=chain.kind, url=chain.url, chain_id=chain.chain_id, hardfork=self.hardfork,
                                    market=self.market.address, token=self.market.token.address, rule=rule,
                                    round_id=self.round_id, parent_round_id=params.parent_round_id)

    def _deposit(self, setup: RoundSetup) -> None:
        """Every payee and participant deposits its collateral, the coordinator its bond."""
        deposits = [(self.accounts[name], setup.collateral(name), name)
                    for name in [*setup.payees, *(p.name for p in setup.participants)] if setup.collateral(name) > 0]
        if self.bond:
            deposits.append((self.coordinator_account, self.bond, setup.coordinator_role))
        if deposits:
            self._record("mint", self.market.token.mint_many(self.minter, [(a, v) for a, v, _ in deposits]),
                         setup.coordinator_role)
            names = [name for *_, name in deposits]
            self._record("approve", self.market.approve_many([(a, v) for a, v, _ in deposits]), names)
            self._record("deposit", self.market.deposit_many([(a, self.round_id, v) for a, v, _ in deposits],
                                                             approve=False), names)

    def account_of(self, name: str):
        return self.accounts[name]

    def allocate(self, count: int) -> int:
        """The first of ``count`` fresh account indices for a child round (after every round's so far)."""
        if self._parent is not None:
            return self._parent.allocate(count)
        first, self._next_account = self._next_account, self._next_account + count
        return first

    def nested(self, operator: str) -> "ChainTransport":
        """A child round's transport on this round's chain, market and rule contracts; its secrets
        kept under its own names in this run's key store."""
        self._children += 1
        prefix = f"child{self._children}-{operator}"
        kept = (lambda party: self.kept(f"{prefix}-{party}")) if self.kept is not None else None
        return ChainTransport(self.chain, key_bits=self.key_bits, verify_openings=self.verify_openings,
                              market=self.market, rules=self.rules, kept=kept)

    def start(self, prices: list[int]) -> None:
        receipt = self._timed("chain", self.market.start, self.coordinator_account, self.round_id, prices)
        self._record("start", receipt, self.setup.coordinator_role, 0)

    def exchange(self, k: int, contributions: dict[int, Contribution]) -> Delivery:
        self._submitters(k, contributions)  # the contributions are the active participants'
        before = set(self.active)
        attempt = 0
        while True:
            silent = self._silent(k)
            submitters = [i for i in sorted(self.active) if i not in silent]
            sealed = self._seal_all(self.round_id, k, attempt, contributions, submitters)
            items = [(self._account(i), self.round_id, k, s.ciphertext, s.commitment, s.pairs, s.next_point)
                     for i, s in sealed.items()]
            receipts = self._timed("chain", self.market.submit_many, items)
            self._record("submit", receipts, self._names(sealed), k)
            self.sealed.update(sealed)  # each one's latest accepted submission (a dropped one reveals it)
            if self.coordinator_keys is not None:
                self.points.setdefault(k + 1, {}).update({i: s.next_point for i, s in sealed.items()})
            missing = sorted(self.active - set(submitters))
            if missing:  # the attempt is tried again without them
                self._advance(k, attempt, missing)
                attempt += 1
                continue
            if self.coordinator_keys is None:
                break
            agg = self._aggregate(k, sealed)
            sums, check, plaintext, opening = self._decrypt(int.from_bytes(agg, "big"))
            if not check:
                break
            self._dispute(k, attempt, sealed, agg, plaintext, opening)
            attempt += 1
        self.attempts[k] = attempt + 1
        blobs = {i: s.pairs for i, s in sealed.items()}
        if self.setup.pair_lanes:  # what each partner reads: the PairMessages events of the receipts
            events = self._events(receipts, "PairMessages")
            blobs = dict(zip(sealed, (bytes(e["messages"]) for e in events)))
        received = self._route(k, attempt, blobs)
        self._published = None
        if self.coordinator_keys is not None:
            self._published = (agg, plaintext, opening)
        else:
            sums = []
        return Delivery(sums, received, dropped=sorted(before - self.active))

    def _advance(self, k: int, attempt: int, missing: list[int]) -> None:
        """Waits out the step's deadline and drops ``missing`` (anyone may; the coordinator's client
        does it, and takes it as done if someone else did it first)."""
        from ..chain.backends import ContractRevert

        def pending(info: dict) -> bool:
            return info["phase"] == "Iterating" and (info["iteration"], info["attempt"]) == (k, attempt)

        info = self._info()
        if pending(info):
            self._timed("chain", self.chain.mine_until, int(info["deadline"]) + 1)
            try:
                receipt = self._timed("chain", self.market.advance, self.coordinator_account, self.round_id,
                                      [self._account(i).address for i in missing])
                self._record("advance", receipt, self.setup.coordinator_role, k)
            except ContractRevert:
                if pending(self._info()):
                    raise  # nobody moved the round on: the call was wrong
        self._sync_active(k)
        if self._info()["phase"] == "Closed":
            raise ProtocolViolation(f"iteration {k}: fewer than the privacy minimum remain after the dropouts, "
                                    "or a dispute named nobody: the round closed, every deposit withdrawable")

    def _sync_active(self, k: int) -> None:
        """Who the chain dropped (a dropout, a missed opening, a culprit) leaves ``active``."""
        for i in sorted(self.active):
            if self.market.member(self.round_id, self._account(i))["dropped_before_plus_one"]:
                self._drop(k, [i])

    def _aggregate(self, k: int, sealed: dict[int, Sealed]) -> bytes:
        """The attempt's aggregate (anyone may aggregate: a front-run is taken, not fatal)."""
        from ..chain.backends import ContractRevert

        key = self.coordinator_keys.public
        local = key.to_bytes(key.add(*(int.from_bytes(s.ciphertext, "big") for s in sealed.values())))
        try:
            agg, receipts = self._timed("chain", self.market.aggregate, self.coordinator_account, self.round_id,
                                        [s.ciphertext for s in sealed.values()], [s.commitment for s in sealed.values()])
        except ContractRevert:
            if not self._info()["aggregated"]:
                raise
            return local
        self._record("aggregate", receipts, self.setup.coordinator_role, k)
        if agg != local:
            raise ProtocolViolation(f"iteration {k}: the chain's aggregate differs from the product of the submissions")
        return agg

    # -- checking openings ------------------------------------------------------------------------
    def _holds(self, ciphertext: bytes, plaintext: int, rho: int) -> bool:
        """Every participant's check of an opening posted on chain (the same verdict for every
        party, from public data: computed once per process)."""
        opened = bytes(ciphertext) + plaintext.to_bytes(self.coordinator_keys.public.nbytes, "big") + \
            rho.to_bytes(self.coordinator_keys.public.nbytes, "big")
        if opened not in self._checked:
            t0 = time.perf_counter()
            self._checked[opened] = self.coordinator_keys.public.verify_opening(int.from_bytes(ciphertext, "big"),
                                                                                 plaintext, rho)
            self.seconds["check openings"] += time.perf_counter() - t0
        return self._checked[opened]

    def _watch_later(self, key: int, ciphertext: bytes, plaintext: int, rho: int, k: int) -> None:
        """Checks a decryption in the background while the round goes on (its challenge window
        lasts until after conclusion); :meth:`_check_later` acts on the verdict."""
        from ..privacy.paillier import verify_later

        if self.challenges:
            verdict = verify_later(self.coordinator_keys.public, int.from_bytes(ciphertext, "big"), plaintext, rho)
            self._later.append((key, ciphertext, plaintext, rho, k, verdict))

    def _check_later(self) -> None:
        """The verdicts of the decryptions checked in the background: a false one is challenged."""
        while self._later:
            key, ciphertext, plaintext, rho, k, verdict = self._later.pop(0)
            t0 = time.perf_counter()
            held = verdict.result()
            self.seconds["check openings"] += time.perf_counter() - t0
            if not (held or self._watch(key, ciphertext, plaintext, rho, k, held=False)):
                raise ProtocolViolation(f"iteration {k}: the coordinator's decryption was false; a participant "
                                        "disproved it and the round closed")

    def _watch(self, key: int, ciphertext: bytes, plaintext: int, rho: int, k: int | None,
               held: bool | None = None) -> bool:
        """Challenges a false opening (the first honest participant that notices); whether it held."""
        if (held if held is not None else self._holds(ciphertext, plaintext, rho)) or not self.challenges:
            return True
        challenger = next(i for i in sorted(self.active) if self.members[i].honest and i not in self._silent(k or 0))
        _, receipts = self._timed("chain", self.market.challenge, self._account(challenger), self.round_id, key,
                                  ciphertext, plaintext, rho)
        self._record("challenge", receipts, self._names([challenger]) * len(receipts), k)
        return False

    # -- disputes -------------------------------------------------------------------------------
    def _dispute(self, k: int, attempt: int, sealed: dict[int, Sealed], agg: bytes, plaintext: int, opening: int) -> None:
        """The decrypted check slot is not zero. The coordinator publishes it; every submitter opens
        its submission and its check values; every participant checks the openings and accuses a
        neighbour whose claim contradicts its own (proven) one; after the deadline the culprits
        and those that did not open are dropped, and the iteration is tried again."""
        receipt = self._timed("chain", self.market.dispute, self.coordinator_account, self.round_id, agg, plaintext, opening)
        self._record("dispute", receipt, self.setup.coordinator_role, k)
        if self._info()["phase"] == "Closed":
            raise ProtocolViolation(f"iteration {k}: the masks did not cancel in a round whose openings cannot be "
                                    "checked: the round closed, every deposit withdrawable")
        if not self._watch(aggregate_key(k, attempt), agg, plaintext, opening, k):
            raise ProtocolViolation(f"iteration {k}: the coordinator's decryption in its dispute was false; a "
                                    "participant disproved it and the round closed")
        points, active, silent = self.points[k], set(self.active), self._silent(k)
        items, who = [], []
        for i, s in sealed.items():
            opened = None if i in silent else self.members[i].check_opening(s, points, active)
            if opened is not None:
                items.append((self._account(i), self.round_id, *opened))
                who.append(i)
        receipts = self._timed("chain", self.market.open_check_many, items)
        self._record("open check", receipts, self._names(who), k)
        claims = {}
        for i, e in zip(who, self._events(receipts, "CheckOpened")):
            claims[i] = [int(v) for v in e["checks"]]
            m_i, rho_i = int.from_bytes(e["plaintext"], "big"), int.from_bytes(e["opening"], "big")
            self._watch(dispute_key(k, attempt, i + 1), sealed[i].ciphertext, m_i, rho_i, k)
        self._accuse(k, claims, points, active, silent)
        missing = [i for i in sorted(self.active) if i not in claims]
        self._advance(k, attempt, missing)

    def _accuse(self, k: int, claims: dict[int, list[int]], points: dict[int, bytes], active: set[int], silent: set[int]) -> None:
        """Each honest participant that opened compares its check values with its neighbours' and
        proves its own against a neighbour that claims another (once per culprit)."""
        plan = self.plan
        accused: set[int] = set()
        for i in sorted(claims):
            if not self.members[i].honest or i in silent:
                continue
            mine = plan.active_neighbours(i, active)
            for q, j in enumerate(mine):
                if j not in claims or j in accused:
                    continue
                theirs = plan.active_neighbours(j, active)
                if claims[j][theirs.index(i)] == claims[i][q]:
                    continue
                proof = self.members[i].accusation(k, points[j])
                receipt = self._timed("chain", self.market.accuse, self._account(i), self.round_id,
                                      self._account(j).address, claims[i], claims[j], proof)
                self._record("accuse", receipt, self._names([i]), k)
                accused.add(j)

    def publish(self, k: int, answer: Answer, delivery: Delivery) -> None:
        agg, plaintext, opening = self._published or (b"", None, None)
        args = (self.coordinator_account, self.round_id, agg, plaintext, opening)
        if answer.final:
            sums, receipt = self._timed("chain", self.market.conclude, *args)
            self._record("conclude", receipt, self.setup.coordinator_role, k)
        else:
            sums, receipt = self._timed("chain", self.market.publish, *args, answer.prices)
            self._record("publish", receipt, self.setup.coordinator_role, k)
        if list(sums) != list(delivery.sums):
            raise ProtocolViolation(f"iteration {k}: the contract decoded other sums than the coordinator decrypted")
        self._check_later()  # the decryptions of the iterations before
        if self._published is not None:
            self._watch_later(aggregate_key(k, self.attempts[k] - 1), agg, plaintext, opening, k)

    # -- the end ----------------------------------------------------------------------------------
    def settle(self, prices: list[int]) -> MirrorSettlement:
        from ..chain.market import Reveal

        self._check_later()
        info = self._info()
        if info["windows"].challenge:  # nobody challenged: wait the window out
            self._timed("chain", self.chain.mine_until, int(info["challenge_until"]) + 1)
        silent = self._silent(1 << 30)
        revealers = [i for i, s in sorted(self.sealed.items()) if i not in silent]
        own = {i: Reveal(self.sealed[i].reveal, self.sealed[i].salt, MemberKeys.ciphertext_hash(self.sealed[i]))
               for i in revealers}
        receipts = self._timed("chain", self.market.reveal_many, [(self._account(i), self.round_id, own[i]) for i in revealers])
        self._record("reveal", receipts, self._names(revealers))
        revealed = {self._index(e["participant"]): e for e in self._events(receipts, "Revealed")}
        counts = {i for i in revealed if self.setup.participants[i].name not in self._culprits}
        reveals = [own.get(i) if i in counts else None for i in range(len(self.setup.participants))]
        if not self.active <= set(revealed):  # someone keeps its reveal: settle after the window
            self._timed("chain", self.chain.mine_until, int(self._info()["reveal_until"]) + 1)
        result = self._settle_once(reveals)
        return self._settlement(result or self._blame(reveals))

    def _settle_once(self, reveals: list) -> Any:
        """Settles (anyone may: a settlement someone else made first is taken); None when the
        settlement begins the blame step instead."""
        from ..chain.backends import ContractRevert

        blaming = bool(self._info()["blame_until"])
        try:
            result = self._timed("chain", self.market.settle, self.coordinator_account, self.round_id, reveals)
        except ContractRevert:
            info = self._info()
            if info["phase"] == "Settled":
                return self.market.settlement_of(self.round_id)
            if info["blame_until"] and not blaming:  # someone else's settlement began the blame step
                return None
            raise
        self._record("settle", result.receipt, self.setup.coordinator_role)
        return None if self.market.blame_started(result.receipt) else result

    def _index(self, address: str) -> int:
        return [self._account(i).address.lower() for i in range(len(self.setup.participants))].index(address.lower())

    def _blame(self, reveals: list) -> Any:
        """The reveals do not add up to the decrypted sums (or one was withheld): every participant
        that stayed and revealed opens its final ciphertext and masks (one that cannot, a cheat,
        posts nothing), every participant checks the openings, the window passes, and the round
        settles with the culprits settled by the fallback (the proven ones forfeiting)."""
        k = self._info()["iteration"]
        points, active = self.points[k], set(self.active)
        items, who = [], []
        for i in sorted(active):
            if reveals[i] is None:
                continue
            opened = self.members[i].blame_opening(self.sealed[i], points, active)
            if opened is not None:
                items.append((self._account(i), self.round_id, self.sealed[i].reveal, *opened))
                who.append(i)
        receipts = self._timed("chain", self.market.open_blame_many, items)
        self._record("open blame", receipts, self._names(who))
        nbytes = self.coordinator_keys.public.nbytes
        for i, (_, _, _, opened, _) in zip(who, items):
            m_i, rho_i = int.from_bytes(opened[-2 * nbytes:-nbytes], "big"), int.from_bytes(opened[-nbytes:], "big")
            self._watch(blame_key(i + 1), self.sealed[i].ciphertext, m_i, rho_i, None)
        self._timed("chain", self.chain.mine_until, int(self._info()["challenge_until"]) + 1)
        counted = []
        for i, r in enumerate(reveals):
            m = self.market.member(self.round_id, self._account(i))
            stayed = not m["dropped_before_plus_one"]
            counted.append(r if r is not None and not m["culprit"] and not (stayed and not m["cleared"]) else None)
        result = self._settle_once(counted)
        for i, r in enumerate(counted):
            if r is None and i in self.active:  # settled by the fallback: out of the final sums
                self.active.discard(i)
        return result

    def _settlement(self, result) -> MirrorSettlement:
        return settlement_by_role(result, self.setup, self.addresses)

    def close_round(self) -> None:
        self._later.clear()  # nothing is settled: no decryption needs a challenge
        receipt = self._timed("chain", self.market.close, self.coordinator_account, self.round_id)
        self._record("close", receipt, self.setup.coordinator_role)

    def finish(self) -> None:
        self._leave()
        if self.market is None or not hasattr(self, "round_id"):
            return
        t0 = time.perf_counter()
        unique = {a.address: (name, a) for name, a in self.accounts.items()}
        holders = [(name, a) for name, a in unique.values() if self.market.balance(self.round_id, a) > 0]
        phase = self._info()["phase"]
        if holders and phase in ("Settled", "Closed"):
            self._record("withdraw", self.market.withdraw_many([a for _, a in holders], self.round_id),
                         [name for name, _ in holders])
        self.seconds["chain"] += time.perf_counter() - t0

    def mirror(self, prices: list[int]) -> MirrorSettlement:
        """The Python mirror of the rule applied to the settled reveals (equals the chain's)."""
        length = len(next(iter(self.sealed.values())).reveal)
        return self._mirror(self.setup, [r or [0] * length for r in self._final_reveals()], prices)


def settlement_by_role(result, setup: RoundSetup, addresses: dict[str, str]) -> MirrorSettlement:
    """A settlement booked on chain (:class:`~offchain.chain.market.Settlement`, by address) by
    participant (registration order) and payee role."""
    names = [p.name for p in setup.participants]
    paid = result.payments
    by_address = {addresses[r].lower(): r for r in (*setup.payees, setup.coordinator_role)}
    payees: dict[str, int] = {}
    participants = {addresses[n].lower() for n in names}
    for address, amount in paid.items():
        if address.lower() not in participants:
            role = by_address.get(address.lower(), address)
            payees[role] = payees.get(role, 0) + amount
    return MirrorSettlement([paid.get(addresses[n], 0) for n in names], payees,
                            [result.bills[addresses[n]] for n in names] if result.bills else [])


def describe(transport: Transport) -> dict[str, Any]:
    """The chain block of the run record (None for the in-process transports)."""
    info = transport.chain_info
    return None if info is None else dict(info.__dict__)
