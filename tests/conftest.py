"""Shared fixtures: one small private round on the embedded chain, reused by the integration tests."""
from __future__ import annotations

import shutil
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "community10.toml"


def node_available() -> bool:
    return shutil.which("node") is not None and (ROOT / "node_modules" / ".bin" / "anvil").exists()
