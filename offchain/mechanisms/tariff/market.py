"""The weakly centralised tariff iteration as pure math (no chain, no crypto): Qi, Ai, Ji, Li,
Wang, Pan, "A weakly centralized multiple prosumers energy-sharing mechanism that takes into
account privacy protection", Electric Power Engineering Technology.

One code path serves every mode: :class:`TariffProsumer` and :class:`TariffCoordinator` are the
parties' logic, which :func:`offchain.protocol.driver.run_round` runs over the plaintext, the
private in-process or the chain transport; all see the same fixed-point integers.

Update rule [RECONSTRUCTION; the paper's formula was not retrievable]
--------------------------------------------------------------------
Projected dual ascent on the community balance:
    lambda <- Q( Proj_[f, r]( lambda + p ) ),   p = step applied to D
with D_t = sum_i x_it the aggregate internal net purchase at lambda (excess demand > 0 raises
the tariff), f the feed-in price (floor), r the retail price (cap), Q rounding to the on-chain
fixed point (1e-6 CNY/kWh). D is the gradient of the concave dual function
g(lambda) = sum_i min_x [J_i(x) + lambda . x], and it is Lipschitz with constant
L = sum_i 1/(2 q_i) because every prosumer has a strictly convex trade cost q_i x^2
(models/prosumer.py): a plain gradient step 1/L (the "safe step", computed from the public q_i
by ``TariffRule.from_scenario``) can never diverge, but it is slow on this problem: batteries and
shiftable load couple the hours, so a uniform shift of the evening peak block moves D far less
than a difference between two peak hours (measured: a fixed safe step had not converged after 50
iterations on community10; per-hour adaptive steps needed 37). Two step rules:

  * ``method="bfgs"`` (default): a quasi-Newton step p = damping * B^-1 D on the hours that are
    not pinned, with B a BFGS model of -dD/dlambda (the Hessian of -g) built from the published
    pairs (delta lambda, delta D). Monotonicity of D guarantees the curvature condition
    s.y >= 0, B starts at L I (the safe step) and is Shanno-Phua rescaled at the first update;
    a model that loses positive definiteness restarts from the safe step.
    Measured: community10 converges in 11 iterations, 200 prosumers in 14.
  * ``method="secant"``: per-hour steps a_t = damping / s_t from the secant slope
    s_t = -dD_t/dlambda_t, halved when s_t <= 0, never grown after a sign change of D_t, grown at
    most ``growth`` times per iteration, kept in [step_min, step_max] (step_min = safe step).

Everything the coordinator's state depends on is public: the rule, the initial tariff, and the
sequence of published tariffs and decrypted aggregate imbalances. ``TariffIteration.replay``
recomputes the whole state machine from those, for an auditor.

Stop rule: every hour is settled (|D_t| <= imbalance_tol, or the tariff is pinned at a band edge
with the imbalance pushing outward: at the cap with excess demand, at the floor with excess
supply; the residual is then traded with the grid at exactly that price) AND the next tariff would
move by at most tariff_tol; or the iteration cap is reached (converged=False).

Reference: ``centralized_reference`` solves the whole community as one problem, internal trades
coupled by sum_i x_it = b_t - s_t with the residual bought from the grid at retail (b_t) or sold
at feed-in (s_t). Its balance dual lies in [f_t, r_t] and is the tariff at which the decentralised
best responses reproduce the social optimum (KKT), so the converged tariff should match it.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import SolverError
from ...framework import Answer, Contribution, Solve
from ...units import (AMOUNT_PER_PRICE_ENERGY, ENERGY_SCALE, PRICE_SCALE, energy_from_fixed, energy_to_fixed,
                      price_from_fixed, price_to_fixed)

QUANTUM = 1.0 / PRICE_SCALE  # 1e-6 CNY/kWh, the on-chain price unit


def quantise(values: np.ndarray, quantum: float = QUANTUM) -> np.ndarray:
    """Round to the fixed-point grid (multiples of ``quantum``)."""
    return np.rint(np.asarray(values, dtype=float) / quantum) * quantum


def aggregate(schedules: Sequence[np.ndarray]) -> np.ndarray:
    """Exact sum of fixed-point schedules, back in kW: what the private mode decrypts."""
    total = np.zeros(len(schedules[0]), dtype=np.int64)
    for x in schedules:
        total += np.asarray(energy_to_fixed(x), dtype=np.int64)
    return total.astype(float) / ENERGY_SCALE


# ------------------------------------------------------------------------------------------
# the coordinator's state machine
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TariffRule:
    floor: np.ndarray  # (T,) feed-in price, lower band edge
    cap: np.ndarray  # (T,) retail price, upper band edge
    step: float  # initial step, CNY/kWh per kW of imbalance
    imbalance_tol: float  # kW
    tariff_tol: float  # CNY/kWh
    max_iterations: int
    step_min: float = 1e-6
    step_max: float = 0.05
    damping: float = 0.8
    growth: float = 4.0
    secant_min_change: float = 1e-5
    quantum: float = QUANTUM
    method: str = "bfgs"  # "bfgs" (quasi-Newton on the whole day) or "secant" (per-hour steps)

    def __post_init__(self) -> None:
        floor = quantise(self.floor, self.quantum)
        cap = quantise(self.cap, self.quantum)
        if floor.ndim != 1 or floor.shape != cap.shape:
            raise ValueError("floor and cap must be 1-D arrays of equal length")
        if np.any(floor > cap):
            raise ValueError("floor must not exceed cap")
        if not (0 < self.step_min <= self.step <= self.step_max):
            raise ValueError("need 0 < step_min <= step <= step_max")
        if not (0 < self.damping <= 1) or self.growth < 1:
            raise ValueError("need 0 < damping <= 1 and growth >= 1")
        if self.imbalance_tol <= 0 or self.tariff_tol <= 0 or self.max_iterations < 1:
            raise ValueError("tolerances must be > 0 and max_iterations >= 1")
        if self.method not in ("bfgs", "secant"):
            raise ValueError(f"method must be 'bfgs' or 'secant', got {self.method!r}")
        for name, arr in (("floor", floor), ("cap", cap)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def hours(self) -> int:
        return int(self.floor.shape[0])

    @classmethod
    def from_scenario(cls, scenario) -> "TariffRule":
        """Rule of a scenario: its steps are multiples of ``scenario.safe_step()`` (public q_i)."""
        m = scenario.iteration
        safe = scenario.safe_step()
        return cls(floor=np.array(scenario.tariff.feed_in), cap=np.array(scenario.tariff.retail),
                   step=m.step * safe, imbalance_tol=m.imbalance_tol, tariff_tol=m.tariff_tol,
                   max_iterations=m.max_iterations, step_min=m.step_min * safe,
                   step_max=m.step_max * safe, damping=m.damping, method=m.method)

    @classmethod
    def from_dict(cls, d: dict) -> "TariffRule":
        """Inverse of :meth:`to_dict` (an auditor rebuilds the rule published on chain)."""
        return cls(**{**d, "floor": np.array(d["floor"]), "cap": np.array(d["cap"])})

    def to_dict(self) -> dict:
        return {"floor": self.floor.tolist(), "cap": self.cap.tolist(), "step": self.step,
                "imbalance_tol": self.imbalance_tol, "tariff_tol": self.tariff_tol,
                "max_iterations": self.max_iterations, "step_min": self.step_min,
                "step_max": self.step_max, "damping": self.damping, "growth": self.growth,
                "secant_min_change": self.secant_min_change, "quantum": self.quantum,
                "method": self.method}


@dataclass(frozen=True, eq=False)
class Decision:
    converged: bool
    next_tariff: np.ndarray | None  # None: stop (converged or cap reached)
    reason: str
    iteration: int = 0  # index of the observation this decides on (0-based)
    max_imbalance: float = 0.0  # max |D_t| over unsettled hours, kW
    max_change: float = 0.0  # max |next - current| the rule proposes, CNY/kWh


class TariffIteration:
    """The coordinator's state: derivable from public data (published tariffs and aggregates).

    Every reduction (dot products, the Cholesky solve of the quasi-Newton step) uses
    ``math.fsum`` over IEEE-rounded elementwise products, so the state is bit-for-bit
    reproducible on any platform (no BLAS summation order involved): an auditor replaying the
    public aggregates gets exactly the published fixed-point tariffs.
    """

    def __init__(self, rule: TariffRule, initial: np.ndarray):
        init = np.asarray(initial, dtype=float)
        if init.shape != rule.floor.shape:
            raise ValueError(f"initial tariff must have shape {rule.floor.shape}, got {init.shape}")
        self.rule = rule
        self.tariff = quantise(np.clip(init, rule.floor, rule.cap), rule.quantum)
        self.steps = np.full(rule.hours, float(rule.step))  # per-hour steps (secant method)
        self.hessian = np.eye(rule.hours) / rule.step  # curvature model of -g (bfgs method)
        self._scaled = False
        self.history: list[tuple[np.ndarray, np.ndarray]] = []
        self.changes: list[np.ndarray] = []
        self.decisions: list[Decision] = []
        self.finished = False

    @property
    def iteration(self) -> int:
        return len(self.history)

    def tariff_fixed(self) -> list[int]:
        return price_to_fixed(self.tariff)

    def pinned(self, tariff: np.ndarray, imbalance: np.ndarray) -> np.ndarray:
        """Per-hour mask: tariff at a band edge with the imbalance pushing outward."""
        r = self.rule
        half = 0.5 * r.quantum
        at_cap = tariff >= r.cap - half
        at_floor = tariff <= r.floor + half
        return (at_cap & (imbalance > 0)) | (at_floor & (imbalance < 0))

    def settled(self, tariff: np.ndarray, imbalance: np.ndarray) -> np.ndarray:
        """Per-hour mask: balanced within tolerance, or pinned at an edge pushing outward."""
        return self.pinned(tariff, imbalance) | (np.abs(imbalance) <= self.rule.imbalance_tol)

    # -- secant: per-hour adaptive steps ------------------------------------------------------
    def _adapt_secant(self, lam: np.ndarray, d: np.ndarray) -> None:
        r = self.rule
        lam_p, d_p = self.history[-1]
        dl = lam - lam_p
        dd = d - d_p
        new = self.steps.copy()
        for t in range(r.hours):
            if abs(dl[t]) < r.secant_min_change:
                continue  # tariff did not move (pinned or balanced): keep the step
            slope = -dd[t] / dl[t]
            if slope > 0:
                a = min(r.damping / slope, self.steps[t] * r.growth)
            else:
                a = 0.5 * self.steps[t]
            if d[t] * d_p[t] < 0:  # overshoot: never grow
                a = min(a, self.steps[t])
            new[t] = min(max(a, r.step_min), r.step_max)
        self.steps = new

    # -- bfgs: quasi-Newton on the concave dual g(lambda), whose gradient is D(lambda) --------
    def _adapt_bfgs(self, lam: np.ndarray, d: np.ndarray) -> None:
        lam_p, d_p = self.history[-1]
        sv = lam - lam_p  # step taken
        yv = d_p - d  # change of the gradient of -g (monotone: sv . yv >= 0)
        sy = _dot(sv, yv)
        ss, yy = _dot(sv, sv), _dot(yv, yv)
        if ss == 0.0 or sy <= 1e-8 * math.sqrt(ss * yy):
            return  # no reliable curvature information: keep the model
        if not self._scaled:  # Shanno-Phua scaling of the initial model
            self.hessian = np.eye(self.rule.hours) * (yy / sy)
            self._scaled = True
        b = self.hessian
        bs = np.array([_dot(row, sv) for row in b])
        sbs = _dot(sv, bs)
        if sbs <= 0.0:
            return
        self.hessian = b - np.multiply.outer(bs, bs) / sbs + np.multiply.outer(yv, yv) / sy

    def _direction(self, lam: np.ndarray, d: np.ndarray) -> np.ndarray:
        r = self.rule
        if r.method == "secant":
            return self.steps * d
        free = ~self.pinned(lam, d)
        p = np.zeros(r.hours)
        idx = np.flatnonzero(free)
        if idx.size:
            sub = self.hessian[np.ix_(idx, idx)]
            sol = _cholesky_solve(sub, d[idx])
            if sol is None:  # model lost positive definiteness: restart from a gradient step
                self.hessian = np.eye(r.hours) / r.step
                self._scaled = False
                sol = d[idx] * r.step
            p[idx] = r.damping * sol
        return p

    def propose(self, imbalance: np.ndarray) -> np.ndarray:
        r = self.rule
        p = self._direction(self.tariff, imbalance)
        return quantise(np.clip(self.tariff + p, r.floor, r.cap), r.quantum)

    def observe(self, imbalance: np.ndarray) -> Decision:
        """Take the aggregate imbalance sum_i x_i (kW) at the current tariff; decide the next step."""
        if self.finished:
            raise RuntimeError("the tariff iteration has already stopped")
        r = self.rule
        d = np.asarray(imbalance, dtype=float).copy()
        if d.shape != self.tariff.shape or not np.all(np.isfinite(d)):
            raise ValueError(f"imbalance must be {self.tariff.shape} finite values")
        lam = self.tariff.copy()
        k = len(self.history)
        if k:
            if r.method == "secant":
                self._adapt_secant(lam, d)
            else:
                self._adapt_bfgs(lam, d)
        self.history.append((lam, d))
        nxt = self.propose(d)
        self.changes.append(nxt - lam)
        change = float(np.max(np.abs(nxt - lam)))
        ok = self.settled(lam, d)
        max_imb = float(np.max(np.abs(np.where(self.pinned(lam, d), 0.0, d))))
        if ok.all() and change <= r.tariff_tol:
            dec = Decision(True, None, f"converged after {k + 1} iterations: max interior imbalance "
                           f"{max_imb:.4g} kW <= {r.imbalance_tol:g}, max tariff change {change:.3g} "
                           f"<= {r.tariff_tol:g}", k, max_imb, change)
            self.finished = True
        elif k + 1 >= r.max_iterations:
            dec = Decision(False, None, f"iteration cap {r.max_iterations} reached: max interior "
                           f"imbalance {max_imb:.4g} kW, max tariff change {change:.3g}", k, max_imb, change)
            self.finished = True
        else:
            self.tariff = nxt
            dec = Decision(False, nxt.copy(), f"iteration {k}: max interior imbalance {max_imb:.4g} kW, "
                           f"{int((~ok).sum())} hours unsettled", k, max_imb, change)
        self.decisions.append(dec)
        return dec

    @classmethod
    def replay(cls, rule: TariffRule, initial: np.ndarray,
               imbalances: Sequence[np.ndarray]) -> "TariffIteration":
        """Recompute the state machine from public data (auditor): compare its tariffs with the published ones."""
        it = cls(rule, initial)
        for d in imbalances:
            it.observe(d)
        return it


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Platform-independent dot product: exactly rounded sum of IEEE products."""
    return math.fsum((np.asarray(a, dtype=float) * np.asarray(b, dtype=float)).tolist())


