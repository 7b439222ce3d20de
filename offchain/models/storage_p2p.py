"""The prosumer of the storage-p2p mechanism (Sun, Chen, Chen, Tang, Mei, "A capacity renting framework
for shared energy storage considering peer-to-peer energy trading of prosumers with privacy
protection", arXiv:2411.06107; "the paper" below) as cvxpy building blocks.

Formulation (prosumer i, hours t in the window, Delta t = 1 h) [RECONSTRUCTION of the
paper's eqs. 1-20; its equations were not recoverable]
------------------------------------------------------------------------------------------------
Decisions: grid purchase b_t >= 0 at the TOU price c^b_t and sale s_t >= 0 at the feed-in price
c^s_t < c^b_t; private battery charge/discharge ch_t, dis_t in [0, P] with
E_t = E_0 + sum_{k<=t} (eta ch_k - dis_k / eta) in [soc_min, soc_max] * E, E_T = E_0
(usage price kappa on ch + dis); shiftable load d_t >= 0, d_t <= m * mean(d^), sum_t d_t =
sum_t d^_t with d^ = phi * L (energy conserved; quadratic discomfort k ||d - d^||^2);
rented shared storage: energy capacity C^E >= 0, power capacity C^P >= 0 for the day,
charge/discharge u^c_t, u^d_t in [0, C^P], stored energy S_t = S_0 + sum_{k<=t}
(eta_s u^c_k - u^d_k / eta_s) in [soc_min_s, soc_max_s] * C^E with S_0 in the same band and S_T =
S_0 (the initial energy is a decision inside the rented band), usage price kappa_s and the
transmission fee xi_i (distance to the store) on u^c + u^d; P2P trade with every other
prosumer j: p_ij,t = sale from i to j (negative: purchase), |p_ij,t| <= P^max,
p_ij = p+_ij - p-_ij with p+, p- >= 0 and the buyer's transmission fee gamma_ij * p-_ij (exact
at the optimum since gamma_ij > 0: raising p+ and p- together only costs);
power balance  G_t + b_t - s_t + dis_t - ch_t + u^d_t - u^c_t - sum_j p_ij,t = (1 - phi) L_t + d_t.

Local cost  J^loc_i = sum_t (c^b_t b_t - c^s_t s_t) + kappa (ch + dis) + k ||d - d^||^2
                     + (kappa_s + xi_i) (u^c + u^d) + sum_j gamma_ij p-_ij.
The coupling terms (capacity rents at the affine price, P2P payments at the pair prices) are not
here: the centralised QP and the ADMM in :mod:`offchain.mechanisms.storage.market` add them.

What is the paper's and what is ours
------------------------------------
[THE PAPER, section 4.1 / abstract] the devices and cases (PV/wind, private ESS with efficiency,
SoC band and usage price, 10% shiftable load, capacity renting of energy and power, usage price of
the shared ESS, P2P with a distance/impedance-based transmission fee paid by the buyer,
linearised with auxiliary variables), the four cases.
[RECONSTRUCTION] the exact constraint forms above, the quadratic shifting discomfort (the paper
has "price coefficients of shiftable loads"; quadratic keeps the x-updates strongly convex in d),
the cyclic free initial energy in rented capacity, the distance-affine fee.

Cases (:data:`CASES`): 1 grid only; 2 P2P, no shared storage; 3 shared storage, no P2P; 4 both.
A disabled feature removes its variables (no trades / no rented capacity), so case 1 is n
independent problems.

Building blocks: :func:`build_block` returns one prosumer's variables, constraints and local cost
(used by the centralised QP); :class:`StorageProsumer` is the prosumer's ADMM x-update, built once
as a DPP problem whose only parameters are the consensus targets and the (private, time-varying)
quadratic weights, so each iteration only re-applies parameters.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from ..errors import SolverError
from .devices import battery, shiftable_load

SOLVER = "CLARABEL"
_OK = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)


@dataclass(frozen=True)
class Case:
    number: int
    p2p: bool
    storage: bool
    label: str


CASES: dict[int, Case] = {
    1: Case(1, False, False, "grid only"),
    2: Case(2, True, False, "P2P, no shared storage"),
    3: Case(3, False, True, "shared storage, no P2P"),
    4: Case(4, True, True, "P2P and shared storage"),
}


def get_case(case: int | Case) -> Case:
    if isinstance(case, Case):
        return case
    if case not in CASES:
        raise ValueError(f"case must be one of 1, 2, 3, 4, got {case!r}")
    return CASES[case]


@dataclass(frozen=True, eq=False)
class MarketData:
    """Public data of one market instance (a window of hours of a scenario, one case)."""

    case: Case
    names: tuple[str, ...]
    hours: np.ndarray  # (T,) hour indices of the window
    retail: np.ndarray  # (T,) c^b
    feed_in: np.ndarray  # (T,) c^s
    fees: np.ndarray  # (n, n) gamma_ij, CNY/kWh (0 on the diagonal)
    storage_fees: np.ndarray  # (n,) xi_i, CNY/kWh
    storage: object  # SharedStorageSpec
    p2p_limit: float
    pairs: tuple[tuple[int, int], ...]  # i < j, the P2P centre's pair order

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def T(self) -> int:
        return int(self.hours.shape[0])

    def partners(self, i: int) -> list[int]:
        return [j for j in range(self.n) if j != i] if self.case.p2p else []

    @property
    def has_storage(self) -> bool:
        return self.case.storage


@dataclass
class Block:
    """One prosumer's variables, constraints and local cost (no capacity rents, no P2P payments)."""

    cost: cp.Expression
    constraints: list
    parts: dict[str, cp.Expression]
    schedule: dict[str, cp.Expression]
    partners: list[int]
    trade: cp.Expression | None  # (m, T) p_ij, row k = partners[k]; None without P2P partners
    cap_energy: cp.Variable | None  # C^E_i
    cap_power: cp.Variable | None  # C^P_i
    open_trade: cp.Parameter | None = None  # (m, 1) 1: partner k may trade, 0: it left the round


