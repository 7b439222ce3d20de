"""Typed wrappers of the TariffMarket / StorageMarket / SettlementToken contracts (thin: no mechanism math)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from .backends import Chain, ContractRevert, _revert_data

PHASES = ("Registering", "Iterating", "Concluded", "Settled")


@dataclass(frozen=True)
class RoundParams:
    n: int
    periods: int
    slot_bits: int
    slot_width: int
    max_iterations: int
    price_floor: list[int]
    price_cap: list[int]
    grid_account: str
    verify_openings: bool
    mechanism: str = ""  # the public update rule (JSON), emitted in RoundCreated for auditors
    pair_lanes: int = 0  # 64-bit words per other participant in submit's pair messages (0: none)
    terms: bytes = b""  # the mechanism's terms (StorageMarket: StorageTerms.encode())

    @property
    def nbytes(self) -> int:
        """len(n) on chain: the bit length rounded up to whole 32-byte words."""
        return -(-self.n.bit_length() // 256) * 32

    def as_tuple(self) -> tuple:
        return (
            self.n.to_bytes(self.nbytes, "big"), self.periods, self.slot_bits, self.slot_width,
            self.max_iterations, list(self.price_floor), list(self.price_cap),
            to_checksum_address(self.grid_account), self.verify_openings, self.mechanism,
            self.pair_lanes, bytes(self.terms),
        )


TERMS_TYPE = "(address,address,address[],uint64,uint64,uint64,uint64,uint64[],uint64[],uint64[],uint64[])"


@dataclass(frozen=True)
class StorageTerms:
    """StorageMarket's ``Terms`` (units 1e-6: kWh, kW, token per kWh / kW)."""
    operator: str  # receives rents and usage fees; must be the round's coordinator
    centre: str  # receives transmission fees
    members: list[str]  # who may register; member index = position
    energy_cap: int
    power_cap: int
    capacity_slack: int
    usage_price: int
    storage_fee: list[int]  # per member
    pair_fee: list[int]  # len(members)**2, row-major [buyer * M + seller], paid by the buyer
    grid_buy: list[int]  # per period (T)
    grid_sell: list[int]  # per period

    @property
    def periods(self) -> int:
        return len(self.grid_buy)

    def as_tuple(self) -> tuple:
        return (to_checksum_address(self.operator), to_checksum_address(self.centre),
                [to_checksum_address(m) for m in self.members], self.energy_cap, self.power_cap,
                self.capacity_slack, self.usage_price, list(self.storage_fee), list(self.pair_fee),
                list(self.grid_buy), list(self.grid_sell))

    def encode(self) -> bytes:
        """abi.encode(Terms): the RoundParams.terms of a StorageMarket round."""
        return abi_encode([TERMS_TYPE], [self.as_tuple()])

    @classmethod
    def decode(cls, data: bytes) -> "StorageTerms":
        (t,) = abi_decode([TERMS_TYPE], bytes(data))
        return cls(to_checksum_address(t[0]), to_checksum_address(t[1]), [to_checksum_address(m) for m in t[2]],
                   *[int(x) for x in t[3:7]], *[[int(x) for x in a] for a in t[7:]])


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
    values: list[int]
    salt: bytes
    ciphertext_hash: bytes

    def as_tuple(self) -> tuple:
        return (list(self.values), bytes(self.salt), bytes(self.ciphertext_hash))


def commitment(round_id: int, iteration: int, participant: str, values: Sequence[int], salt: bytes) -> bytes:
    """keccak256(abi.encode(roundId, iteration, participant, int64[] values, bytes32 salt))."""
    return keccak(abi_encode(
        ["uint256", "uint32", "address", "int64[]", "bytes32"],
        [round_id, iteration, to_checksum_address(participant), list(values), bytes(salt)],
    ))


def ciphertext_hash(ciphertext: bytes) -> bytes:
    return keccak(ciphertext)


def _addr(account: Any) -> str:
    return account.address if hasattr(account, "address") else to_checksum_address(account)