def _cholesky_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Solve a x = b for symmetric positive definite a (pure Python floats, fsum reductions)."""
    n = len(b)
    m = a.tolist()
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            v = m[i][j] - math.fsum(low[i][k] * low[j][k] for k in range(j))
            if i == j:
                if not v > 0.0:
                    return None
                low[i][i] = math.sqrt(v)
            else:
                low[i][j] = v / low[j][j]
    z = [0.0] * n
    for i in range(n):
        z[i] = (float(b[i]) - math.fsum(low[i][k] * z[k] for k in range(i))) / low[i][i]
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (z[i] - math.fsum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return np.array(x)


# ------------------------------------------------------------------------------------------
# the parties' logic (run by offchain.protocol.driver over any transport)
# ------------------------------------------------------------------------------------------
class TariffProsumer:
    """A prosumer: its private model; each iteration its best response to the tariff, in the
    on-chain fixed point (the vector it contributes, encrypted, to the community sum)."""

    def __init__(self, model) -> None:
        self.model = model
        self.name = model.name
        self.response = None  # the model's last best response (private)

    def plan(self, k: int, prices: list[int]) -> Solve:
        return Solve(self.model, "respond", (price_from_fixed(prices),))

    def contribute(self, k: int, prices: list[int], solved) -> Contribution:
        self.response = solved
        return Contribution(energy_to_fixed(solved.x))

    def observe(self, k: int, answer: Answer, received: dict) -> None:
        pass


class TariffCoordinator:
    """The weak centre: the tariff iteration on the community sums it decrypts."""

    name = "coordinator"

    def __init__(self, rule: TariffRule, initial: np.ndarray) -> None:
        self.iteration = TariffIteration(rule, initial)

    def start(self) -> list[int]:
        return self.iteration.tariff_fixed()

    def answer(self, k: int, sums: list[int]) -> Answer:
        d = self.iteration.observe(energy_from_fixed(sums))
        residuals = {"max_imbalance_kw": d.max_imbalance, "max_tariff_change": d.max_change}
        if d.next_tariff is None:
            return Answer(final=True, converged=d.converged, reason=d.reason, residuals=residuals)
        return Answer(prices=price_to_fixed(d.next_tariff), reason=d.reason, residuals=residuals)


# ------------------------------------------------------------------------------------------
# centralised reference
# ------------------------------------------------------------------------------------------
@dataclass(eq=False)
class ReferenceResult:
    tariff: np.ndarray  # (T,) dual of the community balance, CNY/kWh
    total_objective: float  # community total (sum of prosumer objectives incl. residual grid trade)
    x: np.ndarray  # (N, T)
    grid_buy: np.ndarray  # (T,) residual bought at retail
    grid_sell: np.ndarray  # (T,) residual sold at feed-in
    objectives: np.ndarray  # (N,) each prosumer's objective at the reference tariff
    solve_time: float
    status: str

    def to_dict(self) -> dict:
        return {"tariff": self.tariff.tolist(), "total_objective": self.total_objective,
                "grid_buy": self.grid_buy.tolist(), "grid_sell": self.grid_sell.tolist(),
                "objectives": self.objectives.tolist(), "solve_time": self.solve_time,
                "status": self.status}


def centralized_reference(models: Sequence, market, solver: str = "CLARABEL") -> ReferenceResult:
    """One cvxpy problem of the whole community; its balance dual is the reference tariff."""
    t0 = time.perf_counter()
    blocks = [m.fresh_block() for m in models]
    T = market.hours
    import cvxpy as cp  # here, not at the top: the auditor replays the rule without cvxpy

    buy = cp.Variable(T, nonneg=True, name="community_buy")
    sell = cp.Variable(T, nonneg=True, name="community_sell")
    total_x = cp.sum(cp.vstack([b.x for b in blocks]), axis=0)
    balance = buy - sell - total_x == 0
    cons = [balance]
    for b in blocks:
        cons += b.constraints
    objective = cp.sum(cp.hstack([b.cost for b in blocks])) + market.retail @ buy - market.feed_in @ sell
    prob = cp.Problem(cp.Minimize(objective), cons)
    prob.solve(solver=solver, canon_backend=cp.SCIPY_CANON_BACKEND)
    if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise SolverError(f"centralised reference not solved: {prob.status}")
    # cvxpy's Lagrangian adds +y (lhs - rhs); stationarity in buy gives retail - y >= 0, so
    # y is the price of community energy (sign checked by the band test below).
    y = np.asarray(balance.dual_value, dtype=float)
    if np.mean(y) < 0:
        y = -y
    x = np.stack([np.asarray(b.x.value, dtype=float) for b in blocks])
    objs = np.array([float(b.cost.value) + float(y @ xi) for b, xi in zip(blocks, x)])
    return ReferenceResult(tariff=y, total_objective=float(prob.value), x=x,
                           grid_buy=np.asarray(buy.value, dtype=float),
                           grid_sell=np.asarray(sell.value, dtype=float), objectives=objs,
                           solve_time=time.perf_counter() - t0, status=prob.status)


# ------------------------------------------------------------------------------------------
# settlement (the rule contracts/rules/TariffRule.sol applies; docs/protocol.md)
# ------------------------------------------------------------------------------------------
def settlement(values: Sequence[Sequence[int]], tariff: Sequence[int], floor: Sequence[int],
               cap: Sequence[int], standing: Sequence[int] | None = None) -> tuple[list[int], int]:
    """Token payments (positive = paid) of every participant and of the grid account.

    Integers in the on-chain units: ``values[i][t]`` micro-kWh bought (+) or sold (-), prices in
    micro-token per kWh. Per period, the long side shares the residual's grid price pro rata
    (rounded down); the grid account balances the period, so the payments sum to zero. A
    participant that dropped out (``standing[i] != 0``) trades what it last committed with the grid
    at retail (cap) or feed-in (floor), outside the market.
    """
    amounts = [0] * len(values)
    grid = 0
    standing = list(standing) if standing is not None else [0] * len(values)
    for t in range(len(tariff)):
        xs = [v[t] if s == 0 else 0 for v, s in zip(values, standing)]
        for i, (v, s) in enumerate(zip(values, standing)):
            if s != 0:
                a = v[t] * (cap[t] if v[t] > 0 else floor[t]) * AMOUNT_PER_PRICE_ENERGY
                amounts[i] += a
                grid -= a
        bought = sum(x for x in xs if x > 0)
        sold = -sum(x for x in xs if x < 0)
        p, residual = tariff[t], bought - sold
        if residual >= 0:  # shortage: sellers get p, buyers share p*sold + retail*residual
            total = (p * sold + cap[t] * residual) * AMOUNT_PER_PRICE_ENERGY
            period = [total * x // bought if x > 0 else x * p * AMOUNT_PER_PRICE_ENERGY for x in xs]
        else:  # surplus: buyers pay p, sellers share p*bought + feed-in*|residual|
            total = (p * bought - floor[t] * residual) * AMOUNT_PER_PRICE_ENERGY
            period = [x * p * AMOUNT_PER_PRICE_ENERGY if x > 0 else (-(total * -x // sold) if x < 0 else 0) for x in xs]
        amounts = [a + b for a, b in zip(amounts, period)]
        grid -= sum(period)
    return amounts, grid
