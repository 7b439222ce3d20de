"""Device building blocks shared by every prosumer model: shiftable load and a private battery.

Each returns the power the device draws from the prosumer's bus (positive = consumption), its
constraints, its cost terms and its schedule, as cvxpy expressions over T hourly periods.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np


@dataclass
class Device:
    power: cp.Expression  # (T,) drawn from the bus, kW
    constraints: list = field(default_factory=list)
    parts: dict[str, cp.Expression] = field(default_factory=dict)
    schedule: dict[str, cp.Expression] = field(default_factory=dict)


def shiftable_load(spec, load_forecast: np.ndarray) -> Device | None:
    """A share of the load that can move within the day: energy conserved, per-hour cap, and a
    quadratic discomfort cost of deviating from the forecast."""
    if spec.shiftable_share <= 0:
        return None
    d_hat = spec.shiftable_share * np.asarray(load_forecast, dtype=float)
    d = cp.Variable(d_hat.shape[0], nonneg=True, name="shift")
    dev = Device(power=d, constraints=[cp.sum(d) == d_hat.sum(), d <= spec.shift_peak_factor * d_hat.mean()],
                 schedule={"shiftable": d, "shiftable_forecast": cp.Constant(d_hat)})
    if spec.shift_cost > 0:
        dev.parts["shift_discomfort"] = spec.shift_cost * cp.sum_squares(d - d_hat)
    return dev


def battery(b, T: int) -> Device | None:
    """A private battery: one-way efficiency, power limits, SoC bounds, end SoC = start SoC, a
    linear usage cost and a quadratic wear cost (either may be zero)."""
    if b is None:
        return None
    ch = cp.Variable(T, nonneg=True, name="charge")
    dis = cp.Variable(T, nonneg=True, name="discharge")
    e0 = b.soc_initial * b.capacity_kwh
    soc = e0 + cp.cumsum(b.efficiency * ch - dis / b.efficiency)
    dev = Device(power=ch - dis,
                 constraints=[ch <= b.power_kw, dis <= b.power_kw, soc >= b.soc_min * b.capacity_kwh,
                              soc <= b.soc_max * b.capacity_kwh, soc[T - 1] == e0],
                 schedule={"battery_charge": ch, "battery_discharge": dis, "battery_soc": soc})
    if getattr(b, "usage_cost", 0.0) > 0:
        dev.parts["battery_usage"] = b.usage_cost * cp.sum(ch + dis)
    if b.wear_cost > 0:
        dev.parts["battery_wear"] = b.wear_cost * (cp.sum_squares(ch) + cp.sum_squares(dis))
    return dev
