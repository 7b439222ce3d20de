"""How the messages of a round move between its parties: one interface, three implementations.

* :class:`PlainTransport`: in process, in the clear. The coordinator receives every
  participant's vector and sums it exactly; pair messages are handed over as they are (standard
  ADMM's leak). The reference mode.
* :class:`PrivateTransport`: in process, private. Each participant masks, packs and encrypts its
  vector under the coordinator's Paillier key and seals each pair message with a one-time pad
  (:class:`~offchain.protocol.keys.MemberKeys`); the transport multiplies the ciphertexts (what
  the contract does on chain) and the coordinator decrypts only the product.
* :class:`ChainTransport`: the same sealing, with the contract as the bus: ``createRound``,
  ``register``, ``deposit``, ``start``, then per iteration ``submit`` (ciphertext, commitment,
  pair messages), ``aggregate`` and ``publish`` (or ``conclude``), and ``settle`` or ``close``,
  ``withdraw`` at the end.

All three carry the same integers, so a round follows the same trajectory in every mode. The
in-process transports settle with the mechanism's Python mirror of its rule contract.
"""
from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from ..errors import ProtocolViolation
from ..framework import Answer, Contribution, MirrorSettlement, RoundSetup
from ..record import Transaction
from ..privacy.packing import SlotLayout
from .keys import CoordinatorKeys, MemberKeys


@dataclass
class Delivery:
    """What one iteration's exchange delivers: the sums (to the coordinator) and, per
    participant, the pair messages sent to it ({sender index: values})."""
    sums: list[int]
    received: list[dict[int, list[int]]]
    individual: list[list[int]] | None = None  # plain mode only: what the coordinator saw of each


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

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.gas: dict[str, list[int]] = defaultdict(list)
        self.transactions: list[Transaction] = []
        self.addresses: dict[str, str] = {}
        self.chain_info: ChainInfo | None = None

    @abstractmethod
    def open(self, setup: RoundSetup, parent: "Transport | None" = None) -> None: ...

    def start(self, prices: list[int]) -> None:
        pass

    @abstractmethod
    def exchange(self, k: int, contributions: list[Contribution]) -> Delivery: ...

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

    # -- helpers shared by the implementations --------------------------------------------------
    def _name_addresses(self, setup: RoundSetup) -> None:
        """Stand-in addresses of the parties of an in-process round (0x...01, 0x...02, ...)."""
        names = [p.name for p in setup.participants]
        if len(set(names)) != len(names):
            raise ProtocolViolation("participants must have distinct names")
        roles = [setup.coordinator_role, *setup.payees, *names]
        self.addresses = {r: to_checksum_address(f"0x{i + 1:040x}") for i, r in enumerate(roles)}
        self.addresses["coordinator"] = self.addresses[setup.coordinator_role]

    def _mirror(self, setup: RoundSetup, reveals: list[list[int]], prices: list[int]) -> MirrorSettlement:
        return setup.settlement(reveals, prices, self.addresses)


class PlainTransport(Transport):
    """In process, in the clear."""

    kind = "plaintext"

    def open(self, setup: RoundSetup, parent: Transport | None = None) -> None:
        self.setup = setup
        self._name_addresses(setup)
        self.reveals: list[list[int]] = []

    def exchange(self, k: int, contributions: list[Contribution]) -> Delivery:
        n = len(contributions)
        sums = [sum(col) for col in zip(*(c.sums for c in contributions))] if self.setup.slots else []
        received: list[dict[int, list[int]]] = [{} for _ in range(n)]
        for i, c in enumerate(contributions):
            for j, v in c.pairs.items():
                received[j][i] = [int(x) for x in v]
        self.reveals = [c.committed for c in contributions]
        return Delivery(sums, received, individual=[list(c.sums) for c in contributions])

    def settle(self, prices: list[int]) -> MirrorSettlement:
        return self._mirror(self.setup, self.reveals, prices)


