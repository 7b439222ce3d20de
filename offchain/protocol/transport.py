"""How the messages of a round move between its parties: one interface, three implementations.

* :class:`PlainTransport`: in process, in the clear. The coordinator receives every
  participant's vector and sums it exactly; pair messages are handed over as they are (standard
  ADMM's leak). The reference mode.
* :class:`PrivateTransport`: in process, private. Each participant masks, packs and encrypts its
  vector under the coordinator's Paillier key and seals each pair message with a one-time pad
  (:class:`~offchain.protocol.keys.MemberKeys`); the transport multiplies the ciphertexts (what
  the contract does on chain) and the coordinator decrypts only the product, less the masks the
  survivors' recovery partials remove.
* :class:`ChainTransport`: the same sealing, with the contract as the bus: ``createRound``,
  ``register``, ``deposit``, ``start``, ``share`` (rounds with dropout recovery), then per
  iteration ``submit`` (ciphertext, commitment, pair messages, next mask point), ``advance``
  after a deadline when someone is missing, ``recover``, ``aggregate`` (in chunks) and
  ``publish`` (or ``conclude``), and ``settle`` (after the challenge window) or ``close``,
  ``withdraw`` at the end.

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

from ..errors import ProtocolViolation
from ..framework import Answer, Contribution, MirrorSettlement, RoundSetup
from ..privacy import secagg
from ..privacy.packing import SlotLayout
from ..record import Transaction
from .keys import CoordinatorKeys, MemberKeys, Sealed

FINAL, DROPPED_REVEALED, DROPPED_SILENT = 0, 1, 2  # a participant's standing at settlement (RoundTypes.Standing)


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
        self.false_partials: dict[int, list[int]] = {}  # survivor -> iterations its recovery post failed its proofs
        self.blamed: dict[str, int] = {}  # after a blame step: culprit (or the coordinator) -> deposit slashed

    @abstractmethod
    def open(self, setup: RoundSetup, parent: "Transport | None" = None) -> None: ...

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
        sums = [sum(col) for col in zip(*(c.sums for c in live))] if self.setup.slots else []
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
    """The sealing shared by the private transports: parties' keys, layout, pair routing and the
    dropout recovery (:mod:`offchain.privacy.secagg`). ``kept(party)`` gives a party's
    :class:`~offchain.keystore.PartySecrets` in a run's key store (None: secrets in memory only)."""

    kept = None

    def _kept(self, party: str):
        return self.kept(party) if self.kept is not None else None

    def _keys(self, setup: RoundSetup, key_bits: int, recovery: bool) -> None:
        from ..privacy.paillier import start_worker

        t0 = time.perf_counter()
        if setup.encrypted:
            start_worker()  # forked before any key exists: it holds no secret
        self.coordinator_keys = CoordinatorKeys(key_bits, self._kept("coordinator")) if setup.encrypted else None
        self.layout = (SlotLayout.for_round(setup.slots, len(setup.participants), key_bits, slot_bits=setup.slot_bits)
                       if setup.encrypted else None)
        n = len(setup.participants)
        self.threshold = secagg.default_threshold(secagg.degree_for(n)) if recovery and setup.encrypted else 0
        self.seconds["setup"] += time.perf_counter() - t0

    def _join(self, peers: list[tuple[str, bytes]], context: bytes) -> None:
        key = self.coordinator_keys.public if self.coordinator_keys else None
        self.plan = secagg.Plan([a for a, _ in peers], self.threshold, context) if self.threshold else None
        for m in self.members:
            m.join(key, self.layout, peers, context, self.plan)
        self.points: dict[int, dict[int, bytes]] = {}  # iteration -> {position: mask point}
        self.sealed: dict[int, Sealed] = {}  # each participant's latest accepted submission
        self.false_partials: dict[int, list[int]] = {}  # survivor -> iterations its recovery post failed its proofs

    def _take_shares(self, materials: dict[int, bytes]) -> None:
        """Every participant keeps the shares sealed for it; the mask points of iteration 0."""
        self.points[0] = {}
        for sender, material in materials.items():
            for m in self.members:
                if m.position != sender:
                    m.take_shares(sender, material)
            self.points[0][sender] = bytes(material[:secagg.POINT_BYTES])

    def _seal_all(self, round_id: int, k: int, contributions: dict[int, Contribution], senders: list[int]) -> dict[int, Sealed]:
        t0 = time.perf_counter()
        addresses = [m.address.lower() for m in self.members]
        out = {}
        for i in senders:
            c = contributions[i]
            partners = {addresses[j]: v for j, v in c.pairs.items() if j in self.active} if self.setup.pair_lanes else {}
            if self.setup.pair_lanes and set(partners) != {addresses[j] for j in self.active if j != i}:
                raise ProtocolViolation(f"{self.setup.participants[i].name}: pair messages must go to every other "
                                        "active participant of a round with pair lanes")
            out[i] = self.members[i].seal(round_id, k, c, partners, self.points.get(k), self.active)
        self.seconds["encrypt"] += time.perf_counter() - t0
        return out

    def _route(self, k: int, blobs: dict[int, bytes], active: set[int]) -> list[dict[int, list[int]]]:
        """Each active participant opens the blocks sealed for it (senders sealed for the
        participants active when they submitted: ``active``)."""
        n, lanes = len(self.members), self.setup.pair_lanes
        received: list[dict[int, list[int]]] = [{} for _ in range(n)]
        if not lanes:
            return received
        for i, blob in blobs.items():
            sender = self.members[i].address
            others = [self.members[j].address for j in sorted(active) if j != i]
            for j in self.active:
                if j != i:
                    received[j][i] = self.members[j].open_pairs(k, sender, blob, lanes, others)
        return received

    def _check_drops(self, k: int, gone: list[int]) -> None:
        if gone and self.coordinator_keys is not None and self.plan is None:
            raise ProtocolViolation(f"iteration {k}: {len(gone)} participant(s) dropped out of a round without "
                                    "dropout recovery; its masks cannot be removed")

    def _recovery_posts(self, k: int, active: set[int], senders: list[int]) -> dict[int, bytes]:
        """Every submitter's recovery partials of iteration k."""
        return {i: self.members[i].partials(k, self.points[k], active, set(senders)) for i in senders}

    def _corrections(self, k: int, active: set[int], senders: list[int], posts: dict[int, bytes]) -> list[int]:
        """The mask corrections from the proven partials (a false partial is left out)."""
        t0 = time.perf_counter()
        try:
            checked = self.plan.check(k, active, set(senders), posts, self.points[k])
            for holder in checked.false:
                self.false_partials.setdefault(holder, []).append(k)
            return self.plan.corrections(k, active, set(senders), checked, self.layout.periods, self.layout.slot_bits)
        except ValueError as exc:
            raise ProtocolViolation(f"iteration {k}: the dropout recovery failed: {exc}") from None
        finally:
            self.seconds["recover"] += time.perf_counter() - t0

    def _decrypt(self, aggregate: int, corrections: list[int] | None) -> tuple[list[int], int, int]:
        t0 = time.perf_counter()
        out = self.coordinator_keys.open(aggregate, self.layout, corrections)
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

    def __init__(self, key_bits: int = 2048, drops: dict[int, list[str]] | None = None, recovery: bool = True) -> None:
        super().__init__(drops)
        self.key_bits, self.recovery = key_bits, recovery

    def open(self, setup: RoundSetup, parent: Transport | None = None) -> None:
        self._begin(setup)
        self._name_addresses(setup)
        self._keys(setup, self.key_bits, self.recovery)
        self.members = [MemberKeys(self.addresses[p.name]) for p in setup.participants]
        self._join([(m.address, m.public_bytes) for m in self.members], b"gridshare/in-process")
        if self.plan is not None:
            self._take_shares({m.position: m.share_material() for m in self.members})

    def exchange(self, k: int, contributions: dict[int, Contribution]) -> Delivery:
        senders, gone = self._submitters(k, contributions)
        self._check_drops(k, gone)
        active = set(self.active)
        sealed = self._seal_all(0, k, contributions, senders)
        self._drop(k, gone)
        self.sealed.update(sealed)
        sums: list[int] = []
        if self.coordinator_keys is not None:
            corrections = None
            if self.plan is not None:
                corrections = self._corrections(k, active, senders, self._recovery_posts(k, active, senders))
                self.points[k + 1] = {i: s.next_point for i, s in sealed.items()}
            key = self.coordinator_keys.public
            aggregate = key.add(*(int.from_bytes(s.ciphertext, "big") for s in sealed.values()))
            sums, _, _ = self._decrypt(aggregate, corrections)
        return Delivery(sums, self._route(k, {i: s.pairs for i, s in sealed.items()}, active), dropped=gone)

    def settle(self, prices: list[int]) -> MirrorSettlement:
        length = len(next(iter(self.sealed.values())).reveal)
        return self._mirror(self.setup, [r or [0] * length for r in self._final_reveals()], prices)

    def finish(self) -> None:
        self._leave()


