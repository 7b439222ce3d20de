"""The mechanism interface: what a market mechanism implements to run on gridshare's one private
round protocol, one round driver, one run record, one report and one audit.

A mechanism is a package (``offchain/mechanisms/<name>/`` for the built-in ones, anywhere on the
import path for others) with one module per layer and one line in :mod:`offchain.registry`:

=================  ===========================================================================
module             what it holds (and may import)
=================  ===========================================================================
``__init__.py``    ``MECHANISM``: a :class:`Mechanism` subclass instance wiring the modules below
                   (imports nothing heavy: the CLI reads names and options from it)
``scenario.py``    its scenario section(s): ``parse(data, source) -> Scenario``, built on the
                   shared reader kit :mod:`offchain.models.scenario` (site, grid tariff, devices,
                   uncertainty blocks are read there; the mechanism's own tables here)
``market.py``      its pure math: the participants' and the coordinator's logic as
                   :class:`Participant` / :class:`Coordinator` objects over plain integers,
                   its centralised reference and the Python mirror of its settlement rule.
                   No chain, no crypto imports (the protocol layer moves the integers).
``audit.py``       its audit rules: a class with ``describe()``, ``observe(decryption)`` and
                   ``settlement(...)`` (see :class:`offchain.audit.rules.Rules`)
``figures.py``     ``figures(record) -> {caption: matplotlib figure}`` for its report
``contracts``      its settlement rule, a stateless Solidity contract implementing
                   ``ISettlementRule`` (contracts/RoundTypes.sol); :attr:`Mechanism.rule_contract`
                   names it, :attr:`Mechanism.rule_sources` says where it lives if not in
                   ``contracts/rules/``
=================  ===========================================================================

The round every mechanism runs (:func:`offchain.protocol.driver.run_round`)
--------------------------------------------------------------------------------
Parties: participants (prosumers, each with its own account and secrets) and one coordinator
(the weak centre, the storage operator, a community operator, an auctioneer) that holds the
round's decryption key, if the round has one; further accounts the settlement pays (the grid
account, a P2P centre) are *payees*. The driver repeats, for iteration k = 0, 1, ...::

    every participant:  plan(k, prices) -> Solve | None        its local optimisation, if any
                        (run by an executor: in series, or on Dask workers holding the models)
                        contribute(k, prices, solved) -> Contribution
    transport:          the sum of the contributions' ``sums`` to the coordinator (plaintext,
                        masked + Paillier in process, or through the contract), each ``pairs``
                        vector to its partner only
    coordinator:        answer(k, sums) -> Answer: the next public prices, or final
    every participant:  observe(k, answer, received)

until an answer is ``final``; then the reveals (each participant's last ``reveal``, committed in
its last submission) are settled by the rule contract (chain) or its Python mirror (in process).
All values are fixed-point integers (:mod:`offchain.units`), so every transport carries the same
numbers and all modes follow bit-identical trajectories.

The five shapes
---------------
* iterative rounds over encrypted aggregates (tariff): ``sums`` each iteration, prices back;
* iterative rounds with pairwise messages (storage + P2P ADMM): also ``pairs`` ({partner index:
  vector of ``pair_lanes`` values}, sealed for the partner), and ``Answer.closing`` announces the
  closing iteration whose contributions are the bills;
* hierarchical rounds (communities inside a wide-area round): a community's operator is a
  participant of the parent round with a ``child(k, prices) -> RoundSetup`` hook; in each
  iteration the driver runs that child round (the operator as its coordinator) to its end on a
  transport of the same kind, in every mode, and hands its outcome to the operator's
  ``contribute`` as what it solved; ``RoundSetup.child_rounds`` declares the operators' child
  sizes so that the parent's deadlines on chain leave room for them; the chain records each
  child's parent round id, the run record the tree of rounds (``rounds[].parent``);
* one-shot allocation from published coalition values (cooperative): ``max_iterations = 1``, the
  coordinator concludes at once and the rule checks the allocation against the published values;
* one-shot sealed bids (auction): ``RoundSetup.encrypted = False`` (no Paillier key):
  contributions carry only a ``reveal`` (committed, opened at settlement), ``slots = 0``; the
  rule contract clears the revealed bids.

What a mechanism returns for each round it runs is a :class:`RoundSetup`; what it reports is
built from the driver's :class:`~offchain.protocol.driver.RoundOutcome` by
:meth:`Mechanism.summarise`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


MIN_PARTICIPANTS = 3  # the privacy minimum of a round (PrivateRounds.MIN_PARTICIPANTS): no sum of fewer is opened


# ------------------------------------------------------------------------------------------
# progress of long preparation steps
# ------------------------------------------------------------------------------------------
_progress_sink: ContextVar[Callable[[str, int, int], None] | None] = ContextVar("progress_sink", default=None)


def counted(items: Sequence, what: str) -> Iterator:
    """``items``, reporting ``what`` with a count (done of total) to the command's progress bar as
    each is taken: for a mechanism's long loops in ``prepare`` (one model or solve per prosumer)."""
    sink = _progress_sink.get()
    for i, item in enumerate(items):
        if sink is not None:
            sink(what, i, len(items))
        yield item
    if sink is not None:
        sink(what, len(items), len(items))