def build_block(spec, profile, data: MarketData, me: int) -> Block:
    """cvxpy variables/constraints/local cost of prosumer ``me`` (position in ``data.names``)."""
    T, h = data.T, data.hours
    load = np.asarray(profile.load_forecast, dtype=float)[h]
    gen = (np.asarray(profile.pv_forecast, dtype=float) + np.asarray(profile.wind_forecast, dtype=float))[h]
    cons: list = []
    parts: dict[str, cp.Expression] = {}
    sched: dict[str, cp.Expression] = {}

    buy = cp.Variable(T, nonneg=True, name="grid_buy")
    sell = cp.Variable(T, nonneg=True, name="grid_sell")
    parts["grid"] = data.retail @ buy - data.feed_in @ sell
    sched.update(grid_buy=buy, grid_sell=sell)
    supply: cp.Expression = buy - sell

    demand: cp.Expression | np.ndarray = (1.0 - spec.shiftable_share) * load
    for dev in (shiftable_load(spec, load), battery(spec.battery, T)):
        if dev is not None:
            demand = demand + dev.power
            cons += dev.constraints
            parts.update(dev.parts)
            sched.update(dev.schedule)

    cap_e = cap_p = None
    if data.has_storage:
        st = data.storage
        cap_e = cp.Variable(nonneg=True, name="rented_energy")
        cap_p = cp.Variable(nonneg=True, name="rented_power")
        uc = cp.Variable(T, nonneg=True, name="shared_charge")
        ud = cp.Variable(T, nonneg=True, name="shared_discharge")
        s0 = cp.Variable(name="shared_initial")
        s = s0 + cp.cumsum(st.efficiency * uc - ud / st.efficiency)
        cons += [uc <= cap_p, ud <= cap_p, s >= st.soc_min * cap_e, s <= st.soc_max * cap_e,
                 s0 >= st.soc_min * cap_e, s0 <= st.soc_max * cap_e, s[T - 1] == s0]
        supply = supply + ud - uc
        sched.update(shared_charge=uc, shared_discharge=ud, shared_energy=s)
        parts["shared_usage"] = st.usage_cost * cp.sum(uc + ud)
        parts["shared_transmission"] = float(data.storage_fees[me]) * cp.sum(uc + ud)

    partners = data.partners(me)
    trade = open_trade = None
    if partners:
        m = len(partners)
        pp = cp.Variable((m, T), nonneg=True, name="p2p_sell")
        pm = cp.Variable((m, T), nonneg=True, name="p2p_buy")
        open_trade = cp.Parameter((m, 1), nonneg=True, name="open_trade", value=np.ones((m, 1)))
        limit = data.p2p_limit * open_trade @ np.ones((1, T))
        cons += [pp <= limit, pm <= limit]
        trade = pp - pm
        fee = np.array([data.fees[me, j] for j in partners])
        parts["p2p_transmission"] = cp.sum(fee @ pm)
        supply = supply - cp.sum(trade, axis=0)
        sched.update(p2p_sold=cp.sum(pp, axis=0), p2p_bought=cp.sum(pm, axis=0))

    cons.append(gen + supply == demand)
    cost = cp.sum(cp.hstack([v for v in parts.values()]))
    return Block(cost=cost, constraints=cons, parts=parts, schedule=sched, partners=partners,
                 trade=trade, cap_energy=cap_e, cap_power=cap_p, open_trade=open_trade)