class Token:
    """The SettlementToken."""

    def __init__(self, chain: Chain, address: str):
        self.chain = chain
        self.contract = chain.contract("SettlementToken", address)
        self.address = self.contract.address

    def mint(self, owner: LocalAccount, to: Any, amount: int) -> Any:
        return self.chain.transact(self.contract.functions.mint(_addr(to), amount), owner)

    def mint_many(self, owner: LocalAccount, items: Sequence[tuple[Any, int]]) -> list[Any]:
        return self.chain.transact_many([(self.contract.functions.mint(_addr(a), v), owner) for a, v in items])

    def approve(self, account: LocalAccount, spender: str, amount: int) -> Any:
        return self.chain.transact(self.contract.functions.approve(_addr(spender), amount), account)

    def balance_of(self, account: Any) -> int:
        return int(self.contract.functions.balanceOf(_addr(account)).call())


class Market:
    """A deployed market contract (default: TariffMarket) with its SettlementToken."""

    CONTRACT = "TariffMarket"

    def __init__(self, chain: Chain, address: str, token_address: str | None = None, contract: str | None = None):
        self.chain = chain
        self.contract = chain.contract(contract or self.CONTRACT, address)
        self.address = self.contract.address
        self.token = Token(chain, token_address or self.contract.functions.token().call())
        self._n_bytes: dict[int, int] = {}

    # ------------------------------------------------------------------ deployment
    @classmethod
    def deploy(cls, chain: Chain, operator: LocalAccount, contract: str | None = None,
               token_address: str | None = None) -> "Market":
        """Deploys a market contract (default: this class's, e.g. "TariffMarket"; "StorageMarket"
        gives a :class:`StorageMarket`) and, unless `token_address` is given, a new SettlementToken
        owned by `operator`."""
        name = contract or cls.CONTRACT
        wrapper = StorageMarket if name == StorageMarket.CONTRACT and not issubclass(cls, StorageMarket) else cls
        if token_address is None:
            token_address = chain.deploy("SettlementToken", operator.address, sender=operator).address
        market = chain.deploy(name, token_address, sender=operator)
        return wrapper(chain, market.address, token_address, contract=name)

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

    # ------------------------------------------------------------------ transactions
    def create_round(self, coordinator: LocalAccount, params: RoundParams) -> tuple[int, Any]:
        receipt = self.chain.transact(self._fn().createRound(params.as_tuple()), coordinator)
        round_id = int(self._event(receipt, "RoundCreated")["roundId"])
        self._n_bytes[round_id] = params.nbytes
        return round_id, receipt

    def register(self, participant: LocalAccount, round_id: int, mask_key: bytes) -> Any:
        return self.chain.transact(self._fn().register(round_id, bytes(mask_key).rjust(32, b"\0")), participant)

    def register_many(self, items: Sequence[tuple[LocalAccount, int, bytes]]) -> list[Any]:
        return self.chain.transact_many(
            [(self._fn().register(r, bytes(k).rjust(32, b"\0")), p) for p, r, k in items])

    def deposit(self, account: LocalAccount, round_id: int, amount: int) -> Any:
        return self.deposit_many([(account, round_id, amount)])[0]

    def deposit_many(self, items: Sequence[tuple[LocalAccount, int, int]]) -> list[Any]:
        """items: (account, round_id, amount); approves the market, then deposits. Deposit receipts."""
        token = self.token.contract.functions
        self.chain.transact_many([(token.approve(self.address, v), a) for a, _, v in items])
        return self.chain.transact_many([(self._fn().deposit(r, v), a) for a, r, v in items])

    def start(self, coordinator: LocalAccount, round_id: int, tariff: Sequence[int]) -> Any:
        return self.chain.transact(self._fn().start(round_id, list(tariff)), coordinator)

    def submit(self, participant: LocalAccount, round_id: int, iteration: int, ciphertext: bytes,
               commitment: bytes, pair_messages: bytes = b"") -> Any:
        return self.chain.transact(
            self._fn().submit(round_id, iteration, bytes(ciphertext), bytes(commitment), bytes(pair_messages)),
            participant)

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

    def _m(self, round_id: int, value: int) -> bytes:
        return int(value).to_bytes(self.modulus_bytes(round_id), "big")

    def publish(self, coordinator: LocalAccount, round_id: int, aggregate: bytes, plaintext: int, opening: int,
                next_tariff: Sequence[int]) -> tuple[list[int], Any]:
        fn = self._fn().publish(round_id, bytes(aggregate), self._m(round_id, plaintext),
                                self._m(round_id, opening), list(next_tariff))
        receipt = self.chain.transact(fn, coordinator)
        return list(self._event(receipt, "Published")["sums"]), receipt

    def conclude(self, coordinator: LocalAccount, round_id: int, aggregate: bytes, plaintext: int,
                 opening: int) -> tuple[list[int], Any]:
        fn = self._fn().conclude(round_id, bytes(aggregate), self._m(round_id, plaintext), self._m(round_id, opening))
        receipt = self.chain.transact(fn, coordinator)
        return list(self._event(receipt, "Concluded")["sums"]), receipt

    def settle(self, sender: LocalAccount, round_id: int, reveals: Sequence[Reveal]) -> tuple[dict[str, int], Any]:
        receipt = self.chain.transact(self._fn().settle(round_id, [r.as_tuple() for r in reveals]), sender)
        payments: dict[str, int] = {}
        for ev in self.chain.events(receipt, self.contract, "Payment"):
            a = ev["args"]
            payments[a["account"]] = payments.get(a["account"], 0) + int(a["amount"])
        return payments, receipt

    def withdraw_many(self, accounts: Sequence[LocalAccount], round_id: int) -> list[Any]:
        return self.chain.transact_many([(self._fn().withdraw(round_id), a) for a in accounts])

    def withdraw(self, account: LocalAccount, round_id: int) -> Any:
        return self.chain.transact(self._fn().withdraw(round_id), account)

    # ------------------------------------------------------------------ views
    def participants(self, round_id: int) -> list[tuple[str, bytes]]:
        accounts, keys = self._fn().participants(round_id).call()
        return [(a, bytes(k)) for a, k in zip(accounts, keys)]

    def tariff(self, round_id: int) -> list[int]:
        return [int(p) for p in self._fn().tariff(round_id).call()]

    def final_sums(self, round_id: int) -> list[int]:
        return [int(s) for s in self._fn().finalSums(round_id).call()]

    def quote(self, round_id: int, values: Sequence[Sequence[int]]) -> tuple[list[int], dict[str, int]]:
        """The settlement of `values` (one reveal per participant, registration order) as a view:
        (amounts per participant, {payee: amount}), positive = credit."""
        amounts, payees, payee_amounts = self._view(self._fn().quote(round_id, [list(v) for v in values]))
        others: dict[str, int] = {}
        for a, v in zip(payees, payee_amounts):
            others[a] = others.get(a, 0) + int(v)
        return [int(a) for a in amounts], others

    def round_info(self, round_id: int) -> dict:
        info = self._fn().roundInfo(round_id).call()
        keys = ("phase", "iteration", "coordinator", "grid_account", "key_data", "participant_count", "periods",
                "slot_bits", "slot_width", "max_iterations", "verify_openings", "aggregated", "modulus_bytes",
                "pair_lanes")
        out = dict(zip(keys, info))
        out["phase"] = PHASES[out["phase"]]
        return out

    def balance(self, round_id: int, account: Any) -> int:
        return int(self._fn().balanceOf(round_id, _addr(account)).call())

    def member(self, round_id: int, account: Any) -> tuple[bytes, int, int]:
        h, pos, it = self._fn().member(round_id, _addr(account)).call()
        return bytes(h), int(pos), int(it)


class StorageMarket(Market):
    """A deployed StorageMarket (paper A: shared storage + P2P) with its SettlementToken."""

    CONTRACT = "StorageMarket"

    def terms(self, round_id: int) -> StorageTerms:
        return StorageTerms.decode(self._fn().terms(round_id).call())

    def member_index(self, round_id: int, account: Any) -> int | None:
        """Position of `account` in the terms' members (None: not a member)."""
        i = int(self._fn().memberIndex(round_id, _addr(account)).call())
        return i - 1 if i else None

    def bills(self, receipt: Any) -> dict[str, dict[str, int]]:
        """The Bill events of a settle receipt: {participant: {rent, usage, transmission, grid, p2p}}."""
        out = {}
        for ev in self.chain.events(receipt, self.contract, "Bill"):
            a = ev["args"]
            out[a["participant"]] = {k: int(a[k]) for k in ("rent", "usage", "transmission", "grid", "p2p")}
        return out

    def pair_messages(self, receipt: Any) -> list[bytes]:
        """The messages of the PairMessages events in a submit receipt."""
        return [bytes(ev["args"]["messages"]) for ev in self.chain.events(receipt, self.contract, "PairMessages")]