# ------------------------------------------------------------------------------------------
# what moves in a round (plain integers in the on-chain fixed point)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contribution:
    """What one participant sends in one iteration.

    ``sums``: the ``slots`` values the coordinator receives summed over all participants;
    ``pairs``: {partner index: ``pair_lanes`` values} delivered to that partner only;
    ``reveal``: the vector committed this iteration and opened at settlement if it is the last
    (default: ``sums``).
    """

    sums: list[int]
    pairs: dict[int, list[int]] = field(default_factory=dict)
    reveal: list[int] | None = None

    @property
    def committed(self) -> list[int]:
        return list(self.sums) if self.reveal is None else list(self.reveal)


@dataclass(frozen=True)
class Answer:
    """The coordinator's public answer to an iteration's sums.

    Not final: ``prices`` open the next iteration (``closing``: it is the closing one). Final: the
    round concludes with its current prices; ``converged`` and ``reason`` say whether the
    mechanism's own stop rule was met. ``residuals``: named convergence figures for the record.
    """

    prices: list[int] | None = None
    final: bool = False
    closing: bool = False
    converged: bool = False
    reason: str = ""
    residuals: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Solve:
    """A participant's local optimisation: ``model.<method>(*args)``, run by an executor (in this
    process or on a worker holding a copy of ``model``)."""

    model: Any
    method: str
    args: tuple = ()


class Participant(Protocol):
    """A participant's mechanism logic: its private model and state (plain data)."""

    name: str

    def plan(self, k: int, prices: list[int]) -> Solve | None: ...

    def contribute(self, k: int, prices: list[int], solved: Any) -> Contribution: ...

    def observe(self, k: int, answer: Answer, received: dict[int, list[int]]) -> None: ...


class Coordinator(Protocol):
    """The coordinator's mechanism logic: it sees only the sums (and its own parameters).

    A coordinator with heavy solves of its own (coalition values, a wide-area clearing) adds
    ``plan(k, sums) -> list[Solve]``: the executor runs them, fanned out like the participants'
    solves (on Dask workers), and ``answer(k, sums, solved)`` gets their results in order."""

    name: str

    def start(self) -> list[int]: ...

    def answer(self, k: int, sums: list[int]) -> Answer: ...


@dataclass
class RoundSetup:
    """One round of a mechanism, as its ``prepare`` builds it (public parameters + the agents).

    ``terms(addresses)``: the ABI-encoded terms of the rule contract given every party's address
    ({participant name or payee role or "coordinator": address}); ``settlement(values, prices,
    addresses, standing)``: the Python mirror of the rule (:class:`MirrorSettlement`), ``standing``
    giving each participant's standing at settlement (0 in the final sums, 1 dropped and revealed,
    2 dropped and silent: RoundTypes.Standing); ``collateral(name)``:
    the token base units a participant or payee deposits before the round starts (locked until it
    ends; a participant that deposits less than the least of them is dropped at the start);
    ``bond``: what the coordinator deposits, forfeited if it is proven at fault.
    """

    label: str
    participants: list[Participant]
    coordinator: Coordinator
    slots: int
    price_floor: list[int]
    price_cap: list[int]
    max_iterations: int
    public_rule: dict  # the mechanism name and its public update rule, published for auditors
    settlement: Callable[[list[list[int]], list[int], dict[str, str], list[int]], "MirrorSettlement"]
    collateral: Callable[[str], int]
    payees: list[str] = field(default_factory=lambda: ["grid"])
    coordinator_role: str = "coordinator"
    slot_bits: int = 64
    pair_lanes: int = 0
    terms: Callable[[dict[str, str]], bytes] | None = None
    allow_list: bool = False
    encrypted: bool = True
    bond: int | None = None  # the coordinator's bond (base units); None: the largest participant collateral
    details: dict = field(default_factory=dict)  # anything the mechanism wants back in summarise
    # the party whose account balances the market (the round contract's gridAccount: the rule pays it
    # what the participants' payments leave, and it takes forfeits nobody else may share): a payee,
    # or the coordinator's role in a round without payees
    balancing: str = "grid"
    # operators among the participants that run a child round in each iteration (their ``child`` hook):
    # {operator name: (the child round's participants, its iteration cap)}, so that this round's
    # deadlines on chain leave room for them
    child_rounds: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def balancing_role(self) -> str:
        """``balancing``, checked: a payee or the coordinator."""
        if self.balancing not in (*self.payees, self.coordinator_role):
            raise ValueError(f"{self.label}: the balancing role {self.balancing!r} is neither a payee "
                             f"({', '.join(self.payees) or 'none'}) nor the coordinator's role")
        return self.balancing


@dataclass(frozen=True)
class MirrorSettlement:
    """A settlement as the rule contract computes it: positive = paid (token base units)."""

    amounts: list[int]  # per participant, registration order
    payees: dict[str, int]  # {payee role: amount}
    bills: list[list[int]] = field(default_factory=list)  # per participant, items of ``bill_items``