@dataclass(frozen=True, eq=False)
class XUpdate:
    """A prosumer's x-update: its coupling variables and local cost (private to the prosumer)."""

    trade: np.ndarray  # (m, T) p_ij, rows in partner order (empty without partners)
    capacity: np.ndarray  # (2,) [C^E, C^P] (zeros without storage)
    local_cost: float
    solve_time: float
    status: str
    parts: dict[str, float] = field(default_factory=dict)
    schedule: dict[str, np.ndarray] = field(default_factory=dict)


class StorageProsumer:
    """One prosumer: local model and its ADMM x-update problem, built once (DPP).

    x-update:  min J^loc(x) + (q_t/2) ||P||^2 - <l_t, P> + (q_c/2) ||C||^2 - <l_c, C>
    with P the (m, T) trades, C = [C^E, C^P]; the caller sets q = rho + tau^k and
    l = rho (z - u) + tau^k y^k, i.e. the augmented-Lagrangian term (rho/2)||y - z + u||^2 plus the
    proximal term (tau^k/2)||y - y^k||^2 expanded (a DPP form: parameters only multiply
    parameter-free expressions or enter linearly).
    """

    def __init__(self, spec, profile, data: MarketData, me: int, solver: str = SOLVER):
        self.spec, self.profile, self.data, self.me = spec, profile, data, me
        self.name = spec.name
        self.solver = solver
        self.block = build_block(spec, profile, data, me)
        blk = self.block
        self.partners = blk.partners
        m, T = len(self.partners), data.T
        obj = blk.cost
        self.lin_trade = self.quad_trade = self.lin_cap = self.quad_cap = None
        if blk.trade is not None:
            self.lin_trade = cp.Parameter((m, T), name="lin_trade")
            self.quad_trade = cp.Parameter(nonneg=True, name="quad_trade")
            obj = obj + 0.5 * self.quad_trade * cp.sum_squares(blk.trade) - cp.sum(cp.multiply(self.lin_trade, blk.trade))
            self.lin_trade.value = np.zeros((m, T))
            self.quad_trade.value = 1.0
        if blk.cap_energy is not None:
            cap = cp.hstack([blk.cap_energy, blk.cap_power])
            self._cap = cap
            self.lin_cap = cp.Parameter(2, name="lin_cap")
            self.quad_cap = cp.Parameter(nonneg=True, name="quad_cap")
            obj = obj + 0.5 * self.quad_cap * cp.sum_squares(cap) - self.lin_cap @ cap
            self.lin_cap.value = np.zeros(2)
            self.quad_cap.value = 1.0
        self.problem = cp.Problem(cp.Minimize(obj), blk.constraints)
        if not self.problem.is_dpp():  # pragma: no cover - structural
            raise AssertionError("x-update must be DPP")
        self.solves = 0

    def __reduce__(self):
        # rebuilt from its inputs (the solved problem holds an unpicklable solver object)
        return StorageProsumer, (self.spec, self.profile, self.data, self.me, self.solver)

    @property
    def m(self) -> int:
        return len(self.partners)

    def fresh_block(self) -> Block:
        """An independent copy of this prosumer's variables (for the centralised QP)."""
        return build_block(self.spec, self.profile, self.data, self.me)

    def x_update(self, lin_trade=None, quad_trade=None, lin_cap=None, quad_cap=None, open_trade=None) -> XUpdate:
        """``open_trade``: per partner 1 (may trade) or 0 (it left the round: no trade with it)."""
        if self.lin_trade is not None:
            self.lin_trade.value = np.asarray(lin_trade, dtype=float).reshape(self.m, self.data.T)
            self.quad_trade.value = float(quad_trade)
            self.block.open_trade.value = (np.ones((self.m, 1)) if open_trade is None
                                           else np.asarray(open_trade, dtype=float).reshape(self.m, 1))
        if self.lin_cap is not None:
            self.lin_cap.value = np.asarray(lin_cap, dtype=float).reshape(2)
            self.quad_cap.value = float(quad_cap)
        t0 = time.perf_counter()
        # warm_start=False: cvxpy would otherwise reuse and update the CLARABEL solver object,
        # which makes a solve depend on the previous one; fresh solves make every x-update a pure
        # function of its parameters, so plaintext and private runs are bit-identical.
        self.problem.solve(solver=self.solver, warm_start=False, canon_backend=cp.SCIPY_CANON_BACKEND)
        if self.problem.status not in _OK:
            raise SolverError(f"{self.name}: x-update not solved ({self.problem.status})")
        dt = time.perf_counter() - t0
        self.solves += 1
        blk = self.block
        trade = (np.asarray(blk.trade.value, dtype=float).reshape(self.m, self.data.T)
                 if blk.trade is not None else np.zeros((0, self.data.T)))
        cap = (np.array([float(blk.cap_energy.value), float(blk.cap_power.value)])
               if blk.cap_energy is not None else np.zeros(2))
        parts = {k: float(v.value) for k, v in blk.parts.items()}
        return XUpdate(trade=trade, capacity=cap, local_cost=float(blk.cost.value), solve_time=dt,
                       status=self.problem.status, parts=parts, schedule=self.schedule())

    def schedule(self) -> dict[str, np.ndarray]:
        """The last x-update's schedule (hourly arrays)."""
        return {k: np.asarray(v.value, dtype=float).copy() for k, v in self.block.schedule.items()}


