"""Every party of a chain round as its own object, runnable as its own process.

A party holds its own logic (the mechanism's :class:`~offchain.framework.Participant` or
:class:`~offchain.framework.Coordinator`), its own account and its own secrets, and learns what
the others did only from the chain: the round's state (``roundInfo``, ``member``) and the
market's transactions and events, read block by block as they arrive (:class:`RoundFeed`).
What the protocol sends to one party alone travels sealed on chain (the pair messages).

* :class:`ProsumerParty`: registers, deposits, and per iteration solves its own problem at the
  published prices, seals its contribution (masks, Paillier encryption under the coordinator's
  key, pads of its pair messages) and submits it; checks every decryption the coordinator posts
  and challenges a false one; opens its submission when a dispute or a blame step asks; reveals
  after conclusion; withdraws.
* :class:`CoordinatorParty`: creates the round from its public plan (``round.json``), mints the
  collateral, starts it, and per attempt waits for the submissions (dropping the silent after the
  deadline), aggregates, decrypts only the aggregate, answers with the mechanism's rule and
  publishes or concludes; settles from the reveals posted on chain; withdraws.
* :class:`PayeeParty`: deposits its collateral and withdraws what the settlement paid it.

Each party keeps its secrets in its own folder (:func:`party_folder`): a party restarted after a
crash reads them back, rebuilds its place in the round from the chain and goes on; it never sends
a transaction the chain already has. On a dev chain (anvil), a party that waits for a deadline
block mines it once its patience (wall seconds) is up, standing in for the time a real chain takes.
"""
from __future__ import annotations

import json
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ProtocolViolation
from ..framework import Answer, Contribution
from ..keystore import PartySecrets
from ..record import Transaction
from .driver import coordinator_answer

POLL_SECONDS = 0.1
REGISTRATION_PATIENCE = 60.0  # at least this long for every member to register: processes take seconds to start
LATE_FACTOR = 3  # a party gives up on a late coordinator after this many times its patience (then cancels)
NEVER = 2**64 - 1  # coordinatorDeadline while the coordinator owes nothing