class _Sealing:
    """The sealing shared by the private transports: parties' keys, layout, pair routing."""

    def _keys(self, setup: RoundSetup, key_bits: int) -> None:
        t0 = time.perf_counter()
        self.coordinator_keys = CoordinatorKeys(key_bits) if setup.encrypted else None
        self.layout = (SlotLayout.for_round(setup.slots, len(setup.participants), key_bits, slot_bits=setup.slot_bits)
                       if setup.encrypted else None)
        self.seconds["setup"] += time.perf_counter() - t0

    def _join(self, peers: list[tuple[str, bytes]], context: bytes) -> None:
        key = self.coordinator_keys.public if self.coordinator_keys else None
        for m in self.members:
            m.join(key, self.layout, peers, context)
        self.others = {a: [b for b, _ in peers if b != a] for a, _ in peers}

    def _seal_all(self, round_id: int, k: int, contributions: list[Contribution]):
        t0 = time.perf_counter()
        addresses = [m.address for m in self.members]
        sealed = []
        for i, (m, c) in enumerate(zip(self.members, contributions)):
            partners = {addresses[j]: v for j, v in c.pairs.items()} if self.setup.pair_lanes else {}
            if self.setup.pair_lanes and set(partners) != set(self.others[m.address]):
                raise ProtocolViolation(f"{self.setup.participants[i].name}: pair messages must go to every other "
                                        "participant of a round with pair lanes")
            sealed.append(m.seal(round_id, k, c, partners))
        self.seconds["encrypt"] += time.perf_counter() - t0
        return sealed

    def _route(self, k: int, blobs: list[bytes]) -> list[dict[int, list[int]]]:
        """Each participant opens the blocks sealed for it."""
        n, lanes = len(self.members), self.setup.pair_lanes
        received: list[dict[int, list[int]]] = [{} for _ in range(n)]
        if not lanes:
            return received
        for i, blob in enumerate(blobs):
            sender = self.members[i].address
            for j, m in enumerate(self.members):
                if j != i:
                    received[j][i] = m.open_pairs(k, sender, blob, lanes, self.others[sender])
        return received

    def _decrypt(self, aggregate: int) -> tuple[list[int], int, int]:
        t0 = time.perf_counter()
        out = self.coordinator_keys.open(aggregate, self.layout)
        self.seconds["decrypt"] += time.perf_counter() - t0
        return out

    def _leave(self) -> None:
        for m in self.members:
            m.leave()


class PrivateTransport(_Sealing, Transport):
    """In process, masked and encrypted (the chain's sealing without the chain)."""

    kind = "private"

    def __init__(self, key_bits: int = 2048) -> None:
        super().__init__()
        self.key_bits = key_bits

    def open(self, setup: RoundSetup, parent: Transport | None = None) -> None:
        self.setup = setup
        self._name_addresses(setup)
        self._keys(setup, self.key_bits)
        self.members = [MemberKeys(self.addresses[p.name]) for p in setup.participants]
        self._join([(m.address, m.public_bytes) for m in self.members], b"gridshare/in-process")
        self.sealed: list = []

    def exchange(self, k: int, contributions: list[Contribution]) -> Delivery:
        self.sealed = self._seal_all(0, k, contributions)
        sums: list[int] = []
        if self.coordinator_keys is not None:
            key = self.coordinator_keys.public
            aggregate = key.add(*(int.from_bytes(s.ciphertext, "big") for s in self.sealed))
            sums, _, _ = self._decrypt(aggregate)
        return Delivery(sums, self._route(k, [s.pairs for s in self.sealed]))

    def settle(self, prices: list[int]) -> MirrorSettlement:
        return self._mirror(self.setup, [s.reveal for s in self.sealed], prices)

    def finish(self) -> None:
        self._leave()


