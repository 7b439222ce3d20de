"""Fixtures shared by the contract tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def w(env):
    """The module's ``env`` (a deployed market) with every change reverted after the test."""
    snap = env.chain.snapshot()
    yield env
    env.chain.revert(snap)