# ---------------------------------------------------------------------------------- a party's folder
def party_folder(folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def write_private(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` (mode 0600), atomically: a kill leaves the old file or the new."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def json_lines(path: Path) -> list[dict]:
    """The lines of a JSON-lines file a party appends to (a line cut short by a kill is skipped)."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@dataclass
class PartyConfig:
    """What a party's folder says about it (``party.json``): public facts only; its key and its
    agent (private) are in ``secrets.jsonl`` and ``agent.pkl``."""
    role: str  # "prosumer", "coordinator" or a payee role
    name: str
    collateral: int = 0
    roster: list[str] = field(default_factory=list)  # the participants' addresses in the mechanism's order

    @classmethod
    def read(cls, folder: Path) -> "PartyConfig":
        return cls(**json.loads((folder / "party.json").read_text()))

    def write(self, folder: Path) -> None:
        write_private(folder / "party.json", json.dumps(self.__dict__).encode())


# ---------------------------------------------------------------------------------- the chain, as a party reads it
class RoundFeed:
    """The market's calls and events of one round, read block by block as they arrive."""

    def __init__(self, chain, market: str, round_id: int | None, from_block: int = 0) -> None:
        from ..audit.history import MarketHistory

        self.chain, self.market, self.round_id = chain, market, round_id
        self.next_block = from_block
        self.history = MarketHistory(market, [])

    def poll(self) -> None:
        from ..audit.reader import read_market_transactions

        head = self.chain.block_number
        if head >= self.next_block:
            self.history.extend(read_market_transactions(self.chain, self.market, self.next_block, head))
            self.next_block = head + 1

    def events(self, name: str, **match) -> list:
        return [e for e in self.history.events if e.name == name and e.args.get("roundId") == self.round_id
                and all(e.args.get(k) == v for k, v in match.items())]

    def calls(self, name: str, **match) -> list:
        return [c for c in self.history.calls if c.name == name and c.tx.status == 1
                and c.args.get("roundId") == self.round_id and all(c.args.get(k) == v for k, v in match.items())]


class _Party:
    """What every party does: its account, its records, its clock."""

    def __init__(self, chain, market, folder: Path, round_id: int | None, patience: float) -> None:
        from eth_account import Account

        self.chain, self.market, self.folder = chain, market, party_folder(folder)
        self.config = PartyConfig.read(self.folder)
        self.secrets = PartySecrets(self.folder / "secrets.jsonl")
        self.account = Account.from_key(bytes.fromhex(self.secrets.get("account")))
        self.round_id = round_id if round_id is not None else self.secrets.get("round id")
        self.patience = patience
        self.feed = RoundFeed(chain, market.address, self.round_id)
        self._waiting: dict[tuple, float] = {}

    @property
    def name(self) -> str:
        return self.config.name

    def _record(self, kind: str, receipts, iteration: int | None = None) -> None:
        """Each transaction this party sent, for the run record (``transactions.jsonl``)."""
        receipts = receipts if isinstance(receipts, list) else [receipts]
        with open(self.folder / "transactions.jsonl", "a") as f:
            for r in receipts:
                t = Transaction(r["transactionHash"].to_0x_hex(), self.name, kind, iteration, int(r["gasUsed"]))
                f.write(json.dumps(t.__dict__) + "\n")

    def info(self) -> dict:
        return self.market.round_info(self.round_id)

    def _past(self, block: int, why: tuple, patience: float | None = None) -> bool:
        """Whether the chain is past ``block``; on a dev chain, mines to it once the party has
        waited ``patience`` seconds for it (``why`` names the wait)."""
        if self.chain.block_number > block:
            return True
        since = self._waiting.setdefault(why, time.monotonic())
        if self.chain.kind != "embedded" and time.monotonic() - since < (self.patience if patience is None else patience):
            return False
        self.chain.mine_until(block + 1)  # a dev node mines the blocks; another node is waited for
        return True

    def _try(self, kind: str, send, iteration: int | None = None) -> bool:
        """Sends a transaction someone else may have made moot (anyone may advance, settle or
        challenge): a revert means it was done already; the next look at the chain shows it."""
        from ..chain.backends import ContractRevert

        try:
            receipts = send()
        except ContractRevert:
            return False
        self._record(kind, receipts, iteration)
        return True

    def _settle(self, info: dict) -> bool | None:
        """Once every participant that stayed revealed (or the reveal window is over): settles
        with the reveals posted on chain (anyone may); in a blame step, once its window is over.
        True: sent; None: not due yet; False: refused (settled by someone else, or it cannot be)."""
        from ..chain.market import Reveal

        if not self._past(int(info["challenge_until"]), ("challenge",), patience=2.0):
            return None
        members = [a.lower() for a in self.market.participants(self.round_id)]  # registration order
        state = {m: self.market.member(self.round_id, m) for m in members}
        stayed = [m for m in members if not state[m]["dropped_before_plus_one"]]
        if info["blame_until"]:
            if not self._past(int(info["blame_until"]), ("blame",)):
                return None
            self._past(int(info["challenge_until"]), ("blame challenge",), patience=2.0)
        elif not all(state[m]["revealed"] for m in stayed) and not self._past(int(info["reveal_until"]), ("reveal",)):
            return None
        self.feed.poll()  # the reveals the views above count
        posted = {c.tx.sender.lower(): c.args for c in self.feed.calls("reveal")}
        if any(state[m]["revealed"] and m not in posted for m in members):
            return None
        reveals = []
        for m in members:
            a = posted.get(m)
            counts = a is not None and not state[m]["culprit"]
            if info["blame_until"]:
                counts = counts and (state[m]["dropped_before_plus_one"] or state[m]["cleared"])
            reveals.append(Reveal(list(a["values"]), bytes(a["salt"]), bytes(a["ciphertextHash"])) if counts else None)
        return self._try("settle", lambda: self.market.settle(self.account, self.round_id, reveals).receipt)

    def _settle_if_coordinator_silent(self, k: int, info: dict) -> None:
        """After conclusion the coordinator moves the chain past the challenge window and settles;
        if it does not within three times this party's patience (it crashed), this party does both
        (anyone may settle), and cancels the round if its settlement is refused."""
        since = self._waiting.setdefault(("concluded", k), time.monotonic())
        if time.monotonic() - since < LATE_FACTOR * self.patience:
            return
        if self._settle(info) is False:  # refused: the round cannot be settled, so it is cancelled
            self._end_if_coordinator_late()

    def _end_if_coordinator_late(self) -> None:
        """The coordinator missed its deadline (not started, not published, not settled in time: it
        may have crashed): once this party's patience for it is up, it cancels the round (anyone
        may), so that every deposit can be withdrawn."""
        late = self.market.coordinator_deadline(self.round_id)
        if late != NEVER and self._past(late, ("coordinator late", late), patience=LATE_FACTOR * self.patience):
            self._try("cancel", lambda: self.market.cancel(self.account, self.round_id))

    def withdraw(self) -> None:
        if self.market.balance(self.round_id, self.account) > 0:
            self._record("withdraw", self.market.withdraw(self.account, self.round_id))

    def run(self) -> str:
        """Acts until the round has ended for this party; the phase it ended in."""
        while True:
            self.feed.poll()
            done = self.step(self.info())
            if done:
                return done
            time.sleep(POLL_SECONDS)

    def step(self, info: dict) -> str | None:
        raise NotImplementedError


def _deposit(party: _Party, amount: int) -> None:
    """Approves and deposits ``amount`` once the tokens are there (minted by the token's owner)."""
    if amount <= 0 or party.market.balance(party.round_id, party.account) >= amount:
        party.secrets.keep("deposited", lambda: True)
        return
    if party.market.token.balance_of(party.account) < amount:
        return  # not minted yet
    if party._try("approve", lambda: party.market.approve_many([(party.account, amount)])) and \
            party._try("deposit", lambda: party.market.deposit_many([(party.account, party.round_id, amount)], approve=False)):
        party.secrets.keep("deposited", lambda: True)  # (a refused deposit, e.g. registration over: it keeps its tokens)


# ---------------------------------------------------------------------------------- payee
class PayeeParty(_Party):
    """A payee (the grid account, ...): deposits its collateral, withdraws its payment."""

    def step(self, info: dict) -> str | None:
        if info["phase"] == "Registering" and not self.secrets.get("deposited"):
            _deposit(self, self.config.collateral)
        if info["phase"] in ("Settled", "Closed"):
            self.withdraw()
            return info["phase"]
        if info["phase"] == "Concluded":
            self._settle_if_coordinator_silent(int(info["iteration"]), info)
        else:
            self._end_if_coordinator_late()
        return None


# ---------------------------------------------------------------------------------- prosumer
@dataclass
class _Iteration:
    """What a prosumer has of one iteration: its contribution and what it sent."""
    prices: list[int]
    contribution: Contribution | None = None
    sealed: dict[int, Any] = field(default_factory=dict)  # attempt -> its Sealed


class ProsumerParty(_Party):
    """A participant: its own model and keys; acts on what the chain shows."""

    def __init__(self, chain, market, folder: Path, round_id: int, patience: float) -> None:
        super().__init__(chain, market, folder, round_id, patience)
        state = self.folder / "state.pkl"
        saved = pickle.loads(state.read_bytes()) if state.exists() else None
        self.agent = saved["agent"] if saved else pickle.loads((self.folder / "agent.pkl").read_bytes())
        self.observed = saved["observed"] if saved else -1  # the last iteration whose answer it took
        self.keys = None
        self.iterations: dict[int, _Iteration] = {}
        self._checked: set[tuple] = set()

    # -- joining ----------------------------------------------------------------------------
    def _keys(self, info: dict):
        from ..privacy import secagg
        from .keys import MemberKeys

        if self.keys is None:
            self.keys = MemberKeys(self.account.address, self.secrets)
            self.context = secagg.round_context(self.market.address, self.round_id, self.chain.chain_id)
        return self.keys

    def _join(self, info: dict) -> None:
        """After registration closed: agrees pads with the registered, learns the layout."""
        from ..privacy import secagg
        from ..privacy.packing import SlotLayout
        from ..privacy.paillier import PublicKey

        keys = self._keys(info)
        self.peers = self.market.registered(self.round_id)
        self.addresses = [a.lower() for a, _ in self.peers]
        self.position = self.addresses.index(self.account.address.lower())
        modulus = bytes(self.market._view(self.market.contract.functions.modulus(self.round_id))) \
            if int(info["modulus_bytes"]) else b""
        self.key = PublicKey(int.from_bytes(modulus, "big")) if modulus else None
        self.layout = SlotLayout(info["slots"], info["slot_bits"], info["slot_width"], len(self.peers)) if self.key else None
        self.plan = secagg.Plan([a for a, _ in self.peers], self.context)
        keys.join(self.key, self.layout, self.peers, self.plan)
        self.lanes = int(info["pair_lanes"])

    def _register(self, info: dict) -> None:
        me = self.market.member(self.round_id, self.account)
        if not me["position"] and self.account.address not in self.market.participants(self.round_id):
            keys = self._keys(info).registration_keys(self.context, bool(info["modulus_bytes"]), bool(info["pair_lanes"]))
            if not self._try("register", lambda: self.market.register_many([(self.account, self.round_id, keys)])):
                return  # refused (registration over): it takes no part, and waits for the round's end
        if not self.secrets.get("deposited"):
            _deposit(self, self.config.collateral)

    # -- what the chain says ------------------------------------------------------------------
    def _active_in(self, k: int, attempt: int) -> set[int]:
        """Positions of the participants in attempt ``attempt`` of iteration ``k``: the submitters
        of that attempt once it is over, else everyone not dropped."""
        began = self._attempt_block(k, attempt)
        began = self.feed.next_block - 1 if began is None else began
        gone = {e.args["participant"].lower() for e in self.feed.events("Dropped") if e.tx.block <= began}
        return {i for i, a in enumerate(self.addresses) if a not in gone}

    def _attempt_block(self, k: int, attempt: int) -> int | None:
        """The block in which attempt ``attempt`` of iteration ``k`` began (None: not read yet)."""
        for e in self.feed.events("StepChanged", iteration=k):
            if e.args["attempt"] == attempt and e.args["step"] == 0 and e.args["phase"] == 1:
                return e.tx.block
        return None

    def _prices(self, k: int) -> list[int] | None:
        if k == 0:
            started = self.feed.events("RoundStarted")
            return [int(p) for p in started[0].args["prices"]] if started else None
        published = self.feed.events("Published", iteration=k - 1)
        return [int(p) for p in published[-1].args["nextPrices"]] if published else None

    def _points(self, k: int) -> dict[int, bytes]:
        """Each participant's mask point of iteration k (its last one posted for k)."""
        from ..privacy import secagg

        if k == 0:
            return {i: bytes(keys[secagg.POINT_BYTES:]) for i, (_, keys) in enumerate(self.peers)}
        points = {}
        for e in self.feed.events("MaskPoint", iteration=k):  # posted with the submissions of k - 1
            points[self.addresses.index(e.args["participant"].lower())] = bytes(e.args["point"])
        return points

    def _received(self, k: int) -> dict[int, list[int]]:
        """The pair messages sealed for it in the accepted attempt of iteration k."""
        if not self.lanes:
            return {}
        attempt = max(e.args["attempt"] for e in self.feed.events("Submitted", iteration=k))
        active = self._active_in(k, attempt)
        blobs = {}
        for e in self.feed.events("PairMessages", iteration=k):
            blobs[self.addresses.index(e.args["participant"].lower())] = bytes(e.args["messages"])
        roster = [a.lower() for a in self.config.roster]
        out = {}
        for i, blob in blobs.items():
            if i != self.position and i in active and self.position in active:
                others = [self.addresses[j] for j in sorted(active) if j != i]
                out[roster.index(self.addresses[i])] = self.keys.open_pairs(k, attempt, self.addresses[i], blob,
                                                                            self.lanes, others)
        return out

    def _partners(self, c: Contribution, active: set[int]) -> dict[str, list[int]]:
        """Its pair messages by recipient address ({mechanism index: values} in ``c.pairs``)."""
        if not self.lanes:
            return {}
        roster = [a.lower() for a in self.config.roster]
        return {roster[j]: v for j, v in c.pairs.items() if self.addresses.index(roster[j]) in active}

    # -- acting ---------------------------------------------------------------------------------
    def _iteration(self, k: int) -> _Iteration | None:
        if k not in self.iterations:
            prices = self._prices(k)
            if prices is None:
                return None
            self.iterations[k] = _Iteration(prices)
        it = self.iterations[k]
        if it.contribution is None:
            solve = self.agent.plan(k, it.prices)
            solved = getattr(solve.model, solve.method)(*solve.args) if solve is not None else None
            it.contribution = self.agent.contribute(k, it.prices, solved)
        return it

    def _submit(self, info: dict) -> None:
        k, attempt = int(info["iteration"]), int(info["attempt"])
        me = self.market.member(self.round_id, self.account)
        if me["dropped_before_plus_one"] or (me["submitted_iteration_plus_one"], me["submitted_attempt"]) == (k + 1, attempt):
            return
        self._catch_up(k)
        it = self._iteration(k)
        if it is None or self._attempt_block(k, attempt) is None:
            return  # the feed has not read the attempt's start yet (who is in it)
        active = self._active_in(k, attempt)
        c = it.contribution
        sealed = self.keys.seal(self.round_id, k, attempt, c, self._partners(c, active), self._points(k), active)
        it.sealed[attempt] = sealed
        self.secrets.put("last submission", [k, attempt])
        receipts = self.market.submit_many([(self.account, self.round_id, k, sealed.ciphertext, sealed.commitment,
                                             sealed.pairs, sealed.next_point)])
        self._record("submit", receipts, k)

    def _catch_up(self, k: int) -> None:
        """Takes the public answers of the iterations before k (observe), saving its state after each."""
        while self.observed < k - 1:
            j = self.observed + 1
            published = self.feed.events("Published", iteration=j)
            if not published:
                return
            self._iteration(j)  # its own contribution of j, as it made it (its state moves on in contribute)
            self.agent.observe(j, Answer(prices=[int(p) for p in published[-1].args["nextPrices"]]), self._received(j))
            self.observed = j
            self._save()

    def _save(self) -> None:
        write_private(self.folder / "state.pkl", pickle.dumps({"agent": self.agent, "observed": self.observed}))

    def _sealed_of(self, k: int, attempt: int):
        """Its submission of the attempt (from memory, or its key store after a restart)."""
        it = self._iteration(k)
        if attempt not in it.sealed:
            active = self._active_in(k, attempt)
            it.sealed[attempt] = self.keys.seal(self.round_id, k, attempt, it.contribution,
                                                self._partners(it.contribution, active), self._points(k), active)
        return it.sealed[attempt]

    def _check_openings(self) -> None:
        """Every decryption the coordinator posted: a false one is challenged (by the first to see it)."""
        from ..chain.market import aggregate_key

        if self.key is None:
            return
        for name in ("Published", "Concluded", "Disputed"):
            for e in self.feed.events(name):
                k = e.args["iteration"]
                attempt = e.args.get("attempt", self._last_attempt(k))
                tag = (name, k, attempt)
                if tag in self._checked:
                    continue
                self._checked.add(tag)
                agg = [a for a in self.feed.events("Aggregated", iteration=k)]
                if not agg:
                    continue
                c = bytes(agg[-1].args["aggregate"])
                m, rho = int.from_bytes(e.args["plaintext"], "big"), int.from_bytes(e.args["opening"], "big")
                if not self.key.verify_opening(int.from_bytes(c, "big"), m, rho):
                    self._try("challenge", lambda: self.market.challenge(self.account, self.round_id,
                                                                          aggregate_key(k, attempt), c, m, rho)[1], k)

    def _last_attempt(self, k: int) -> int:
        return max((e.args["attempt"] for e in self.feed.events("Submitted", iteration=k)), default=0)

    def _open_check(self, info: dict) -> None:
        """A dispute of an attempt it submitted in: opens its submission and check values."""
        k, attempt = int(info["iteration"]), int(info["attempt"])
        if self.secrets.get(f"opened {k}/{attempt}") or self.secrets.get("last submission") != [k, attempt] \
                or self._attempt_block(k, attempt) is None:
            return
        sealed = self._sealed_of(k, attempt)
        opened = self.keys.check_opening(sealed, self._points(k), self._active_in(k, attempt))
        if opened is not None:
            self._record("open check", self.market.open_check_many([(self.account, self.round_id, *opened)]), k)
        self.secrets.put(f"opened {k}/{attempt}", True)

    def _reveal(self, info: dict) -> None:
        from ..chain.market import Reveal
        from .keys import MemberKeys

        me = self.market.member(self.round_id, self.account)
        if me["revealed"] or not me["submitted_iteration_plus_one"]:
            return
        k = me["submitted_iteration_plus_one"] - 1
        sealed = self._sealed_of(k, int(me["submitted_attempt"]))
        reveal = Reveal(sealed.reveal, sealed.salt, MemberKeys.ciphertext_hash(sealed))
        self._record("reveal", self.market.reveal_many([(self.account, self.round_id, reveal)]))

    def _open_blame(self, info: dict) -> None:
        me = self.market.member(self.round_id, self.account)
        if self.secrets.get("blame opened") or me["dropped_before_plus_one"] or not me["revealed"]:
            return
        k, attempt = me["submitted_iteration_plus_one"] - 1, int(me["submitted_attempt"])
        sealed = self._sealed_of(k, attempt)
        opened = self.keys.blame_opening(sealed, self._points(k), self._active_in(k, attempt))
        if opened is not None:
            self._record("open blame", self.market.open_blame_many([(self.account, self.round_id, sealed.reveal, *opened)]))
        self.secrets.put("blame opened", True)

    def step(self, info: dict) -> str | None:
        phase = info["phase"]
        if phase == "Registering":
            self._register(info)
            self._end_if_coordinator_late()
            return None
        if self.keys is None or not hasattr(self, "peers"):
            if self.account.address.lower() not in [a.lower() for a in self.market.participants(self.round_id)]:
                return phase if phase in ("Settled", "Closed") else None  # never registered
            self._join(info)
        self._check_openings()
        if phase == "Iterating":
            if info["step"] == "Submitting":
                self._submit(info)
            elif info["step"] == "Disputing":
                self._open_check(info)
        elif phase == "Concluded":
            k = int(info["iteration"])
            self._catch_up(k)
            if info["blame_until"]:
                self._open_blame(info)
            elif self.chain.block_number > int(info["challenge_until"]):
                self._reveal(info)
            self._settle_if_coordinator_silent(k, info)
        if phase == "Iterating":
            self._end_if_coordinator_late()
        if phase in ("Settled", "Closed"):
            if phase == "Settled" and self.observed < int(info["iteration"]):
                self._catch_up(int(info["iteration"]))
                self.agent.observe(int(info["iteration"]), Answer(final=True), self._received(int(info["iteration"])))
                self.observed = int(info["iteration"])
            self._save()
            self.withdraw()
            if self.keys is not None:
                self.keys.leave()
            return phase
        return None


# ---------------------------------------------------------------------------------- coordinator
class CoordinatorParty(_Party):
    """The coordinator: its mechanism logic and its Paillier key; the round's public plan."""

    def __init__(self, chain, market, folder: Path, patience: float) -> None:
        super().__init__(chain, market, folder, None, patience)
        self.plan = json.loads((self.folder / "round.json").read_text())
        self.agent = pickle.loads((self.folder / "agent.pkl").read_bytes())
        self.answers: dict[int, Answer] = {}  # its answer to each iteration's sums
        self._told: set[str] = set()  # the dropped participants its agent has been told of

    def _create(self) -> None:
        from ..chain.market import RoundParams, Windows
        from ..privacy.packing import SlotLayout
        from .keys import CoordinatorKeys

        plan = self.plan
        self.keys = CoordinatorKeys(plan["key_bits"], self.secrets) if plan["encrypted"] else None
        n = len(plan["members"])
        self.layout = SlotLayout.for_round(plan["slots"], n, plan["key_bits"], slot_bits=plan["slot_bits"]) if self.keys else None
        if self.round_id is not None:
            self.feed.round_id = self.round_id
            return
        key = self.keys.public if self.keys else None
        params = RoundParams(
            rule=plan["rule"], slots=plan["slots"], max_iterations=plan["max_iterations"],
            price_floor=plan["price_floor"], price_cap=plan["price_cap"], grid_account=plan["grid_account"],
            n=key.n if key else None, slot_bits=self.layout.slot_bits if key else 0,
            slot_width=self.layout.slot_width if key else 0, mechanism=plan["mechanism"], pair_lanes=plan["pair_lanes"],
            terms=bytes.fromhex(plan["terms"]), members=plan["members"], signed_members=False,
            collateral=plan["collateral"], bond=plan["bond"], windows=Windows(**plan["windows"]))
        self.round_id, receipt = self.market.create_round(self.account, params)
        self.secrets.put("round id", self.round_id)
        self.feed.round_id = self.round_id
        self._record("create_round", receipt)
        mints = [(a, v) for a, v in plan["mint"] if v > 0]
        if mints:
            self._record("mint", self.market.token.mint_many(self.account, mints))

    def _start(self, info: dict) -> None:
        """Starts once every member has registered and deposited (or registration is over)."""
        plan = self.plan
        if not self.secrets.get("deposited"):
            _deposit(self, plan["bond"])
        members = plan["members"]
        registered = {a.lower() for a in self.market.participants(self.round_id)}
        ready = [a for a in members if a.lower() in registered and self.market.balance(self.round_id, a) >= plan["collateral"]]
        payees_ready = all(self.market.balance(self.round_id, a) >= v for a, v in plan["payee_collateral"])
        if (len(ready) < len(members) or not payees_ready) and \
                not self._past(int(info["deadline"]), ("registration",), patience=max(self.patience, REGISTRATION_PATIENCE)):
            return
        prices = list(self.agent.start())
        self._record("start", self.market.start(self.account, self.round_id, prices), 0)

    def _submissions(self, k: int, attempt: int) -> list[tuple[int, bytes, bytes]]:
        """(position, ciphertext, commitment) of the attempt's submissions, registration order."""
        members = [a.lower() for a in self.market.participants(self.round_id)]
        accepted = {(e.tx.hash, e.args["participant"].lower()) for e in self.feed.events("Submitted", iteration=k)
                    if e.args["attempt"] == attempt}
        out = {}
        for c in self.feed.calls("submit", iteration=k):
            sender = c.tx.sender.lower()
            if (c.tx.hash, sender) in accepted:
                out[members.index(sender)] = (bytes(c.args["ciphertext"]), bytes(c.args["commitment"]))
        return [(i, *out[i]) for i in sorted(out)]

    def _iterate(self, info: dict) -> str | None:
        k, attempt = int(info["iteration"]), int(info["attempt"])
        if info["step"] == "Submitting":
            if info["submissions"] < info["active"] and self._past(int(info["deadline"]), ("submit", k, attempt)):
                self._advance(k)
            return None
        if info["step"] == "Disputing":
            if self._past(int(info["deadline"]), ("dispute", k, attempt)):
                opened = {e.args["participant"].lower() for e in self.feed.events("CheckOpened", iteration=k)
                          if e.tx.block >= self._step_block(k, attempt)}
                subs = self._submissions(k, attempt)
                members = [a.lower() for a in self.market.participants(self.round_id)]
                self._try("advance", lambda: self.market.advance(self.account, self.round_id,
                                                                 [members[i] for i, *_ in subs if members[i] not in opened]), k)
            return None
        subs = self._submissions(k, attempt)  # Aggregating
        if len(subs) < info["submissions"]:
            return None  # the feed has not read them yet
        if self.keys is None:
            sums, agg, plaintext, opening, check = [], b"", None, None, 0
        else:
            if not info["aggregated"]:
                agg, receipts = self.market.aggregate(self.account, self.round_id, [c for _, c, _ in subs],
                                                      [m for *_, m in subs])
                self._record("aggregate", receipts, k)
            else:
                agg = bytes(self.feed.events("Aggregated", iteration=k)[-1].args["aggregate"])
            sums, check, plaintext, opening = self.keys.open(int.from_bytes(agg, "big"), self.layout)
        if check:
            self._record("dispute", self.market.dispute(self.account, self.round_id, agg, plaintext, opening), k)
            return None
        answer = self._answer(k, sums)
        self._log(k, int(info["attempt"]) + 1, sums, answer)
        if answer.final and not answer.converged and not self.plan["settle_unconverged"]:
            self._record("close", self.market.close(self.account, self.round_id))
        elif answer.final:
            self._record("conclude", self.market.conclude(self.account, self.round_id, agg, plaintext, opening)[1], k)
        else:
            if answer.prices is None:
                raise ProtocolViolation(f"iteration {k}: the coordinator neither concluded nor published prices")
            self._record("publish", self.market.publish(self.account, self.round_id, agg, plaintext, opening,
                                                        answer.prices)[1], k)
        return None

    def _step_block(self, k: int, attempt: int) -> int:
        for e in self.feed.events("StepChanged", iteration=k):
            if e.args["attempt"] == attempt and e.args["step"] == 2:
                return e.tx.block
        return 0

    def _advance(self, k: int) -> None:
        attempt = self.info()["attempt"]
        registered = [a.lower() for a in self.market.participants(self.round_id)]
        me = {m: self.market.member(self.round_id, m) for m in registered}
        missing = [m for m in registered if not me[m]["dropped_before_plus_one"]
                   and (me[m]["submitted_iteration_plus_one"], me[m]["submitted_attempt"]) != (k + 1, attempt)]
        self._try("advance", lambda: self.market.advance(self.account, self.round_id, missing), k)

    def _answer(self, k: int, sums: list[int]) -> Answer:
        """Its agent's answer to iteration k's sums, after telling it who dropped out up to k."""
        hook = getattr(self.agent, "dropped", None)
        members = [m.lower() for m in self.plan["members"]]
        gone = [e.args["participant"].lower() for e in self.feed.events("Dropped") if e.args["iteration"] <= k]
        new = [members.index(a) for a in gone if a not in self._told]
        if new and hook is not None:
            hook(k, new)
        self._told.update(gone)
        self.answers[k] = coordinator_answer(self.agent, k, [int(v) for v in sums])
        return self.answers[k]

    def _replay(self) -> None:
        """A restarted coordinator: its agent takes again the sums it answered before, as the chain
        holds them (its answers are a function of them), and must give the answers it published."""
        self.feed.poll()
        done = {e.args["iteration"]: e for e in self.feed.events("Published") + self.feed.events("Concluded")}
        for k in sorted(done):
            answer = self._answer(k, done[k].args["sums"])
            if done[k].name == "Published" and list(answer.prices or []) != [int(p) for p in done[k].args["nextPrices"]]:
                raise ProtocolViolation(f"iteration {k}: the restarted coordinator answers other prices than it published")
        for k in sorted(done):
            attempts = 1 + max((e.args["attempt"] for e in self.feed.events("Submitted", iteration=k)), default=0)
            self._log(k, attempts, done[k].args["sums"], self.answers[k])

    def _log(self, k: int, attempts: int, sums: list[int], answer: Answer) -> None:
        """One line per iteration in ``iterations.jsonl`` (once: a restarted coordinator logs only the new)."""
        if any(line["iteration"] == k for line in json_lines(self.folder / "iterations.jsonl")):
            return
        line = {"iteration": k, "attempts": attempts, "sums": [int(s) for s in sums],
                "answer": {"prices": answer.prices, "final": answer.final, "closing": answer.closing,
                           "converged": answer.converged, "reason": answer.reason, "residuals": answer.residuals}}
        with open(self.folder / "iterations.jsonl", "a") as f:
            f.write(json.dumps(line, default=float) + "\n")

    def step(self, info: dict) -> str | None:
        phase = info["phase"]
        if phase == "Registering":
            self._start(info)
        elif phase == "Iterating":
            return self._iterate(info)
        elif phase == "Concluded":
            self._settle(info)
        elif phase in ("Settled", "Closed"):
            self.withdraw()
            write_private(self.folder / "state.pkl", pickle.dumps({"agent": self.agent}))
            return phase
        return None

    def run(self) -> str:
        self._create()
        self._replay()
        return super().run()


# ---------------------------------------------------------------------------------- the command
def party_command(args, console) -> int:
    """``gridshare party``: one party's side of a round, to its end."""
    from ..chain.backends import connect
    from ..chain.market import Market
    from ..errors import UsageError

    folder = Path(args.keys)
    if not (folder / "party.json").is_file() or not (folder / "secrets.jsonl").is_file():
        raise UsageError(f"--keys {folder}: not a party's folder (party.json and secrets.jsonl missing)")
    config = PartyConfig.read(folder)
    if config.name != args.name:
        raise UsageError(f"--keys {folder} holds the party {config.name!r}, not {args.name!r}")
    if config.role != "coordinator" and args.round is None:
        raise UsageError(f"{args.name} takes part in a round the coordinator created: give it --round")
    if args.patience < 0:
        raise UsageError(f"--patience must not be negative, got {args.patience}")
    chain = connect(args.chain)
    market = Market(chain, args.market)
    if config.role == "coordinator":
        party: _Party = CoordinatorParty(chain, market, folder, args.patience)
    elif config.role == "prosumer":
        party = ProsumerParty(chain, market, folder, args.round, args.patience)
    else:
        party = PayeeParty(chain, market, folder, args.round, args.patience)
    ended = party.run()
    console.print(f"{config.name}: round {party.round_id} {ended.lower()}")
    return 0
