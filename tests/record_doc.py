"""What docs/run-record.md documents, read from its table: every key of a record, and within a
row every name in backticks (the keys of the record's timings, gas kinds, rounds[] fields, each
mechanism's details). Used by the tests that write records."""
from __future__ import annotations

import re

from .conftest import ROOT

DOC = ROOT / "docs" / "run-record.md"


def documented() -> dict[str, set[str]]:
    """Top-level key -> the names in backticks of its row."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `(\w+)` \| [^|]+ \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = set(re.findall(r"`([^`]+)`", m.group(2)))
    return rows


def undocumented(record: dict) -> list[str]:
    """Every part of ``record`` the document does not name (empty: they agree)."""
    doc = documented()
    out = [f"key {k}" for k in record if k not in doc] + [f"documented key {k} missing" for k in doc if k not in record]
    parts = {
        "timings": set(record["timings"]),
        "gas": set(record["gas"]) | set(record["gas"]["per_kind"]) | {k for it in record["iterations"] for k in it["gas"]},
        "rounds": {k for r in record["rounds"] for k in r},
        "parameters": set(record["parameters"]),
        "details": set(record["details"]),
        "parties": {k for p in record["parties"] for k in p},
        "iterations": {k for it in record["iterations"] for k in it},
        "convergence": set(record["convergence"]),
        "chain": set(record["chain"] or {}),
    }
    for key, names in parts.items():
        out += [f"{key}.{name}" for name in sorted(names - doc.get(key, set()))]
    return out