def market_data(scenario, case: int | Case, hours=None) -> MarketData:
    """Public data of ``scenario`` for one case; ``hours`` is a window (iterable of hour indices)."""
    c = get_case(case)
    h = np.arange(scenario.hours) if hours is None else np.asarray(list(hours), dtype=int)
    if h.size == 0 or h.min() < 0 or h.max() >= scenario.hours:
        raise ValueError(f"hours must be a non-empty subset of 0..{scenario.hours - 1}")
    n = len(scenario.prosumers)
    fees = np.array([[scenario.fee(i, j) if i != j else 0.0 for j in range(n)] for i in range(n)])
    sfees = np.array([scenario.fee(i, -1) for i in range(n)])
    pairs = tuple((i, j) for i in range(n) for j in range(i + 1, n)) if c.p2p else ()
    return MarketData(case=c, names=tuple(p.name for p in scenario.prosumers), hours=h,
                      retail=np.asarray(scenario.tariff.retail, dtype=float)[h],
                      feed_in=np.asarray(scenario.tariff.feed_in, dtype=float)[h],
                      fees=fees, storage_fees=sfees, storage=scenario.storage,
                      p2p_limit=scenario.network.p2p_limit_kw, pairs=pairs)


def build_market(scenario, case: int | Case, hours=None, profiles=None,
                 solver: str = SOLVER) -> tuple[list[StorageProsumer], MarketData]:
    """Every prosumer's model for one case of a :class:`~offchain.mechanisms.storage.scenario.StorageScenario`.

    ``profiles``: ``build_profiles(scenario)`` if already computed (one entry per prosumer, in order).
    """
    from .profiles import build_profiles

    profiles = profiles if profiles is not None else build_profiles(scenario)
    if len(profiles.prosumers) != len(scenario.prosumers):
        raise ValueError("profiles must be built from this scenario (one per prosumer)")
    data = market_data(scenario, case, hours)
    models = [StorageProsumer(spec, prof, data, k, solver)
              for k, (spec, prof) in enumerate(zip(scenario.prosumers, profiles.prosumers))]
    return models, data
