"""Typed wrappers of the generic round contract (PrivateRounds), its settlement rules and the
SettlementToken. Thin: no mechanism math. Amounts follow the one sign convention of the project:
positive = paid by the account."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from .backends import Chain, ContractRevert, _revert_data

PHASES = ("Registering", "Iterating", "Concluded", "Settled", "Closed")
MARKET_CONTRACT = "PrivateRounds"
TOKEN_CONTRACT = "SettlementToken"


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
    verify_openings: bool = False
    mechanism: str = ""  # the mechanism and its public update rule (JSON), emitted for auditors
    pair_lanes: int = 0  # 64-bit words per other participant in submit's pair messages (0: none)
    terms: bytes = b""  # the mechanism's ABI-encoded terms
    members: list[str] = field(default_factory=list)  # allow-list (empty: anyone may register)
    parent_round_id: int = 0

    @property
    def nbytes(self) -> int:
        """len(n) on chain: the bit length rounded up to whole 32-byte words (0 without a key)."""
        return -(-self.n.bit_length() // 256) * 32 if self.n else 0

    def as_tuple(self) -> tuple:
        return (
            to_checksum_address(self.rule), self.parent_round_id,
            self.n.to_bytes(self.nbytes, "big") if self.n else b"", self.slots, self.slot_bits,
            self.slot_width, self.max_iterations, list(self.price_floor), list(self.price_cap),
            to_checksum_address(self.grid_account), self.verify_openings, self.mechanism,
            self.pair_lanes, bytes(self.terms), [to_checksum_address(m) for m in self.members],
        )


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
    """The opening of a participant's final commitment, handed over for settlement."""
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
        market = chain.deploy(MARKET_CONTRACT, token_address, sender=operator)
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

    def register(self, participant: LocalAccount, round_id: int, mask_key: bytes) -> Any:
        return self.register_many([(participant, round_id, mask_key)])[0]

    def register_many(self, items: Sequence[tuple[LocalAccount, int, bytes]]) -> list[Any]:
        return self.chain.transact_many(
            [(self._fn().register(r, bytes(k).rjust(32, b"\0")), p) for p, r, k in items])

    def deposit_many(self, items: Sequence[tuple[LocalAccount, int, int]]) -> list[Any]:
        """items: (account, round_id, amount); approves the market, then deposits. Deposit receipts."""
        token = self.token.contract.functions
        self.chain.transact_many([(token.approve(self.address, v), a) for a, _, v in items])
        return self.chain.transact_many([(self._fn().deposit(r, v), a) for a, r, v in items])

    def start(self, coordinator: LocalAccount, round_id: int, prices: Sequence[int]) -> Any:
        return self.chain.transact(self._fn().start(round_id, list(prices)), coordinator)

    def submit(self, participant: LocalAccount, round_id: int, iteration: int, ciphertext: bytes,
               commitment: bytes, pair_messages: bytes = b"") -> Any:
        return self.submit_many([(participant, round_id, iteration, ciphertext, commitment, pair_messages)])[0]

    def submit_many(self, items: Sequence[tuple]) -> list[Any]:
        """items: (participant, round_id, iteration, ciphertext, commitment[, pair_messages])."""
        calls = []
        for p, r, k, c, cm, *rest in items:
            pm = bytes(rest[0]) if rest else b""
            calls.append((self._fn().submit(r, k, bytes(c), bytes(cm), pm), p))
        return self.chain.transact_many(calls)

    def aggregate(self, sender: LocalAccount, round_id: int, ciphertexts: Sequence[bytes],
                  commitments: Sequence[bytes]) -> tuple[bytes, Any]:
        receipt = self.chain.transact(
            self._fn().aggregate(round_id, [bytes(c) for c in ciphertexts], [bytes(c) for c in commitments]), sender)
        return bytes(self._event(receipt, "Aggregated")["aggregate"]), receipt

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

    def close(self, coordinator: LocalAccount, round_id: int) -> Any:
        return self.chain.transact(self._fn().close(round_id), coordinator)

    def settle(self, sender: LocalAccount, round_id: int, reveals: Sequence[Reveal]) -> Settlement:
        fn = self._fn().settle(round_id, flat([r.values for r in reveals]), [bytes(r.salt) for r in reveals],
                               [bytes(r.ciphertext_hash) for r in reveals])
        receipt = self.chain.transact(fn, sender)
        payments: dict[str, int] = {}
        for ev in self.chain.events(receipt, self.contract, "Payment"):
            a = ev["args"]
            payments[a["account"]] = payments.get(a["account"], 0) + int(a["amount"])
        bills = {ev["args"]["participant"]: [int(v) for v in ev["args"]["items"]]
                 for ev in self.chain.events(receipt, self.contract, "Bill")}
        return Settlement(payments, bills, receipt)

    def withdraw_many(self, accounts: Sequence[LocalAccount], round_id: int) -> list[Any]:
        return self.chain.transact_many([(self._fn().withdraw(round_id), a) for a in accounts])

    def withdraw(self, account: LocalAccount, round_id: int) -> Any:
        return self.chain.transact(self._fn().withdraw(round_id), account)

    # ------------------------------------------------------------------ views
    def participants(self, round_id: int) -> list[tuple[str, bytes]]:
        accounts, keys = self._fn().participants(round_id).call()
        return [(a, bytes(k)) for a, k in zip(accounts, keys)]

    def prices(self, round_id: int) -> list[int]:
        return [int(p) for p in self._fn().prices(round_id).call()]

    def final_sums(self, round_id: int) -> list[int]:
        return [int(s) for s in self._fn().finalSums(round_id).call()]

    def terms(self, round_id: int) -> bytes:
        return bytes(self._fn().terms(round_id).call())

    def member_index(self, round_id: int, account: Any) -> int | None:
        """Position of ``account`` in the round's allow-list (None: not a member)."""
        i = int(self._fn().memberIndex(round_id, _addr(account)).call())
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
        info = self._fn().roundInfo(round_id).call()
        keys = ("phase", "iteration", "coordinator", "grid_account", "rule", "parent_round_id", "key_data",
                "participant_count", "slots", "slot_bits", "slot_width", "max_iterations", "verify_openings",
                "aggregated", "modulus_bytes", "pair_lanes", "allow_list")
        out = dict(zip(keys, info))
        out["phase"] = PHASES[out["phase"]]
        return out

    def balance(self, round_id: int, account: Any) -> int:
        return int(self._fn().balanceOf(round_id, _addr(account)).call())

    def member(self, round_id: int, account: Any) -> tuple[bytes, int, int]:
        h, pos, it = self._fn().member(round_id, _addr(account)).call()
        return bytes(h), int(pos), int(it)


def deploy_rule(chain: Chain, contract: str, sender: LocalAccount) -> str:
    """Deploys a mechanism's (stateless) settlement rule contract; its address."""
    return chain.deploy(contract, sender=sender).address