@dataclass(frozen=True)
class Option:
    """A mechanism's own option of ``gridshare run`` (e.g. ``--case``)."""

    flag: str
    help: str
    type: Callable[[str], Any] = str
    choices: Sequence[str] | None = None
    default: Any = None
    action: str | None = None  # "store_true" for a switch


# ------------------------------------------------------------------------------------------
# the mechanism
# ------------------------------------------------------------------------------------------
class Mechanism(ABC):
    """What the framework needs from a mechanism; subclass it in the mechanism's ``__init__.py``.

    Attributes: ``name`` (registry name, also published on chain and returned by the rule
    contract's ``mechanism()``), ``title``, ``rule_contract`` (its Solidity contract name),
    ``rule_sources`` (folders with its Solidity sources beyond ``contracts/``), ``bill_items``
    (names of the bill items its rule emits), ``options`` (its ``gridshare run`` options),
    ``payee_roles`` (the accounts besides participants and coordinator its rounds pay).
    """

    name: str = ""
    title: str = ""
    rule_contract: str = ""
    rule_sources: tuple[Path, ...] = ()
    bill_items: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    processes_unsupported: str = ""  # why its rounds cannot yet run with every party its own process ("": they can)

    # -- scenario layer ------------------------------------------------------------------------
    @abstractmethod
    def parse(self, data: dict, source: str = "", prosumers: int | None = None, seed: int | None = None) -> Any:
        """The validated scenario (its section(s) of the TOML document ``data``, read from ``source``);
        ``prosumers`` and ``seed`` are the command line's ``--prosumers`` and ``--seed`` (None: the
        file's). Raise :class:`~offchain.errors.ScenarioError` naming the field on bad input. Must
        stay cheap (no solver imports): it runs before any heavy work. The scenario has ``name``,
        ``seed``, ``privacy``, ``chain``, ``prosumers`` and ``to_dict()``."""

    def layout(self, scenario: Any) -> tuple[int, int, int]:
        """(slots per ciphertext, slot bits, participants) of the scenario's rounds, known before
        any heavy work, so that a key too small for them is refused early."""
        return (0, 64, 0)

    def iteration_cap(self, scenario: Any) -> int | None:
        """The most iterations the scenario's main round may run (None: unknown), so that an option
        acting at a later iteration (``--drop-at``) is refused before any heavy work."""
        return None

    def check_options(self, scenario: Any, options: dict) -> None:
        """Validate this mechanism's CLI options against the scenario (cheap); raise
        :class:`~offchain.errors.UsageError`."""

    # -- the job ---------------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, scenario: Any, options: dict) -> "Job":
        """Build what ``gridshare run`` runs: the rounds (:class:`RoundSetup`), each with fresh
        agents; heavy work (profiles, models) happens here."""

    @abstractmethod
    def summarise(self, job: "Job", outcomes: list, plain: list, reference: Any) -> "Summary":
        """The record's parties (those of the main round, the last), details and summary lines
        from the driver's outcomes (:class:`~offchain.protocol.driver.RoundOutcome`, one per round
        of ``job``, same order), the plaintext-mode outcomes (``plain``: same order, empty unless
        ``job.plaintext_check``) and the reference (``job.reference()``, or None)."""

    # -- audit and report layers ---------------------------------------------------------------
    @abstractmethod
    def audit_rules(self, published: dict, params: dict, participants: list[str]) -> Any:
        """The audit rules of a round, from the rule it published on chain (``published``: the
        decoded ``mechanism`` JSON) and the round's parameters."""

    def figures(self, record: dict) -> dict:
        """Mechanism-specific report figures {caption: matplotlib figure} (default: none)."""
        return {}


@dataclass
class Job:
    """The rounds a run executes, plus what the mechanism needs to summarise them.

    ``rounds``: factories of fresh :class:`RoundSetup` (one per mode run: the plaintext mode and
    the private mode each get their own agents); the last is the main round, whose parties and
    iterations the record shows. ``reference``: a callable giving the centralised reference (or
    None). ``plaintext_check``: the runner also runs the main round in plaintext mode first.
    """

    scenario: Any
    rounds: list[Callable[[], RoundSetup]]
    labels: list[str]
    reference: Callable[[], Any] | None = None
    profiles: dict = field(default_factory=dict)  # generated profiles, for the record
    plaintext_check: bool = False  # also run every round in plaintext mode, side by side
    parameters: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)  # the mechanism's own


@dataclass
class PartySummary:
    """One party of the record: costs in the scenario's currency, its bill items."""

    name: str
    role: str
    cost_alone: float | None = None
    cost_shared: float | None = None
    bill: dict[str, float] = field(default_factory=dict)


@dataclass
class Summary:
    parties: list[PartySummary]
    details: dict
    lines: list[tuple[str, str]]  # (label, value) for the CLI and the report
    headline: str = ""  # the saving, in one phrase