class ChainTransport(_Sealing, Transport):
    """The round as transactions of a PrivateRounds contract (deployed here unless given)."""

    kind = "chain"

    def __init__(self, chain, key_bits: int = 2048, verify_openings: bool = True, market=None,
                 rules: dict[str, str] | None = None, hardfork: str | None = None, account_offset: int = 0,
                 drops: dict[int, list[str]] | None = None, recovery: bool = True,
                 windows: dict[str, int | None] | None = None, kept=None, announce=None,
                 cheats: Sequence[str] = ()) -> None:
        super().__init__(drops)
        self.kept = kept
        self.cheats = list(cheats)  # participants (names) that encrypt other values than they commit to
        self.announce = announce  # called with the round's market and id once it is created
        self.chain, self.key_bits, self.verify_openings = chain, key_bits, verify_openings
        self.account_offset, self.recovery = account_offset, recovery
        self.market = market
        self.rules = dict(rules or {})  # rule contract name -> deployed address (reused)
        self.hardfork = hardfork or chain.hardfork
        self.windows = dict(windows or {})  # deadlines given ({window: blocks}); the rest sized to the round

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

    def _timed(self, phase: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[phase] += time.perf_counter() - t0

    def _names(self, indices) -> list[str]:
        return [self.setup.participants[i].name for i in indices]

    def _events(self, receipts, event: str) -> list[dict]:
        return [dict(ev["args"]) for r in receipts for ev in self.chain.events(r, self.market.contract, event)]

    # -- the round -------------------------------------------------------------------------------
    def open(self, setup: RoundSetup, parent: Transport | None = None) -> None:
        from dataclasses import replace

        from ..chain.market import Market, RoundParams, Windows, deploy_rule

        self._begin(setup)
        chain = self.chain
        n = len(setup.participants)
        accounts = chain.accounts(n + 1 + len(setup.payees), offset=self.account_offset)
        self.coordinator_account, payees, parts = accounts[0], accounts[1:1 + len(setup.payees)], accounts[1 + len(setup.payees):]
        self.minter = self.coordinator_account  # the token's owner mints the collateral
        if parent is not None:  # a nested round: its coordinator is a participant of the parent
            self.coordinator_account = parent.account_of(setup.coordinator.name)
            self.minter = parent.minter
        self.accounts = {setup.coordinator_role: self.coordinator_account, "coordinator": self.coordinator_account,
                         **dict(zip(setup.payees, payees)), **{p.name: a for p, a in zip(setup.participants, parts)}}
        self.addresses = {k: a.address for k, a in self.accounts.items()}
        self._keys(setup, self.key_bits, self.recovery)
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
        if key is None or not self.verify_openings:
            windows = replace(windows, challenge=0)
        params = RoundParams(
            rule=rule, slots=setup.slots, max_iterations=setup.max_iterations, price_floor=setup.price_floor,
            price_cap=setup.price_cap, grid_account=self.addresses["grid"], n=key.n if key else None,
            slot_bits=self.layout.slot_bits if key else 0, slot_width=self.layout.slot_width if key else 0,
            mechanism=json.dumps(setup.public_rule, sort_keys=True), pair_lanes=setup.pair_lanes,
            terms=setup.terms(self.addresses) if setup.terms else b"",
            members=[self.addresses[p.name] for p in setup.participants] if setup.allow_list else [],
            signed_members=not setup.allow_list, threshold=self.threshold, windows=windows,
            parent_round_id=parent.round_id if parent is not None else 0)
        self.round_id, receipt = self.market.create_round(operator, params)
        self._record("create_round", receipt, setup.coordinator_role)
        if self.announce is not None:  # before any deposit: where a refund would look
            self.announce({"market": self.market.address, "token": self.market.token.address, "round_id": self.round_id,
                           "url": chain.url, "chain_id": chain.chain_id})
        self.members = [MemberKeys(a.address, self._kept(a.address), cheat=p.name in self.cheats)
                        for p, a in zip(setup.participants, parts)]
        # one by one: the registration order is the participants' order (and the allow-list's)
        for i, (p, account, m) in enumerate(zip(setup.participants, parts, self.members)):
            item = (account, self.round_id, m.public_bytes)
            if params.signed_members:
                item += (i, self.market.member_signature(operator, self.round_id, account, i))
            self._record("register", self.market.register_many([item]), p.name)
        deposits = [(self.accounts[name], setup.collateral(name), name)
                    for name in [*setup.payees, *(p.name for p in setup.participants)] if setup.collateral(name) > 0]
        if deposits:
            self._record("mint", self.market.token.mint_many(self.minter, [(a, v) for a, v, _ in deposits]),
                         setup.coordinator_role)
            self._record("deposit", self.market.deposit_many([(a, self.round_id, v) for a, v, _ in deposits]),
                         [name for *_, name in deposits])
        peers = self.market.participants(self.round_id)
        if [a.lower() for a, _ in peers] != [a.address.lower() for a in parts]:
            raise ProtocolViolation("the chain's registration order differs from the order registered")
        self.context = secagg.round_context(self.market.address, self.round_id, chain.chain_id)
        self.seconds["chain"] += time.perf_counter() - t0
        self._join(peers, self.context)
        self.chain_info = ChainInfo(kind=chain.kind, url=chain.url, chain_id=chain.chain_id, hardfork=self.hardfork,
                                    market=self.market.address, token=self.market.token.address, rule=rule,
                                    round_id=self.round_id, parent_round_id=params.parent_round_id)

    def account_of(self, name: str):
        return self.accounts[name]

    def start(self, prices: list[int]) -> None:
        receipt = self._timed("chain", self.market.start, self.coordinator_account, self.round_id, prices)
        self._record("start", receipt, self.setup.coordinator_role, 0)
        if self.plan is None:
            return
        items = [(self.accounts[p.name], self.round_id, m.share_material())
                 for p, m in zip(self.setup.participants, self.members)]
        receipts = self._timed("chain", self.market.share_many, items)
        self._record("share", receipts, self._names(range(len(items))))
        by_address = {m.address.lower(): m.position for m in self.members}
        self._take_shares({by_address[e["participant"].lower()]: bytes(e["material"])
                           for e in self._events(receipts, "Shared")})

    def _advance_past_deadline(self, k: int, gone: list[int]) -> None:
        """Waits out the step's deadline and drops ``gone`` (anyone may; the coordinator does)."""
        info = self.market.round_info(self.round_id)
        self._timed("chain", self.chain.mine_until, int(info["deadline"]) + 1)
        receipt = self._timed("chain", self.market.advance, self.coordinator_account, self.round_id,
                              [self.members[i].address for i in gone])
        self._record("advance", receipt, self.setup.coordinator_role, k)

    def exchange(self, k: int, contributions: dict[int, Contribution]) -> Delivery:
        senders, gone = self._submitters(k, contributions)
        self._check_drops(k, gone)
        active = set(self.active)
        sealed = self._seal_all(self.round_id, k, contributions, senders)
        items = [(self.accounts[self.setup.participants[i].name], self.round_id, k, s.ciphertext, s.commitment,
                  s.pairs, s.next_point) for i, s in sealed.items()]
        receipts = self._timed("chain", self.market.submit_many, items)
        self._record("submit", receipts, self._names(sealed), k)
        if gone:
            self._advance_past_deadline(k, gone)
        self._drop(k, gone)
        self.sealed.update(sealed)
        blobs = {i: s.pairs for i, s in sealed.items()}
        if self.setup.pair_lanes:  # what each partner reads: the PairMessages events of the receipts
            events = self._events(receipts, "PairMessages")
            blobs = dict(zip(sealed, (bytes(e["messages"]) for e in events)))
        received = self._route(k, blobs, active)
        self._aggregate, sums, self._plaintext, self._opening, self._corrections_k = b"", [], None, None, []
        if self.coordinator_keys is not None:
            corrections = None
            if self.plan is not None:
                posts = self._recovery_posts(k, active, senders)
                rec = self._timed("chain", self.market.recover_many,
                                  [(self.accounts[self.setup.participants[i].name], self.round_id, k, d)
                                   for i, d in posts.items()])
                self._record("recover", rec, self._names(posts), k)
                corrections = self._corrections(k, active, senders, posts)
                self.points[k + 1] = {i: s.next_point for i, s in sealed.items()}
            agg, receipts = self._timed("chain", self.market.aggregate, self.coordinator_account, self.round_id,
                                        [s.ciphertext for s in sealed.values()], [s.commitment for s in sealed.values()])
            self._record("aggregate", receipts, self.setup.coordinator_role, k)
            self._aggregate = agg
            sums, self._plaintext, self._opening = self._decrypt(int.from_bytes(agg, "big"), corrections)
            self._corrections_k = corrections or []
        return Delivery(sums, received, dropped=gone)

    def publish(self, k: int, answer: Answer, delivery: Delivery) -> None:
        args = (self.coordinator_account, self.round_id, self._aggregate, self._plaintext, self._opening)
        if answer.final:
            sums, receipt = self._timed("chain", self.market.conclude, *args, corrections=self._corrections_k)
            self._record("conclude", receipt, self.setup.coordinator_role, k)
        else:
            sums, receipt = self._timed("chain", self.market.publish, *args, answer.prices,
                                        corrections=self._corrections_k)
            self._record("publish", receipt, self.setup.coordinator_role, k)
        if list(sums) != list(delivery.sums):
            raise ProtocolViolation(f"iteration {k}: the contract decoded other sums than the coordinator decrypted")

    def settle(self, prices: list[int]) -> MirrorSettlement:
        from ..chain.market import Reveal

        info = self.market.round_info(self.round_id)
        if info["windows"].challenge:  # nobody challenged: wait the window out
            self._timed("chain", self.chain.mine_until, int(info["challenge_until"]) + 1)
        reveals = [Reveal(s.reveal, s.salt, MemberKeys.ciphertext_hash(s)) if i in self.active else None
                   for i, s in sorted(self.sealed.items())] if self.sealed else []
        reveals += [None] * (len(self.setup.participants) - len(reveals))
        result = self._timed("chain", self.market.settle, self.coordinator_account, self.round_id, reveals)
        self._record("settle", result.receipt, self.setup.coordinator_role)
        if self.market.blame_started(result.receipt):
            result = self._blame(reveals)
        names = [p.name for p in self.setup.participants]
        paid = result.payments
        by_address = {self.addresses[r].lower(): r for r in (*self.setup.payees, self.setup.coordinator_role)}
        payees: dict[str, int] = {}
        participants = {self.addresses[n].lower() for n in names}
        for address, amount in paid.items():
            if address.lower() not in participants:
                role = by_address.get(address.lower(), address)
                payees[role] = payees.get(role, 0) + amount
        return MirrorSettlement([paid.get(self.addresses[n], 0) for n in names], payees,
                                [result.bills[self.addresses[n]] for n in names] if result.bills else [])

    def _blame(self, reveals: list) -> Any:
        """The revealed sums differ from the decrypted ones: every participant that stayed to the
        end opens its final ciphertext and masks (one that cannot, a cheat, posts nothing), the
        challenge window passes, and the round settles without the culprits, whose deposits are
        shared among the others."""
        k = self.market.round_info(self.round_id)["iteration"]
        items, culprits = [], []
        for i in sorted(self.active):
            opened = self.members[i].blame_opening(self.sealed[i], k, self.points[k], self.layout)
            if opened is None:
                culprits.append(i)
            else:
                items.append((self.accounts[self.setup.participants[i].name], self.round_id, self.sealed[i].reveal,
                              self.sealed[i].salt, *opened))
        self._record("open blame", self._timed("chain", self.market.open_blame_many, items),
                     [self.setup.participants[i].name for i in sorted(self.active) if i not in culprits])
        self._timed("chain", self.chain.mine_until, int(self.market.round_info(self.round_id)["challenge_until"]) + 1)
        for i in culprits:  # settled as dropped without a reveal, their reveals void
            self.active.discard(i)
            reveals[i] = None
        result = self._timed("chain", self.market.settle, self.coordinator_account, self.round_id, reveals)
        self._record("settle", result.receipt, self.setup.coordinator_role)
        if self.market.round_info(self.round_id)["phase"] == "Closed":
            raise ProtocolViolation("the revealed sums differ from the decrypted ones and no participant opened its "
                                    "final ciphertext consistently: the round closed, every deposit withdrawable")
        names = {self.addresses[r].lower(): r for r in (*(p.name for p in self.setup.participants), self.setup.coordinator_role)}
        self.blamed = {names.get(a.lower(), a): v for a, v in self.market.blamed(result.receipt).items()}
        return result

    def close_round(self) -> None:
        receipt = self._timed("chain", self.market.close, self.coordinator_account, self.round_id)
        self._record("close", receipt, self.setup.coordinator_role)

    def finish(self) -> None:
        self._leave()
        if self.market is None or not hasattr(self, "round_id"):
            return
        t0 = time.perf_counter()
        unique = {a.address: (name, a) for name, a in self.accounts.items()}
        holders = [(name, a) for name, a in unique.values() if self.market.balance(self.round_id, a) > 0]
        phase = self.market.round_info(self.round_id)["phase"]
        if holders and phase in ("Settled", "Closed"):
            self._record("withdraw", self.market.withdraw_many([a for _, a in holders], self.round_id),
                         [name for name, _ in holders])
        self.seconds["chain"] += time.perf_counter() - t0

    def mirror(self, prices: list[int]) -> MirrorSettlement:
        """The Python mirror of the rule applied to the settled reveals (equals the chain's)."""
        length = len(next(iter(self.sealed.values())).reveal)
        return self._mirror(self.setup, [r or [0] * length for r in self._final_reveals()], prices)


def describe(transport: Transport) -> dict[str, Any]:
    """The chain block of the run record (None for the in-process transports)."""
    info = transport.chain_info
    return None if info is None else dict(info.__dict__)
