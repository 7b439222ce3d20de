"""Fixtures shared by the contract tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def w(env):
    """The module's ``env`` (a deployed market) with every change reverted after the test: the
    chain's, and those of the main round's crew (``env.crew``, if any: a copy per test)."""
    snap = env.chain.snapshot()
    crew = getattr(env, "crew", None)
    if crew is not None:
        env.crew = crew.copy()
    yield env
    env.chain.revert(snap)
    if crew is not None:
        env.crew = crew
