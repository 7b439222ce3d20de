"""The run record, ``gridshare.run/2``: one machine-readable file (``run.json``) for every
mechanism's run. Schema in docs/run-record.md; :func:`validate` checks a record against it.

Units: prices and sums are the on-chain fixed point (integers: 1e-6 token per unit, 1e-6 kWh);
costs in the scenario's currency (floats); payments in token base units (strings, exact) and in
tokens (floats). One sign convention: a positive payment or bill item is paid by the party.
"""
from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "gridshare.run/2"


@dataclass
class Payment:
    base_units: str  # token base units (18 decimals), exact, positive = paid by the party
    tokens: float

    @classmethod
    def of(cls, amount: int) -> "Payment":
        return cls(str(int(amount)), int(amount) / 10**18)


@dataclass
class Party:
    name: str
    role: str  # prosumer, coordinator role (coordinator, operator, ...), grid, centre, ...
    address: str | None
    cost_alone: float | None
    cost_shared: float | None
    bill: dict[str, float]  # items in tokens, positive = paid
    payment: Payment | None  # None: nothing settled


@dataclass
class Iteration:
    iteration: int
    prices: list[int]  # the public prices the iteration ran at (fixed point)
    sums: list[int]  # the decrypted sums (fixed point)
    residuals: dict[str, float]
    gas: dict[str, int]  # per kind of transaction
    seconds: float


@dataclass
class Convergence:
    converged: bool
    reason: str
    iterations: int


@dataclass
class Transaction:
    hash: str
    party: str
    kind: str
    iteration: int | None
    gas: int


@dataclass
class Round:
    label: str
    transport: str  # plaintext, private, chain
    round_id: int | None
    converged: bool
    reason: str
    iterations: int
    settled: bool
    payments: dict[str, str]  # party name -> base units (positive = paid)
    matches_mirror: bool | None  # chain only: the contract's payments equal the Python mirror's
    dropped: dict[str, int] = field(default_factory=dict)  # participant -> iteration it dropped out in
    attempts: dict[str, int] = field(default_factory=dict)  # iteration -> attempts, where a dropout or a dispute repeated it
    blamed: dict[str, dict[str, str]] = field(default_factory=dict)  # party named at fault -> {"fault", "forfeited" (base units)}
    parent: str | None = None  # the label of the round whose operator ran this one (a child round)


@dataclass
class RunRecord:
    mechanism: str
    title: str
    created: str
    software: dict[str, Any]
    command: list[str]
    scenario: dict[str, Any]
    parameters: dict[str, Any]
    chain: dict[str, Any] | None
    iterations: list[Iteration]
    parties: list[Party]
    convergence: Convergence
    gas: dict[str, Any]
    timings: dict[str, float]
    transactions: list[Transaction]
    rounds: list[Round]
    summary: list[tuple[str, str]]
    details: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = [list(row) for row in self.summary]
        return d


def software() -> dict[str, Any]:
    """The package version and the git commit of the checkout (None outside a git checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("gridshare")
    except PackageNotFoundError:
        v = "unknown"
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, False
    return {"version": v, "git_commit": commit, "git_dirty": dirty}


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------
_TOP = {"schema": str, "mechanism": str, "title": str, "created": str, "software": dict, "command": list,
        "scenario": dict, "parameters": dict, "chain": (dict, type(None)), "iterations": list, "parties": list,
        "convergence": dict, "gas": dict, "timings": dict, "transactions": list, "rounds": list, "summary": list,
        "details": dict}
_PARTY = {"name": str, "role": str, "address": (str, type(None)), "cost_alone": (float, int, type(None)),
          "cost_shared": (float, int, type(None)), "bill": dict, "payment": (dict, type(None))}
_ITERATION = {"iteration": int, "prices": list, "sums": list, "residuals": dict, "gas": dict, "seconds": (float, int)}
_CHAIN = {"kind": str, "url": (str, type(None)), "chain_id": int, "hardfork": str, "state": (str, type(None)),
          "contracts": dict, "rounds": list}
_TX = {"hash": str, "party": str, "kind": str, "iteration": (int, type(None)), "gas": int}


def _check(obj: Any, spec: dict, where: str, errors: list[str]) -> None:
    if not isinstance(obj, dict):
        errors.append(f"{where}: must be an object")
        return
    for key, typ in spec.items():
        if key not in obj:
            errors.append(f"{where}.{key}: missing")
        elif not isinstance(obj[key], typ) or (typ is int and isinstance(obj[key], bool)):
            errors.append(f"{where}.{key}: wrong type {type(obj[key]).__name__}")


def validate(record: dict) -> list[str]:
    """Everything in ``record`` that does not follow gridshare.run/2 (empty: valid)."""
    errors: list[str] = []
    _check(record, _TOP, "record", errors)
    if errors:
        return errors
    if record["schema"] != SCHEMA:
        errors.append(f"record.schema: {record['schema']!r}, expected {SCHEMA!r}")
    for i, p in enumerate(record["parties"]):
        _check(p, _PARTY, f"parties[{i}]", errors)
        pay = p.get("payment") if isinstance(p, dict) else None
        if isinstance(pay, dict):
            if not isinstance(pay.get("base_units"), str) or not pay["base_units"].lstrip("-").isdigit():
                errors.append(f"parties[{i}].payment.base_units: must be an integer string")
            elif abs(int(pay["base_units"]) / 10**18 - pay.get("tokens", float("nan"))) > 1e-6 * max(1, abs(pay["tokens"])):
                errors.append(f"parties[{i}].payment.tokens: does not match base_units")
    for i, it in enumerate(record["iterations"]):
        _check(it, _ITERATION, f"iterations[{i}]", errors)
        if isinstance(it, dict) and it.get("iteration") != i:
            errors.append(f"iterations[{i}].iteration: {it.get('iteration')}, expected {i}")
    _check(record["convergence"], {"converged": bool, "reason": str, "iterations": int}, "convergence", errors)
    if record["chain"] is not None:
        _check(record["chain"], _CHAIN, "chain", errors)
    for i, t in enumerate(record["transactions"]):
        _check(t, _TX, f"transactions[{i}]", errors)
    paid = [int(p["payment"]["base_units"]) for p in record["parties"]
            if isinstance(p, dict) and isinstance(p.get("payment"), dict) and str(p["payment"].get("base_units", "x")).lstrip("-").isdigit()]
    if paid and sum(paid) != 0:
        errors.append(f"parties: payments sum to {sum(paid)} base units, not 0")
    return errors
