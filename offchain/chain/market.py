"""Typed wrappers of the generic round contract (PrivateRounds), its settlement rules and the
SettlementToken. Thin: no mechanism math. Amounts follow the one sign convention of the project:
positive = paid by the account."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address

from ..framework import MIN_PARTICIPANTS  # noqa: F401 - PrivateRounds.MIN_PARTICIPANTS, re-exported
from .backends import Chain, ContractRevert, _revert_data

PHASES = ("Registering", "Iterating", "Concluded", "Settled", "Closed")
STEPS = ("Submitting", "Aggregating", "Disputing")
CLOSE_REASONS = ("ByCoordinator", "CoordinatorLate", "TooFewParticipants", "OpeningDisproved", "DisputeUnresolved",
                 "MasksDoNotCancel", "RevealsDoNotAddUp", "NotSettled")
DROP_REASONS = ("MissedSubmission", "NoCollateral", "MissedOpening", "Culprit")
FAULTS = ("WithheldReveal", "FalseOpening", "FalseCheck", "SumCheated", "NotOpened", "CoordinatorLate",
          "CoordinatorFalseOpening", "CoordinatorFalseSums", "Overdrawn")
CULPRIT_FAULTS = ("WithheldReveal", "FalseOpening", "FalseCheck", "SumCheated", "Overdrawn")  # a participant forfeits
MARKET_CONTRACT = "PrivateRounds"
TOKEN_CONTRACT = "SettlementToken"
MODULES = ("PaillierMath", "RoundOpenings", "RoundSettlement", "RoundDisputes")  # deployed before PrivateRounds


@dataclass(frozen=True)
class Windows:
    """A round's deadlines in blocks (``RoundParams.windows``; docs/protocol.md, "Deadlines")."""
    registration: int = 100
    submission: int = 20  # every participants' step: an attempt, a dispute's openings and accusations, reveals, blame
    coordinator: int = 40
    challenge: int = 10  # 0: openings are not checked

    @classmethod
    def for_round(cls, participants: int, **given: int | None) -> "Windows":
        """Deadlines that leave every party room on a chain that mines a block per transaction (a
        dev chain): steps where each participant sends one transaction get two blocks each; the
        coordinator's step one block each too, since automine mines one block per transaction
        received, so the participants' batch that ends a step is followed by up to one empty block
        per transaction that shared a block (62 such blocks at 200 participants ate a window of 44 in
        the load benchmark); values in ``given`` (not None) win."""
        auto = cls(registration=60 + 6 * participants, submission=20 + 2 * participants,
                   coordinator=40 + participants, challenge=10)
        return replace(auto, **{k: v for k, v in given.items() if v is not None})

    def as_tuple(self) -> tuple:
        return (self.registration, self.submission, self.coordinator, self.challenge)


def child_round_blocks(participants: int, iterations: int) -> int:
    """The most blocks a child round of ``participants`` and ``iterations`` takes on a chain that
    mines a block per transaction (and up to one empty block after each that shared one): its
    creation, registrations, mints, approvals and deposits, two blocks per submission, aggregation
    and publication per iteration, its challenge window, reveals, settlement and withdrawals."""
    m = participants
    setup = 3 + 2 * (3 * m + 3)
    per_iteration = 2 * (m + 3)
    end = Windows.for_round(m).challenge + 2 * (2 * m + 3)
    return setup + iterations * per_iteration + end


