"""The one round driver: runs any mechanism's round over any transport (docs in
:mod:`offchain.framework`, "The round every mechanism runs").

A round ends in one of three ways: the coordinator's stop rule was met (converged: settled), the
iteration cap was reached (not converged: closed with every deposit returned and nothing traded,
unless ``settle_unconverged``), or a party broke the protocol (:class:`ProtocolViolation`).
Nested rounds: a participant with a ``child(k, prices)`` hook is the operator of a child round in
iteration k (its community's round, say): the driver runs that round to its end on a transport of
the same kind (``transport.nested()``, on chain bound to this round as its parent) and hands its
:class:`RoundOutcome` to the operator's ``contribute`` as what it solved; the outcome is kept in
``RoundOutcome.children``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolViolation
from ..framework import Answer, MirrorSettlement, RoundSetup
from .executors import SerialExecutor
from .transport import Delivery, Transport


@dataclass
class IterationRecord:
    iteration: int
    prices: list[int]
    sums: list[int]
    answer: Answer
    seconds: float


@dataclass
class RoundOutcome:
    """What a round did: its iterations, how it ended, what was settled (positive = paid)."""
    setup: RoundSetup
    transport: Transport
    iterations: list[IterationRecord]
    converged: bool
    reason: str
    final_prices: list[int]
    reveals: list[list[int] | None]  # None: the participant dropped out
    settlement: MirrorSettlement | None  # None: closed without trading
    seconds: dict[str, float] = field(default_factory=dict)
    children: list["ChildOutcome"] = field(default_factory=list)  # the child rounds its operators ran

    @property
    def settled(self) -> bool:
        return self.settlement is not None


@dataclass
class ChildOutcome:
    """A child round run by ``operator`` (a participant of the parent) in parent iteration ``iteration``."""
    operator: str
    iteration: int
    outcome: RoundOutcome


Observer = Callable[[int, RoundSetup, Delivery, Answer], None]


def run_round(setup: RoundSetup, transport: Transport, *, executor=None, settle_unconverged: bool = False,
              progress: Callable[[int, Answer], None] | None = None, observer: Observer | None = None,
              parent: Transport | None = None) -> RoundOutcome:
    """Runs ``setup`` to its end over ``transport``; see the module docstring."""
    executor = executor or SerialExecutor()
    parts, coordinator = setup.participants, setup.coordinator
    t_start = time.perf_counter()
    transport.open(setup, parent)
    try:
        prices = list(coordinator.start())
        transport.start(prices)
        iterations: list[IterationRecord] = []
        answer = None
        solve_seconds = 0.0
        children: list[ChildOutcome] = []
        for k in range(setup.max_iterations):
            t0 = time.perf_counter()
            active = sorted(transport.active)
            solved = executor.run([parts[i].plan(k, prices) for i in active])
            for n, i in enumerate(active):  # operators run their child rounds, one after the other
                child = getattr(parts[i], "child", None)
                child_setup = child(k, list(prices)) if child is not None else None
                if child_setup is not None:
                    outcome = run_round(child_setup, transport.nested(parts[i].name), executor=executor,
                                        settle_unconverged=settle_unconverged, parent=transport)
                    children.append(ChildOutcome(parts[i].name, k, outcome))
                    solved[n] = outcome
            contributions = {i: parts[i].contribute(k, prices, s) for i, s in zip(active, solved)}
            solve_seconds += time.perf_counter() - t0
            delivery = transport.exchange(k, contributions)
            if delivery.dropped:
                _tell_dropped(setup, k, delivery.dropped, transport.active)
            answer = coordinator_answer(coordinator, k, delivery.sums, executor)
            if not (answer.final and not answer.converged and not settle_unconverged):
                transport.publish(k, answer, delivery)  # else the round is closed below, not concluded
            for i in sorted(transport.active):
                parts[i].observe(k, answer, delivery.received[i])
            iterations.append(IterationRecord(k, prices, list(delivery.sums), answer, time.perf_counter() - t0))
            if observer is not None:
                observer(k, setup, delivery, answer)
            if progress is not None:
                progress(k, answer)
            if answer.final:
                break
            if answer.prices is None:
                raise ProtocolViolation(f"iteration {k}: the coordinator neither concluded nor published prices")
            prices = list(answer.prices)
        if answer is None or not answer.final:
            raise ProtocolViolation(f"the coordinator did not conclude within the iteration cap {setup.max_iterations}")
        settlement = None
        if answer.converged or settle_unconverged:
            settlement = transport.settle(prices)
        else:
            transport.close_round()
        reveals = [contributions[i].committed if i in transport.active else None for i in range(len(parts))]
    finally:
        transport.finish()
    seconds = {"solve": solve_seconds, **transport.seconds, "total": time.perf_counter() - t_start}
    return RoundOutcome(setup, transport, iterations, answer.converged, answer.reason, prices, reveals,
                        settlement, seconds, children)


def coordinator_answer(coordinator, k: int, sums: list[int], executor=None) -> Answer:
    """The coordinator's answer to iteration k's sums. A coordinator with a ``plan(k, sums)`` hook
    (heavy solves: coalition values, a wide-area clearing) has its solves run by the executor,
    fanned out like the participants', and gets their results: ``answer(k, sums, solved)``."""
    plan = getattr(coordinator, "plan", None)
    if plan is None:
        return coordinator.answer(k, sums)
    solves = plan(k, list(sums))
    return coordinator.answer(k, sums, (executor or SerialExecutor()).run(solves) if solves else [])


def _tell_dropped(setup: RoundSetup, k: int, dropped: list[int], active: set[int]) -> None:
    """Parties with a ``dropped(k, indices)`` hook learn who left the round in iteration k."""
    for party in [setup.coordinator, *(setup.participants[i] for i in sorted(active))]:
        hook = getattr(party, "dropped", None)
        if hook is not None:
            hook(k, list(dropped))


def outcome_gas(outcome: RoundOutcome) -> dict[str, Any]:
    """Gas per kind of transaction: count, total, mean."""
    return {kind: {"count": len(v), "total": int(sum(v)), "mean": sum(v) / len(v)}
            for kind, v in outcome.transport.gas.items() if v}
