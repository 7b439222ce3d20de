"""Fixed-point units shared by the off-chain code and the contracts (see docs/protocol.md).

Energy travels as signed integers of 1e-6 kWh, prices as unsigned integers of 1e-6 token per
kWh, token amounts with 18 decimals: ``amount = price * energy * AMOUNT_PER_PRICE_ENERGY``.
Hourly periods make kW and kWh the same number.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

ENERGY_SCALE = 10**6
PRICE_SCALE = 10**6
TOKEN_DECIMALS = 18
AMOUNT_PER_PRICE_ENERGY = 10**6  # 1e-6 * 1e-6 token -> 1e-18 token


def energy_to_fixed(kwh: Iterable[float]) -> list[int]:
    """kWh (floats, any shape, flattened) to integer micro-kWh, rounded to nearest."""
    return [int(v) for v in np.rint(np.asarray(kwh, dtype=float).ravel() * ENERGY_SCALE)]


def energy_from_fixed(values: Iterable[int]) -> np.ndarray:
    return np.asarray([int(v) for v in values], dtype=float) / ENERGY_SCALE


def price_to_fixed(prices: Iterable[float]) -> list[int]:
    """Token per kWh (floats) to integer micro-token per kWh, rounded to nearest."""
    return [int(v) for v in np.rint(np.asarray(list(prices), dtype=float) * PRICE_SCALE)]


def price_from_fixed(values: Iterable[int]) -> np.ndarray:
    return np.asarray([int(v) for v in values], dtype=float) / PRICE_SCALE


def tokens(amount: int) -> float:
    """Token base units (18 decimals) as a float number of tokens, for display."""
    return amount / 10**TOKEN_DECIMALS