class ChainTransport(_Sealing, Transport):
    """The round as transactions of a PrivateRounds contract (deployed here unless given)."""

    kind = "chain"

    def __init__(self, chain, key_bits: int = 2048, verify_openings: bool = True, market=None,
                 rules: dict[str, str] | None = None, hardfork: str | None = None, account_offset: int = 0) -> None:
        super().__init__()
        self.chain, self.key_bits, self.verify_openings = chain, key_bits, verify_openings
        self.account_offset = account_offset
        self.market = market
        self.rules = dict(rules or {})  # rule contract name -> deployed address (reused)
        self.hardfork = hardfork or chain.hardfork

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

    def _timed(self, phase: str, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[phase] += time.perf_counter() - t0

    # -- the round -------------------------------------------------------------------------------
    def open(self, setup: RoundSetup, parent: Transport | None = None) -> None:
        from ..chain.market import Market, RoundParams, deploy_rule

        self.setup = setup
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
        params = RoundParams(
            rule=rule, slots=setup.slots, max_iterations=setup.max_iterations, price_floor=setup.price_floor,
            price_cap=setup.price_cap, grid_account=self.addresses["grid"], n=key.n if key else None,
            slot_bits=self.layout.slot_bits if key else 0, slot_width=self.layout.slot_width if key else 0,
            verify_openings=self.verify_openings and key is not None,
            mechanism=json.dumps(setup.public_rule, sort_keys=True), pair_lanes=setup.pair_lanes,
            terms=setup.terms(self.addresses) if setup.terms else b"",
            members=[self.addresses[p.name] for p in setup.participants] if setup.allow_list else [],
            parent_round_id=parent.round_id if parent is not None else 0)
        self.round_id, receipt = self.market.create_round(operator, params)
        self._record("create_round", receipt, setup.coordinator_role)
        self.members = [MemberKeys(a.address) for a in parts]
        # one by one: the registration order is the participants' order (and the allow-list's)
        for p, account, m in zip(setup.participants, parts, self.members):
            self._record("register", self.market.register(account, self.round_id, m.public_bytes), p.name)
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
        context = self.market.address.encode() + self.round_id.to_bytes(32, "big") + chain.chain_id.to_bytes(32, "big")
        self.seconds["chain"] += time.perf_counter() - t0
        self._join(peers, context)
        self.chain_info = ChainInfo(kind=chain.kind, url=chain.url, chain_id=chain.chain_id, hardfork=self.hardfork,
                                    market=self.market.address, token=self.market.token.address, rule=rule,
                                    round_id=self.round_id, parent_round_id=params.parent_round_id)

    def account_of(self, name: str):
        return self.accounts[name]

    def start(self, prices: list[int]) -> None:
        receipt = self._timed("chain", self.market.start, self.coordinator_account, self.round_id, prices)
        self._record("start", receipt, self.setup.coordinator_role, 0)

    def exchange(self, k: int, contributions: list[Contribution]) -> Delivery:
        self.sealed = self._seal_all(self.round_id, k, contributions)
        parts = [self.accounts[p.name] for p in self.setup.participants]
        items = [(a, self.round_id, k, s.ciphertext, s.commitment, s.pairs) for a, s in zip(parts, self.sealed)]
        receipts = self._timed("chain", self.market.submit_many, items)
        self._record("submit", receipts, [p.name for p in self.setup.participants], k)
        blobs = [s.pairs for s in self.sealed]
        if self.setup.pair_lanes:  # what each partner reads: the PairMessages events of the receipts
            events = [self.chain.events(r, self.market.contract, "PairMessages") for r in receipts]
            blobs = [bytes(ev[0]["args"]["messages"]) for ev in events]
        received = self._route(k, blobs)
        self._aggregate, sums, self._plaintext, self._opening = b"", [], None, None
        if self.coordinator_keys is not None:
            agg, receipt = self._timed("chain", self.market.aggregate, self.coordinator_account, self.round_id,
                                       [s.ciphertext for s in self.sealed], [s.commitment for s in self.sealed])
            self._record("aggregate", receipt, self.setup.coordinator_role, k)
            self._aggregate = agg
            sums, self._plaintext, self._opening = self._decrypt(int.from_bytes(agg, "big"))
        return Delivery(sums, received)

    def publish(self, k: int, answer: Answer, delivery: Delivery) -> None:
        args = (self.coordinator_account, self.round_id, self._aggregate, self._plaintext, self._opening)
        if answer.final:
            sums, receipt = self._timed("chain", self.market.conclude, *args)
            self._record("conclude", receipt, self.setup.coordinator_role, k)
        else:
            sums, receipt = self._timed("chain", self.market.publish, *args, answer.prices)
            self._record("publish", receipt, self.setup.coordinator_role, k)
        if list(sums) != list(delivery.sums):
            raise ProtocolViolation(f"iteration {k}: the contract decoded other sums than the coordinator decrypted")

    def settle(self, prices: list[int]) -> MirrorSettlement:
        from ..chain.market import Reveal

        reveals = [Reveal(s.reveal, s.salt, MemberKeys.ciphertext_hash(s)) for s in self.sealed]
        result = self._timed("chain", self.market.settle, self.coordinator_account, self.round_id, reveals)
        self._record("settle", result.receipt, self.setup.coordinator_role)
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
        if holders:
            self._record("withdraw", self.market.withdraw_many([a for _, a in holders], self.round_id),
                         [name for name, _ in holders])
        self.seconds["chain"] += time.perf_counter() - t0

    def mirror(self, prices: list[int]) -> MirrorSettlement:
        """The Python mirror of the rule applied to the settled reveals (equals the chain's)."""
        return self._mirror(self.setup, [s.reveal for s in self.sealed], prices)


def describe(transport: Transport) -> dict[str, Any]:
    """The chain block of the run record (None for the in-process transports)."""
    info = transport.chain_info
    return None if info is None else dict(info.__dict__)
