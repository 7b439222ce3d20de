"""What a mechanism's audit rules provide (its ``audit.py``; :meth:`Mechanism.audit_rules`).

The generic audit (:mod:`offchain.audit.verify`) checks what every round must satisfy: key,
registration, each attempt's submissions and aggregate, opening proofs, check slots and decoded
sums, disputes, reveals against commitments, blame steps, zero-sum transfers, forfeits, ledgers,
token conservation, order of events. A mechanism's rules add what
only it knows, from what its coordinator published on chain (the ``mechanism`` JSON of
``RoundCreated``) and the round's parameters.
"""
from __future__ import annotations

from typing import Any


class Rules:
    """Base of a mechanism's audit rules.

    ``problems``: (ok, detail) findings about the published rule itself (e.g. missing fields),
    reported as "update rule"; when it is empty ``describe()`` is reported instead.
    """

    def __init__(self) -> None:
        self.problems: list[tuple[bool, str]] = []

    def describe(self) -> str:
        return "no mechanism-specific rule"

    def started(self, prices: list[int]) -> None:
        """The round started with these public prices (``RoundStarted``)."""

    def dropped(self, k: int, positions: list[int]) -> None:
        """These participants (registration positions) left the round in iteration k (``Dropped``),
        before its publication is observed."""

    def observe(self, decryption: Any) -> list[tuple[str, bool, str]]:
        """Checks of one ``Published`` or ``Concluded`` event: (check, ok, detail) rows."""
        return []

    def settlement(self, participants: list[str], values: list[list[int]], prices: list[int],
                   member_index: list[int], standing: list[int] | None = None) -> tuple[list[tuple[str, int]], list[tuple] | None]:
        """The expected ``Payment`` events (account, amount) in booking order, and the expected
        ``Bill`` events (participant, items) or None when the rule emits none; ``standing`` per
        participant: 0 in the final sums, 1 dropped with a reveal, 2 dropped silent. Raise
        ValueError when the rule cannot be evaluated."""
        raise ValueError("the settlement rule is not known to the audit")

    def child_link(self, child_sums: list[int], operator_values: list[int]) -> tuple[bool, str] | None:
        """How a child round's result (its concluded sums) must show in what its operator (a
        participant of this round) revealed here: (ok, detail), or None when the mechanism states
        no link."""
        return None