@dataclass(frozen=True)
class RoundParams:
    """``createRound``'s parameters (docs/protocol.md); ``n=None``: a round without a key."""
    rule: str  # address of the mechanism's settlement rule contract
    slots: int
    max_iterations: int
    price_floor: list[int]
    price_cap: list[int]
    grid_account: str
    n: int | None = None
    slot_bits: int = 0
    slot_width: int = 0
    mechanism: str = ""  # the mechanism and its public update rule (JSON), emitted for auditors
    pair_lanes: int = 0  # 64-bit words per other participant in submit's pair messages (0: none)
    terms: bytes = b""  # the mechanism's ABI-encoded terms
    members: list[str] = field(default_factory=list)  # allow-list (empty: signatures, or anyone)
    parent_round_id: int = 0
    signed_members: bool = False  # register with the creator's signature (registerSigned)
    collateral: int = 0  # each participant's deposit locked from start (less: dropped at start)
    bond: int = 0  # the coordinator's deposit locked from start, forfeited when it is at fault
    windows: Windows = field(default_factory=Windows)

    @property
    def nbytes(self) -> int:
        """len(n) on chain: the bit length rounded up to whole 32-byte words (0 without a key)."""
        return -(-self.n.bit_length() // 256) * 32 if self.n else 0

    def as_tuple(self) -> tuple:
        return (
            to_checksum_address(self.rule), self.parent_round_id,
            self.n.to_bytes(self.nbytes, "big") if self.n else b"", self.slots, self.slot_bits,
            self.slot_width, self.max_iterations, list(self.price_floor), list(self.price_cap),
            to_checksum_address(self.grid_account), self.mechanism,
            self.pair_lanes, bytes(self.terms), [to_checksum_address(m) for m in self.members],
            self.signed_members, self.collateral, self.bond, self.windows.as_tuple(),
        )


def aggregate_key(iteration: int, attempt: int) -> int:
    """The key a round keeps an attempt's decryption under (RoundStorage._aggregateKey)."""
    return (iteration << 16) | attempt


def dispute_key(iteration: int, attempt: int, position: int) -> int:
    """The key of a participant's (1-based ``position``) opening in a dispute (_disputeKey)."""
    return (1 << 128) | (iteration << 32) | (attempt << 16) | position


def blame_key(position: int) -> int:
    """The key of a participant's blame opening (_blameKey)."""
    return (2 << 128) | position


def encode_abi(abi_type: str, value: tuple) -> bytes:
    """abi.encode of one value (a mechanism's terms)."""
    return abi_encode([abi_type], [value])


def decode_abi(abi_type: str, data: bytes) -> Any:
    (value,) = abi_decode([abi_type], bytes(data))
    return value


def pack_pair_messages(blocks: Sequence[Sequence[int]]) -> bytes:
    """submit's pairMessages: one block per other participant (registration order, the sender
    skipped), each a list of pair_lanes words written as 64-bit big-endian (taken modulo 2^64)."""
    return b"".join(int(w % (1 << 64)).to_bytes(8, "big") for block in blocks for w in block)


def unpack_pair_messages(data: bytes, lanes: int) -> list[list[int]]:
    """The blocks of a PairMessages event as unsigned 64-bit words."""
    words = [int.from_bytes(data[i:i + 8], "big") for i in range(0, len(data), 8)]
    return [words[i:i + lanes] for i in range(0, len(words), lanes)] if lanes else []


@dataclass(frozen=True)
class Reveal:
    """The opening of a participant's final commitment (its own transaction, `reveal`)."""
    values: list[int]
    salt: bytes
    ciphertext_hash: bytes


def values_hash(values: Sequence[int]) -> bytes:
    """keccak256(abi.encodePacked(int256[] values)): the 32-byte two's-complement words."""
    return keccak(b"".join(int(v).to_bytes(32, "big", signed=True) for v in values))


def commitment(round_id: int, iteration: int, participant: str, values: Sequence[int], salt: bytes) -> bytes:
    """keccak256(abi.encode(roundId, iteration, participant, keccak256(abi.encodePacked(int256[] values)), salt))."""
    return keccak(abi_encode(
        ["uint256", "uint32", "address", "bytes32", "bytes32"],
        [round_id, iteration, to_checksum_address(participant), values_hash(values), bytes(salt)],
    ))


def flat(values: Sequence[Sequence[int]]) -> list[int]:
    """Every participant's reveal, one after the other: the ``values`` of settle and quote."""
    return [int(v) for row in values for v in row]


def _addr(account: Any) -> str:
    return account.address if hasattr(account, "address") else to_checksum_address(account)


@dataclass(frozen=True)
class Settlement:
    """What ``settle`` booked: payments per account (positive = paid) and each participant's bill."""
    payments: dict[str, int]
    bills: dict[str, list[int]]
    receipt: Any


class Token:
    """The SettlementToken."""

    def __init__(self, chain: Chain, address: str):
        self.chain = chain
        self.contract = chain.contract(TOKEN_CONTRACT, address)
        self.address = self.contract.address

    def mint_many(self, owner: LocalAccount, items: Sequence[tuple[Any, int]]) -> list[Any]:
        return self.chain.transact_many([(self.contract.functions.mint(_addr(a), v), owner) for a, v in items])

    def balance_of(self, account: Any) -> int:
        return int(self.contract.functions.balanceOf(_addr(account)).call())

    def owner(self) -> str:
        return self.contract.functions.owner().call()


class Market:
    """A deployed PrivateRounds contract with its SettlementToken."""

    def __init__(self, chain: Chain, address: str, token_address: str | None = None):
        self.chain = chain
        self.contract = chain.contract(MARKET_CONTRACT, address)
        self.address = self.contract.address
        self.token = Token(chain, token_address or self.contract.functions.token().call())
        self._n_bytes: dict[int, int] = {}

    # ------------------------------------------------------------------ deployment
    @classmethod
    def deploy(cls, chain: Chain, operator: LocalAccount, token_address: str | None = None) -> "Market":
        """Deploys the round contract and, unless ``token_address`` is given, a new
        SettlementToken owned by ``operator``."""
        if token_address is None:
            token_address = chain.deploy(TOKEN_CONTRACT, operator.address, sender=operator).address
        paillier = chain.deploy("PaillierMath", sender=operator).address
        openings = chain.deploy("RoundOpenings", paillier, sender=operator).address
        settlement = chain.deploy("RoundSettlement", sender=operator).address
        disputes = chain.deploy("RoundDisputes", paillier, sender=operator).address
        market = chain.deploy(MARKET_CONTRACT, token_address, paillier, openings, settlement, disputes, sender=operator)
        return cls(chain, market.address, token_address)

    # ------------------------------------------------------------------ helpers
    def _fn(self):
        return self.contract.functions

    def _event(self, receipt: Any, name: str) -> Any:
        events = self.chain.events(receipt, self.contract, name)
        if not events:
            raise LookupError(f"no {name} event in receipt")
        return events[0]["args"]

    def _view(self, fn: Any) -> Any:
        """Calls a view; a revert with a custom error raises :class:`ContractRevert`."""
        try:
            return fn.call()
        except ContractRevert:
            raise
        except Exception as exc:  # noqa: BLE001 - web3 / eth-tester / RPC revert types differ
            data = _revert_data(exc)
            if data is None:
                raise
            raise self.chain.errors.decode(data) from exc

    def modulus_bytes(self, round_id: int) -> int:
        nb = self._n_bytes.get(round_id)
        if nb is None:
            nb = self._n_bytes[round_id] = int(self.round_info(round_id)["modulus_bytes"])
        return nb

    def _m(self, round_id: int, value: int | None) -> bytes:
        return b"" if value is None else int(value).to_bytes(self.modulus_bytes(round_id), "big")

    # ------------------------------------------------------------------ transactions
    def create_round(self, coordinator: LocalAccount, params: RoundParams) -> tuple[int, Any]:
        receipt = self.chain.transact(self._fn().createRound(params.as_tuple()), coordinator)
        round_id = int(self._event(receipt, "RoundCreated")["roundId"])
        self._n_bytes[round_id] = params.nbytes
        return round_id, receipt

    def register(self, participant: LocalAccount, round_id: int, keys: bytes) -> Any:
        return self.register_many([(participant, round_id, keys)])[0]

    def register_many(self, items: Sequence[tuple]) -> list[Any]:
        """items: (participant, round_id, keys[, member_index, signature]); with a signature
        through ``registerSigned``. ``keys``: its key A and first mask point Y(0) (secagg)."""
        calls = []
        for p, r, k, *signed in items:
            fn = (self._fn().registerSigned(r, bytes(k), signed[0], bytes(signed[1])) if signed
                  else self._fn().register(r, bytes(k)))
            calls.append((fn, p))
        return self.chain.transact_many(calls)

    def member_signature(self, creator: LocalAccount, round_id: int, participant: Any, member_index: int) -> bytes:
        """The creator's admission of ``participant`` to a round with signed membership."""
        digest = keccak(abi_encode(["uint256", "address", "uint256", "address", "uint16"],
                                   [self.chain.chain_id, self.address, round_id, _addr(participant), member_index]))
        return bytes(creator.sign_message(encode_defunct(primitive=digest)).signature)

    def approve_many(self, items: Sequence[tuple[LocalAccount, int]]) -> list[Any]:
        """items: (account, amount): each account lets the market take that many tokens."""
        token = self.token.contract.functions
        return self.chain.transact_many([(token.approve(self.address, v), a) for a, v in items])

    def deposit_many(self, items: Sequence[tuple[LocalAccount, int, int]], approve: bool = True) -> list[Any]:
        """items: (account, round_id, amount); approves the market first (unless ``approve`` is
        False: done already), then deposits. Deposit receipts."""
        if approve:
            self.approve_many([(a, v) for a, _, v in items])
        return self.chain.transact_many([(self._fn().deposit(r, v), a) for a, r, v in items])

    def start(self, coordinator: LocalAccount, round_id: int, prices: Sequence[int]) -> Any:
        return self.chain.transact(self._fn().start(round_id, list(prices)), coordinator)

    def submit(self, participant: LocalAccount, round_id: int, iteration: int, ciphertext: bytes,
               commitment: bytes, pair_messages: bytes = b"", next_point: bytes = b"") -> Any:
        return self.submit_many([(participant, round_id, iteration, ciphertext, commitment, pair_messages,
                                  next_point)])[0]

    def submit_many(self, items: Sequence[tuple]) -> list[Any]:
        """items: (participant, round_id, iteration, ciphertext, commitment[, pair_messages[, next_point]])."""
        calls = []
        for p, r, k, c, cm, *rest in items:
            pm = bytes(rest[0]) if rest else b""
            point = bytes(rest[1]) if len(rest) > 1 else b""
            calls.append((self._fn().submit(r, k, bytes(c), bytes(cm), pm, point), p))
        return self.chain.transact_many(calls)

    def advance(self, sender: LocalAccount, round_id: int, missing: Sequence[Any]) -> Any:
        """Drops the listed participants that missed the deadline (registration order)."""
        return self.chain.transact(self._fn().advance(round_id, [_addr(a) for a in missing]), sender)

    def aggregate(self, sender: LocalAccount, round_id: int, ciphertexts: Sequence[bytes],
                  commitments: Sequence[bytes], chunk: int | None = None) -> tuple[bytes, list[Any]]:
        """Multiplies the submissions in chunks of ``chunk`` (default: what fits the chain's
        per-transaction gas cap); the aggregate and every chunk's receipt."""
        chunk = chunk or self.chain.aggregate_chunk
        so_far, receipts = b"", []
        for i in range(0, len(ciphertexts), chunk):
            fn = self._fn().aggregate(round_id, so_far, [bytes(c) for c in ciphertexts[i:i + chunk]],
                                      [bytes(c) for c in commitments[i:i + chunk]])
            receipt = self.chain.transact(fn, sender)
            receipts.append(receipt)
            done = self.chain.events(receipt, self.contract, "Aggregated")
            so_far = bytes(done[0]["args"]["aggregate"] if done else self._event(receipt, "AggregationProgress")["soFar"])
        return so_far, receipts

    def publish(self, coordinator: LocalAccount, round_id: int, aggregate: bytes, plaintext: int | None,
                opening: int | None, next_prices: Sequence[int]) -> tuple[list[int], Any]:
        fn = self._fn().publish(round_id, bytes(aggregate), self._m(round_id, plaintext),
                                self._m(round_id, opening), list(next_prices))
        receipt = self.chain.transact(fn, coordinator)
        return list(self._event(receipt, "Published")["sums"]), receipt

    def conclude(self, coordinator: LocalAccount, round_id: int, aggregate: bytes, plaintext: int | None,
                 opening: int | None) -> tuple[list[int], Any]:
        fn = self._fn().conclude(round_id, bytes(aggregate), self._m(round_id, plaintext), self._m(round_id, opening))
        receipt = self.chain.transact(fn, coordinator)
        return list(self._event(receipt, "Concluded")["sums"]), receipt

    def dispute(self, coordinator: LocalAccount, round_id: int, aggregate: bytes, plaintext: int, opening: int) -> Any:
        """Publishes a decryption whose check slot is not zero: the attempt's dispute begins."""
        fn = self._fn().dispute(round_id, bytes(aggregate), self._m(round_id, plaintext), self._m(round_id, opening))
        return self.chain.transact(fn, coordinator)

    def open_check_many(self, items: Sequence[tuple[LocalAccount, int, bytes, bytes, Sequence[int]]]) -> list[Any]:
        """items: (participant, round_id, commitment, ciphertext || plaintext || rho, check values)."""
        return self.chain.transact_many([(self._fn().openCheck(r, bytes(c), bytes(o), [int(v) for v in e]), p)
                                         for p, r, c, o, e in items])

    def accuse(self, sender: LocalAccount, round_id: int, accused: Any, mine: Sequence[int], theirs: Sequence[int],
               proof: bytes) -> Any:
        return self.chain.transact(self._fn().accuse(round_id, _addr(accused), [int(v) for v in mine],
                                                     [int(v) for v in theirs], bytes(proof)), sender)

    def challenge(self, sender: LocalAccount, round_id: int, key: int, ciphertext: bytes, plaintext: int,
                  opening: int, steps: int | None = None) -> tuple[bool, list[Any]]:
        """Challenges an opening (``key``: as the contract keeps it) to its end, ``steps`` 256-bit
        steps per transaction (default: what fits the chain's gas cap); (whether it held, the receipts)."""
        nb = self.modulus_bytes(round_id)
        n = int.from_bytes(bytes(self._view(self._fn().modulus(round_id))), "big")
        words, n2 = nb // 32, n * n
        steps = steps or self.chain.challenge_steps
        published = bytes(ciphertext) + self._m(round_id, plaintext) + self._m(round_id, opening)
        acc, done, receipts = b"", 0, []
        while done < words:
            receipt = self.chain.transact(self._fn().challengeOpening(round_id, key, published, acc, steps), sender)
            receipts.append(receipt)
            done = min(words, done + steps)
            acc = pow(int(opening), n >> (256 * (words - done)), n2).to_bytes(2 * nb, "big")
        held = bool(self.chain.events(receipts[-1], self.contract, "OpeningConfirmed"))
        return held, receipts

    def close(self, coordinator: LocalAccount, round_id: int) -> Any:
        return self.chain.transact(self._fn().close(round_id), coordinator)

    def cancel(self, sender: LocalAccount, round_id: int) -> Any:
        """Cancels a round whose coordinator missed its deadline (anyone)."""
        return self.chain.transact(self._fn().cancel(round_id), sender)

    def reveal_many(self, items: Sequence[tuple[LocalAccount, int, Reveal]]) -> list[Any]:
        """items: (participant, round_id, its reveal)."""
        return self.chain.transact_many([(self._fn().reveal(r, [int(v) for v in x.values], bytes(x.salt),
                                                            bytes(x.ciphertext_hash)), p) for p, r, x in items])

    def settle(self, sender: LocalAccount, round_id: int, reveals: Sequence[Reveal | None]) -> Settlement:
        """``reveals``: one per participant, registration order, as it revealed; None where its
        reveal does not count (zeros)."""
        length = self.reveal_length(round_id)
        rows = [r.values if r else [0] * length for r in reveals]
        fn = self._fn().settle(round_id, flat(rows), [bytes(r.ciphertext_hash) if r else b"\0" * 32 for r in reveals])
        receipt = self.chain.transact(fn, sender)
        payments: dict[str, int] = {}
        for ev in self.chain.events(receipt, self.contract, "Payment"):
            a = ev["args"]
            payments[a["account"]] = payments.get(a["account"], 0) + int(a["amount"])
        bills = {ev["args"]["participant"]: [int(v) for v in ev["args"]["items"]]
                 for ev in self.chain.events(receipt, self.contract, "Bill")}
        return Settlement(payments, bills, receipt)

    def settlement_of(self, round_id: int) -> Settlement:
        """What a round's settlement booked, from its events (whoever sent it)."""
        logs = {e: getattr(self.contract.events, e).get_logs(argument_filters={"roundId": round_id}, from_block=0)
                for e in ("Payment", "Bill")}
        payments: dict[str, int] = {}
        for ev in logs["Payment"]:
            payments[ev["args"]["account"]] = payments.get(ev["args"]["account"], 0) + int(ev["args"]["amount"])
        bills = {ev["args"]["participant"]: [int(v) for v in ev["args"]["items"]] for ev in logs["Bill"]}
        return Settlement(payments, bills, None)

    def open_blame_many(self, items: Sequence[tuple[LocalAccount, int, Sequence[int], bytes, bytes]]) -> list[Any]:
        """items: (participant, round_id, reveal values, ciphertext || plaintext || rho, masks)."""
        return self.chain.transact_many([(self._fn().openBlame(r, [int(v) for v in vals], bytes(opened), bytes(masks)), p)
                                         for p, r, vals, opened, masks in items])

    def blame_started(self, receipt: Any) -> bool:
        """Whether a `settle` transaction began a blame step."""
        return bool(self.chain.events(receipt, self.contract, "BlameStarted"))

    def blamed(self, receipts: Any) -> dict[str, tuple[int, str]]:
        """The parties named at fault in ``receipts``: {address: (forfeited, fault)}."""
        receipts = receipts if isinstance(receipts, list) else [receipts]
        return {ev["args"]["culprit"]: (int(ev["args"]["forfeited"]), FAULTS[ev["args"]["fault"]])
                for r in receipts for ev in self.chain.events(r, self.contract, "Blamed")}

    def withdraw_many(self, accounts: Sequence[LocalAccount], round_id: int) -> list[Any]:
        return self.chain.transact_many([(self._fn().withdraw(round_id), a) for a in accounts])

    def withdraw(self, account: LocalAccount, round_id: int) -> Any:
        return self.chain.transact(self._fn().withdraw(round_id), account)

    # ------------------------------------------------------------------ views
    def participants(self, round_id: int) -> list[str]:
        return list(self._view(self._fn().participants(round_id)))

    def registered(self, round_id: int, from_block: int = 0) -> list[tuple[str, bytes]]:
        """(address, keys) of every participant in registration order, from the Registered events."""
        logs = self.contract.events.Registered.get_logs(argument_filters={"roundId": round_id}, from_block=from_block)
        rows = sorted((int(e["args"]["position"]), e["args"]["participant"], bytes(e["args"]["keys"])) for e in logs)
        return [(a, k) for _, a, k in rows]

    def prices(self, round_id: int) -> list[int]:
        return [int(p) for p in self._view(self._fn().prices(round_id))]

    def final_sums(self, round_id: int) -> list[int]:
        return [int(s) for s in self._view(self._fn().finalSums(round_id))]

    def terms(self, round_id: int) -> bytes:
        return bytes(self._view(self._fn().terms(round_id)))

    def member_index(self, round_id: int, account: Any) -> int | None:
        """Position of ``account`` in the round's allow-list (None: not a member)."""
        i = int(self._view(self._fn().memberIndex(round_id, _addr(account))))
        return i - 1 if i else None

    def quote(self, round_id: int, values: Sequence[Sequence[int]]) -> tuple[list[int], dict[str, int], list[list[int]]]:
        """The settlement of ``values`` (one reveal per participant, registration order) as a view:
        (amounts per participant, {payee: amount}, bills), positive = paid."""
        amounts, payees, payee_amounts, bills = self._view(self._fn().quote(round_id, flat(values)))
        others: dict[str, int] = {}
        for a, v in zip(payees, payee_amounts):
            others[a] = others.get(a, 0) + int(v)
        return [int(a) for a in amounts], others, [[int(x) for x in b] for b in bills]

    def round_info(self, round_id: int) -> dict:
        info = self._view(self._fn().roundInfo(round_id))
        keys = ("phase", "step", "iteration", "attempt", "deadline", "coordinator", "grid_account", "rule",
                "parent_round_id", "key_data", "participant_count", "active", "submissions", "revealed", "slots",
                "slot_bits", "slot_width", "max_iterations", "aggregated", "modulus_bytes", "pair_lanes", "allow_list",
                "signed_members", "windows", "collateral", "bond", "forfeited", "challenge_until", "reveal_until",
                "blame_until", "challenge_key_plus_one")
        out = dict(zip(keys, info))
        out["phase"] = PHASES[out["phase"]]
        out["step"] = STEPS[out["step"]]
        out["windows"] = Windows(*out["windows"])
        return out

    def coordinator_deadline(self, round_id: int) -> int:
        return int(self._view(self._fn().coordinatorDeadline(round_id)))

    def reveal_length(self, round_id: int) -> int:
        info = self.round_info(round_id)
        rule = self.chain.contract("ISettlementRule", info["rule"])
        return int(rule.functions.revealLength(info["slots"], info["pair_lanes"], info["participant_count"]).call())

    def balance(self, round_id: int, account: Any) -> int:
        return int(self._view(self._fn().balanceOf(round_id, _addr(account))))

    def member(self, round_id: int, account: Any) -> dict:
        """A participant's stored state (PrivateRounds.member)."""
        keys = ("submission_hash", "position", "submitted_iteration_plus_one", "submitted_attempt",
                "dropped_before_plus_one", "member_index_plus_one", "opened_plus_one", "culprit", "revealed", "cleared",
                "point_hash", "next_point_hash", "key_hash", "check_hash", "reveal_hash")
        out = dict(zip(keys, self._view(self._fn().member(round_id, _addr(account)))))
        for k in ("submission_hash", "point_hash", "next_point_hash", "key_hash", "check_hash", "reveal_hash"):
            out[k] = bytes(out[k])
        return out


def deploy_rule(chain: Chain, contract: str, sender: LocalAccount) -> str:
    """Deploys a mechanism's (stateless) settlement rule contract; its address."""
    return chain.deploy(contract, sender=sender).address
