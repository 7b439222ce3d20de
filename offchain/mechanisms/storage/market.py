"""Shared-storage capacity renting with P2P trading, as pure math: the centralised QP and the
parties of the two-block ADMM (Sun, Chen, Chen, Tang, Mei, "A capacity renting framework for
shared energy storage considering peer-to-peer energy trading of prosumers with privacy
protection", arXiv:2411.06107; "the paper" below).

Formulation
-----------
Prosumers i = 1..n with local models x_i in X_i and local costs J^loc_i
(:mod:`offchain.models.storage_p2p`), coupling variables p_ij,t (sale from i to j) and rented
capacities C^E_i (kWh), C^P_i (kW). Capacity prices affine in the totals,
lambda^E = a^E sum_k C^E_k + b^E and lambda^P = a^P sum_k C^P_k + b^P (storage10: a^P = 0). The
generalized Nash game "each prosumer minimises J^loc_i + lambda^E C^E_i + lambda^P C^P_i
subject to the shared constraints" has as variational equilibrium the optimum of the potential QP
(the paper's theorem)

    min  Phi = sum_i J^loc_i + b^E S^E + (a^E/2)[(S^E)^2 + sum_i (C^E_i)^2] + (same for P)
    s.t. x_i in X_i,  p_ij,t + p_ji,t = 0 (multiplier lambda_ij,t),
         S^E = sum_i C^E_i <= E^SESS (mu^E),  S^P = sum_i C^P_i <= P^SESS (mu^P).

Prices and cost allocation: the pair price paid by the buyer to the seller (on top of the
buyer's transmission fee) is pi_ij,t = -lambda_ij,t (i's Lagrangian carries lambda_ij p_ij);
capacity is rented at r^E = lambda^E(S^E) + mu^E and r^P = lambda^P(S^P) + mu^P (price plus
scarcity rent; at the equilibrium no prosumer would rent at that price more than it does).
Prosumer cost = J^loc_i + r^E C^E_i + r^P C^P_i - sum_j,t pi_ij,t p_ij,t; storage revenue =
rents + usage fees; market total = sum of prosumer costs - storage revenue (as in the paper's
Table 1: 7094 = sum of costs, 6767 = 7012 - 245). Since x_i = (no trade, no rent) is feasible and
the VE minimises each J_i + prices . coupling, no prosumer pays more than in case 1 (grid only).

Two-block ADMM [STANDARD ADMM; splitting and z-updates RECONSTRUCTED]
-------------------------------------------------------------------------------------
Block x: prosumers (each its own local copy p_ij, C_i); block z: the P2P centre's copies z_ij and
the storage operator's copies c_i, with the coupling constraints and the capacity-price terms of
Phi on the z side. Scaled duals u (held by each prosumer for its own consensus constraints).
Iteration k:
  1. x-update, prosumer i (in parallel):
       y_i = argmin J^loc_i + (rho/2)||y - z^(k-1) + u^(k-1)||^2 + (tau_i^k/2)||y - y_i^(k-1)||^2
     with tau_i^k = proximal * rho * (1 + spread * U(-1, 1)) drawn privately each iteration
     (the paper's appendix C: private, time-varying proximal coefficients; our draw).
  2. storage operator (closed form, needs only sum_i w_i with w_i = C_i + u_i):
       S = (rho W - n b)/(rho + a (n + 1)) if <= cap (nu = 0), else S = cap and
       nu = (rho W - cap (rho + a (n + 1)))/n - b;   broadcast s = b + a S + nu (= the rent r)
     and each prosumer computes its own c_i = (rho w_i - s)/(a + rho) (a = a^E or a^P).
  3. P2P centre (closed form, projection onto z_ij = -z_ji): z_ij = (w_ij - w_ji)/2 with
     w_ij = p_ij + u_ij. Both ends of a pair receive the other's w and compute this projection
     themselves in fixed point (z_ji = -z_ij exactly), so no party needs to see both vectors.
  4. prosumers: u <- u + y - z; residual contributions ||y_i - z_i||^2 and
     rho^2 ||z_i^k - z_i^(k-1)||^2, sent with the next iteration's operator message; the stop
     after iteration k when the RMS residuals of k-1 (sums over prosumers / consensus entries)
     are <= primal_tol and dual_tol (scenario [admm]).
  Closing exchange: each prosumer's bill (:class:`Bill`): capacities C_i, storage throughput, net
  grid per hour to the operator (sums only), and its price half -rho u_ij / 2 to each partner;
  the pair price pi_ij = -lambda_ij is the sum of both halves, the rents r^E, r^P are the last
  broadcast s^E, s^P. Trades are settled on the balanced z_ij; capacities on each C_i.

Messages (one round iteration per ADMM iteration, :mod:`offchain.protocol.driver`)
------------------------------------------------------------------------------------
  :class:`AdmmProsumer` contributes to the operator's sum [w^E_i, w^P_i, r_i^2, s_i^2, 0...]
      (3 + T values; the closing message carries the bill slots, its reveal the whole bill) and,
      to each partner j, w_ij (T values; at the close its price half);
  :class:`StorageOperatorAgent` answers with the rents s^E, s^P (public) and announces the
      closing iteration once the stop rule is met.
The plaintext transport hands the operator every vector and each partner w_ij in the clear
(standard ADMM, the leak of the paper's appendix B). The private transports mask, pack and
Paillier-encrypt the operator message under the operator's key and seal each pair message with
a one-time pad from the pair's seed: only the partner, who needs w_ij for its projection, opens
it. Every transport passes the same integers, so all follow bit-identical trajectories. Whether
the paper assigns keys and masks this way is not known; its "products with random numbers" are
replaced by masked sums, which give each receiver exactly its update's input.

Privacy experiment (:func:`privacy_experiment`, the paper's Fig. 6): the operator estimates prosumer
i's Lagrangian gradient g_i^k = -rho (C_i^k - c_i^(k-1) + u_i^(k-1)) - tau_i^k (C_i^k - C_i^(k-1))
from what it saw: in plain ADMM w_i^k and c_i^(k-1), so g = -rho (w_i^k - c_i^(k-1)) exactly; in
the private protocol only sum_i w^k and s^k (it uses w_i ~ W/n and tau = 0). Relative error per
iteration = |g_est - g| / |g - g*| (g* the converged gradient; the paper's definition).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import SolverError
from ...framework import Answer, Contribution, Solve
from ...units import energy_from_fixed as from_fixed
from ...units import energy_to_fixed as to_fixed
from ...units import price_from_fixed, price_to_fixed

# ------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdmmSettings:
    rho_trade: float = 0.02
    rho_capacity: float = 0.004
    proximal: float = 0.5
    proximal_spread: float = 0.5
    primal_tol: float = 0.003  # RMS over the consensus entries
    dual_tol: float = 0.0006
    max_iterations: int = 2000
    seed: int = 0  # seeds each prosumer's private proximal draws (reproducible runs)

    @classmethod
    def from_scenario(cls, scenario, **overrides) -> "AdmmSettings":
        a = scenario.admm
        base = dict(rho_trade=a.rho_trade, rho_capacity=a.rho_capacity, proximal=a.proximal,
                    proximal_spread=a.proximal_spread, primal_tol=a.primal_tol, dual_tol=a.dual_tol,
                    max_iterations=a.max_iterations, seed=scenario.seed)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


# ------------------------------------------------------------------------------------------
# exchanges: how the messages of one iteration travel
# ------------------------------------------------------------------------------------------
RESIDUAL_CAP = 1e4  # a prosumer's residual contributions saturate here: only the stop test reads them
RESIDUAL_SCALE = 1e3  # ... and travel in units of 1e-9 (the 1e-6 fixed point / 1e3), fine enough for small cases


def reported_residuals(sums, entries: int) -> tuple[float, float]:
    """RMS primal and dual residuals from an operator-channel sum (slots 2 and 3)."""
    r, s = (math.sqrt(max(float(v), 0.0) / RESIDUAL_SCALE / entries) for v in np.asarray(sums)[2:4])
    return r, s


def operator_slots(T: int) -> int:
    """Values per prosumer in the operator channel: [C^E or w^E, C^P or w^P, r^2 or throughput,
    s^2 or 0, then T zeros or net grid per period] (iterations / closing message)."""
    return 3 + T


# ------------------------------------------------------------------------------------------
# the parties
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Bill:
    """What a prosumer is billed for (its settlement reveal; kWh, kW, CNY/kWh)."""

    capacity: np.ndarray  # (2,) rented C^E, C^P (its own last x-update)
    throughput: float  # kWh charged + discharged in the rented storage
    net_grid: np.ndarray  # (T,) import > 0, export < 0
    trades: dict[int, np.ndarray]  # partner -> (T,) consensus sale z_ij (antisymmetric over the pair)
    price_halves: dict[int, np.ndarray]  # partner -> (T,) -rho u_ij / 2; the pair price is the sum of both halves

    def slots(self) -> np.ndarray:
        """The operator channel's closing message: the sums bind the revealed capacities and grid."""
        return np.concatenate([self.capacity, [self.throughput], self.net_grid])

    def vector(self) -> list[int]:
        """The reveal (fixed point): slots, then per partner (ascending) its trades and price halves."""
        out = to_fixed(self.slots())
        for j in sorted(self.trades):
            out += to_fixed(self.trades[j]) + price_to_fixed(self.price_halves[j])
        return out


class AdmmProsumer:
    """Prosumer i's side of the ADMM: its model, duals, z copies and private proximal draws."""

    def __init__(self, model, settings: AdmmSettings, index: int, proximal: bool = True):
        self.model, self.i = model, index
        self.rho_t, self.rho_c = settings.rho_trade, settings.rho_capacity
        self.prox = settings.proximal if proximal else 0.0
        self.spread = settings.proximal_spread
        self.rng = np.random.default_rng([settings.seed, 0xAD33, index])  # private to the prosumer
        data = model.data
        self.T = data.T
        self.a = np.array([data.storage.energy_slope, 0.0])  # a^E, a^P
        m, T = model.m, data.T
        self.partners = list(model.partners)
        self.row = {j: k for k, j in enumerate(self.partners)}
        self.has_cap = model.lin_cap is not None
        self.u_t = np.zeros((m, T))
        self.z_t = np.zeros((m, T))
        self.y_t = np.zeros((m, T))
        self.u_c = np.zeros(2)
        self.z_c = np.zeros(2)
        self.y_c = np.zeros(2)
        self.tau = (0.0, 0.0)
        self.last = None  # last XUpdate
        self.res = (0.0, 0.0)
        self.name = model.name
        self.closing = not (model.data.has_storage or model.data.pairs)  # uncoupled: the first message is the bill
        self.bills: list[Bill] = []
        self.closing_received: dict[int, np.ndarray] = {}
        self.solve_times: list[float] = []
        self.gone: set[int] = set()  # partners that dropped out of the round: no trade with them

    # -- step 1 ------------------------------------------------------------------------------
    def x_params(self) -> tuple:
        """Draws this iteration's private proximal weights; the x-update's parameters."""
        tau_t = self.prox * self.rho_t * (1.0 + self.spread * self.rng.uniform(-1, 1)) if self.prox else 0.0
        tau_c = self.prox * self.rho_c * (1.0 + self.spread * self.rng.uniform(-1, 1)) if self.prox else 0.0
        self.tau = (tau_t, tau_c)
        lt = self.rho_t * (self.z_t - self.u_t) + tau_t * self.y_t
        lc = self.rho_c * (self.z_c - self.u_c) + tau_c * self.y_c
        if not self.gone:
            return lt, self.rho_t + tau_t, lc, self.rho_c + tau_c
        open_trade = [0.0 if j in self.gone else 1.0 for j in self.partners]
        return lt, self.rho_t + tau_t, lc, self.rho_c + tau_c, open_trade

    def x_apply(self, update) -> None:
        """Takes the x-update's result (solved here or by a worker holding a copy of the model)."""
        self.prev_y_c = self.y_c.copy()
        self.prev_z_c, self.prev_u_c = self.z_c.copy(), self.u_c.copy()
        self.last = update
        self.solve_times.append(update.solve_time)
        self.y_t, self.y_c = update.trade.copy(), update.capacity.copy()

    # -- messages --------------------------------------------------------------------------
    def operator_message(self) -> np.ndarray:
        """[w^E_i, w^P_i] = C_i + u_i and the previous iteration's residual contributions."""
        res = np.minimum(self.res, RESIDUAL_CAP) * RESIDUAL_SCALE
        return np.concatenate([self.y_c + self.u_c, res, np.zeros(self.T - 1)])

    def pair_messages(self) -> dict[int, np.ndarray]:
        """w_ij = p_ij + u_ij for each partner j still in the round."""
        return {j: self.y_t[k] + self.u_t[k] for j, k in self.row.items() if j not in self.gone}

    def dropped(self, k: int, indices: list[int]) -> None:
        """Partners that left the round: their trades are zero from now on (and never settled)."""
        for j in indices:
            if j in self.row:
                self.gone.add(j)
                r = self.row[j]
                self.y_t[r] = self.z_t[r] = self.u_t[r] = 0.0

    # -- step 2 (after the operator's broadcast and the partners' messages) ------------------
    def z_step(self, s: np.ndarray, received: dict[int, np.ndarray]) -> None:
        """Own z copies, dual update, residual contributions.

        Trades: the P2P centre's projection z_ij = (w_ij - w_ji) / 2, computed in fixed point by
        both ends of the pair (so z_ji = -z_ij exactly). Capacities: the operator's closed form
        c_i = (rho w_i - s) / (a + rho) from the broadcast s.
        """
        old_t, old_c = self.z_t.copy(), self.z_c.copy()
        for j, k in self.row.items():
            if j in self.gone:
                continue
            d = np.asarray(to_fixed(self.y_t[k] + self.u_t[k])) - np.asarray(to_fixed(received[j]))
            self.z_t[k] = from_fixed(d) / 2
        if self.has_cap:
            w = self.y_c + self.u_c
            self.z_c = (self.rho_c * w - np.asarray(s)) / (self.a + self.rho_c)
        rt = self.y_t - self.z_t
        rc = self.y_c - self.z_c if self.has_cap else np.zeros(2)
        self.u_t += rt
        if self.has_cap:
            self.u_c += rc
        r2 = float(np.sum(rt * rt) + np.sum(rc * rc))
        s2 = float(self.rho_t ** 2 * np.sum((self.z_t - old_t) ** 2) + self.rho_c ** 2 * np.sum((self.z_c - old_c) ** 2))
        self.res = (r2, s2)

    def bill(self) -> Bill:
        sched = self.last.schedule
        throughput = float(np.sum(sched.get("shared_charge", 0.0)) + np.sum(sched.get("shared_discharge", 0.0)))
        return Bill(capacity=self.y_c.copy(), throughput=max(throughput, 0.0),
                    net_grid=sched["grid_buy"] - sched["grid_sell"],
                    trades={j: self.z_t[k].copy() for j, k in self.row.items()},
                    price_halves={j: -0.5 * self.rho_t * self.u_t[k] for j, k in self.row.items()})

    # -- the round (offchain.framework.Participant) ----------------------------------------------
    def plan(self, k: int, prices: list[int]) -> Solve | None:
        """This iteration's x-update (none in the closing iteration: the bill is the last one's)."""
        if self.closing and self.last is not None:
            return None
        return Solve(self.model, "x_update", self.x_params())

    def contribute(self, k: int, prices: list[int], solved) -> Contribution:
        if solved is not None:
            self.x_apply(solved)
        if self.closing:
            b = self.bill()
            self.bills.append(b)
            return Contribution(to_fixed(b.slots()), {j: to_fixed(h) for j, h in b.price_halves.items()
                                                      if j not in self.gone}, b.vector())
        return Contribution(to_fixed(self.operator_message()), {j: to_fixed(w) for j, w in self.pair_messages().items()})

    def observe(self, k: int, answer: Answer, received: dict[int, list[int]]) -> None:
        if answer.final:
            self.closing_received = {j: from_fixed(v) for j, v in received.items()}
            return
        self.z_step(price_from_fixed(answer.prices), {j: from_fixed(v) for j, v in received.items()})
        self.closing = self.closing or answer.closing

    def gradient(self) -> np.ndarray:
        """Its Lagrangian gradient in (C^E, C^P) at the last x-update (x-update KKT)."""
        return -(self.rho_c * (self.y_c - self.prev_z_c + self.prev_u_c) + self.tau[1] * (self.y_c - self.prev_y_c))


@dataclass(frozen=True)
class StorageBroadcast:
    s: np.ndarray  # (2,) b + a S + nu: the rent per kWh / kW of the day (1e-6 fixed point, >= 0)
    nu: np.ndarray  # (2,) scarcity multipliers of sum C <= capacity
    total: np.ndarray  # (2,) S = sum_i c_i


class StorageOperator:
    """Closed-form z-update of the capacities: needs only sum_i w_i (energy, power)."""

    def __init__(self, storage, n: int, rho: float):
        self.n, self.rho = n, rho
        self.a = np.array([storage.energy_slope, 0.0])
        self.b = np.array([storage.energy_price_empty, storage.power_price])
        self.cap = np.array([storage.energy_kwh, storage.power_kw])
        self.last: StorageBroadcast | None = None

    def update(self, w_sum: np.ndarray) -> StorageBroadcast:
        n, rho = self.n, self.rho
        s, nu, tot = np.zeros(2), np.zeros(2), np.zeros(2)
        for k in range(2):
            a, b, cap, W = self.a[k], self.b[k], self.cap[k], float(w_sum[k])
            denom = rho + a * (n + 1)
            S = (rho * W - n * b) / denom
            v = 0.0
            if S > cap:
                S = cap
                v = (rho * W - cap * denom) / n - b
            s[k], nu[k], tot[k] = b + a * S + v, v, S
        # the broadcast travels as an on-chain price (1e-6, unsigned)
        s = price_from_fixed(price_to_fixed(np.maximum(s, 0.0)))
        self.last = StorageBroadcast(s=s, nu=nu, total=tot)
        return self.last

    def respond(self, sums: np.ndarray) -> np.ndarray:
        """The operator's answer to an iteration's channel sum: the rents s^E, s^P."""
        return self.update(np.asarray(sums)[:2]).s


class StorageOperatorAgent:
    """The storage operator as the round's coordinator: the rents in answer to each iteration's
    sums, the stop rule on the residuals reported in them, then one closing iteration (the bills)."""

    name = "operator"

    def __init__(self, data, settings: AdmmSettings) -> None:
        self.data, self.settings = data, settings
        self.operator = StorageOperator(data.storage, data.n, settings.rho_capacity) if data.has_storage else None
        self.coupled = data.has_storage or bool(data.pairs)
        self.entries = consensus_entries(data)
        self.closing = not self.coupled
        self.converged = not self.coupled
        self.reason = "nothing to coordinate (no storage, no P2P): one closing iteration" if not self.coupled else ""
        self.last_rents: list[int] | None = None  # the rents published last (the settlement's prices)

    def start(self) -> list[int]:
        st = self.data.storage
        return price_to_fixed([st.energy_price_empty, st.power_price])

    def dropped(self, k: int, indices: list[int]) -> None:
        """Participants that left: the capacity update shares the store among those that stay."""
        if self.operator is not None:
            self.operator.n -= len(indices)

    def answer(self, k: int, sums: list[int]) -> Answer:
        if self.closing:
            return Answer(final=True, converged=self.converged, reason=self.reason)
        rents = self.operator.respond(from_fixed(sums)) if self.operator is not None else np.zeros(2)
        admm_k = k + 1  # the ADMM's own count starts at 1
        residuals: dict[str, float] = {}
        if admm_k >= 2:  # sums carry the residuals of the previous iteration
            r, s = reported_residuals(from_fixed(sums), self.entries)
            residuals = {"primal": r, "dual": s}
            self.converged = r <= self.settings.primal_tol and s <= self.settings.dual_tol
            if self.converged:
                self.reason = (f"converged after {admm_k} iterations: RMS residuals of iteration {admm_k - 1} "
                               f"r {r:.3g} <= {self.settings.primal_tol:g}, s {s:.3g} <= {self.settings.dual_tol:g}")
        if not self.converged and admm_k >= self.settings.max_iterations:
            self.reason = f"iteration cap {self.settings.max_iterations} reached: " + \
                (f"r {residuals['primal']:.3g}, s {residuals['dual']:.3g}" if residuals else "no residuals yet")
        self.closing = self.converged or admm_k >= self.settings.max_iterations
        self.last_rents = price_to_fixed(rents)
        return Answer(prices=self.last_rents, closing=self.closing, residuals=residuals,
                      reason=self.reason or f"iteration {admm_k}")


# ------------------------------------------------------------------------------------------
# cost allocation
# ------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Allocation:
    """Who pays what (CNY per day). Positive = cost; p2p < 0 means net P2P income."""

    names: list[str]
    local: np.ndarray  # (n,) J^loc (grid, battery, shifting, shared usage + transmission, P2P fees)
    rent: np.ndarray  # (n,) capacity rents at the cleared prices
    p2p: np.ndarray  # (n,) P2P payments at the cleared pair prices (sum ~ 0)
    usage: np.ndarray  # (n,) shared-storage usage fees (inside local, paid to the operator)

    @property
    def cost(self) -> np.ndarray:
        return self.local + self.rent + self.p2p

    @property
    def storage_revenue(self) -> float:
        return float(self.rent.sum() + self.usage.sum())

    @property
    def total(self) -> float:
        """Market total as in the paper's Table 1: prosumer costs minus storage revenue."""
        return float(self.cost.sum()) - self.storage_revenue

    def to_dict(self) -> dict:
        return {"names": list(self.names), "cost": self.cost.tolist(), "local": self.local.tolist(),
                "rent": self.rent.tolist(), "p2p": self.p2p.tolist(), "usage": self.usage.tolist(),
                "storage_revenue": self.storage_revenue, "total": self.total}


def allocate(data, local: np.ndarray, usage: np.ndarray, capacities: np.ndarray, rents: np.ndarray,
             trades: np.ndarray, pair_prices: np.ndarray) -> Allocation:
    """``trades[i, j, t]`` = sale i -> j (antisymmetric), ``pair_prices[i, j, t]`` = pi paid by the buyer."""
    rent = capacities @ rents if data.has_storage else np.zeros(data.n)
    p2p = -np.einsum("ijt,ijt->i", pair_prices, trades)
    return Allocation(list(data.names), np.asarray(local, float), np.asarray(rent, float), p2p,
                      np.asarray(usage, float))


def potential(data, local: np.ndarray, capacities: np.ndarray) -> float:
    """Phi: sum of local costs plus the capacity-price potential terms."""
    phi = float(np.sum(local))
    if data.has_storage:
        st = data.storage
        a = np.array([st.energy_slope, 0.0])
        b = np.array([st.energy_price_empty, st.power_price])
        S = capacities.sum(axis=0)
        phi += float(b @ S + 0.5 * a @ (S ** 2 + (capacities ** 2).sum(axis=0)))
    return phi


def _usage(model_parts: dict) -> float:
    return float(model_parts.get("shared_usage", 0.0))


# ------------------------------------------------------------------------------------------
# centralised QP
# ------------------------------------------------------------------------------------------
@dataclass(eq=False)
class QPResult:
    objective: float  # Phi at the optimum
    trades: np.ndarray  # (n, n, T) p_ij (sale i -> j)
    capacities: np.ndarray  # (n, 2) [C^E, C^P]
    pair_prices: np.ndarray  # (n, n, T) pi_ij = -lambda_ij (buyer pays seller), 0 off pairs
    rents: np.ndarray  # (2,) r^E, r^P (price at the total + scarcity rent)
    scarcity: np.ndarray  # (2,) mu^E, mu^P
    allocation: Allocation
    schedules: list[dict]
    solve_time: float
    status: str

    def to_dict(self) -> dict:
        return {"objective": self.objective, "capacities": self.capacities.tolist(),
                "rents": self.rents.tolist(), "scarcity": self.scarcity.tolist(),
                "allocation": self.allocation.to_dict(), "solve_time": self.solve_time,
                "status": self.status, "trades": self.trades.tolist(),
                "pair_prices": self.pair_prices.tolist()}


def centralized_qp(models: Sequence, data, solver: str = "CLARABEL") -> QPResult:
    """The potential QP of all prosumers in one cvxpy problem; multipliers give the prices."""
    import cvxpy as cp

    t0 = time.perf_counter()
    n, T = data.n, data.T
    blocks = [m.fresh_block() for m in models]
    cons: list = [c for b in blocks for c in b.constraints]
    obj = cp.sum(cp.hstack([b.cost for b in blocks]))
    recip = {}
    for (i, j) in data.pairs:
        bi, bj = blocks[i], blocks[j]
        c = bi.trade[bi.partners.index(j)] + bj.trade[bj.partners.index(i)] == 0
        recip[(i, j)] = c
        cons.append(c)
    cap_cons = []
    if data.has_storage:
        st = data.storage
        ce = cp.hstack([b.cap_energy for b in blocks])
        cpw = cp.hstack([b.cap_power for b in blocks])
        a_e, b_e, b_p = st.energy_slope, st.energy_price_empty, st.power_price
        obj = obj + b_e * cp.sum(ce) + 0.5 * a_e * (cp.square(cp.sum(ce)) + cp.sum_squares(ce)) + b_p * cp.sum(cpw)
        cap_cons = [cp.sum(ce) <= st.energy_kwh, cp.sum(cpw) <= st.power_kw]
        cons += cap_cons
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver=solver, canon_backend=cp.SCIPY_CANON_BACKEND)
    if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise SolverError(f"centralised QP not solved: {prob.status}")
    trades = np.zeros((n, n, T))
    prices = np.zeros((n, n, T))
    for (i, j), c in recip.items():
        bi = blocks[i]
        p = np.asarray(bi.trade.value, dtype=float)[bi.partners.index(j)]
        trades[i, j], trades[j, i] = p, -p
        lam = np.asarray(c.dual_value, dtype=float)  # cvxpy: + lambda (lhs - rhs), i.e. lambda p_ij in i's Lagrangian
        prices[i, j] = prices[j, i] = -lam
    caps = np.zeros((n, 2))
    rents = np.zeros(2)
    mu = np.zeros(2)
    if data.has_storage:
        caps = np.array([[float(b.cap_energy.value), float(b.cap_power.value)] for b in blocks])
        mu = np.array([max(float(c.dual_value), 0.0) for c in cap_cons])
        st = data.storage
        rents = np.array([st.energy_price_empty + st.energy_slope * caps[:, 0].sum(), st.power_price]) + mu
    local = np.array([float(b.cost.value) for b in blocks])
    usage = np.array([float(b.parts["shared_usage"].value) if "shared_usage" in b.parts else 0.0 for b in blocks])
    alloc = allocate(data, local, usage, caps, rents, trades, prices)
    schedules = [{k: np.asarray(v.value, dtype=float).copy() for k, v in b.schedule.items()} for b in blocks]
    return QPResult(objective=float(prob.value), trades=trades, capacities=caps, pair_prices=prices,
                    rents=rents, scarcity=mu, allocation=alloc, schedules=schedules,
                    solve_time=time.perf_counter() - t0, status=prob.status)


# ------------------------------------------------------------------------------------------
# ADMM driver
# ------------------------------------------------------------------------------------------
@dataclass(eq=False)
class AdmmResult:
    converged: bool
    iterations: int
    objective: float  # Phi at the final x (prosumers' C, trades)
    primal_residuals: np.ndarray  # (K-1,) RMS ||r||_2 / sqrt(entries) of iterations 1..K-1 (reported one later)
    dual_residuals: np.ndarray  # (K-1,) RMS dual residual
    trades: np.ndarray  # (n, n, T) cleared trades z_ij (antisymmetric)
    capacities: np.ndarray  # (n, 2) prosumers' rented C^E, C^P
    pair_prices: np.ndarray  # (n, n, T) pi_ij
    rents: np.ndarray  # (2,) last broadcast s^E, s^P
    scarcity: np.ndarray  # (2,) last nu
    allocation: Allocation
    schedules: list[dict]
    bills: list[Bill]  # each prosumer's settlement reveal
    closing_sums: np.ndarray  # (3 + T,) the operator's aggregate of the bills' slots
    wall_time: float
    x_update_time: float  # summed over prosumers and iterations
    x_update_parallel_time: float  # sum over iterations of the slowest prosumer
    exchange: dict
    trace: list = field(default_factory=list)  # per-iteration records for a traced prosumer

    def to_dict(self) -> dict:
        return {"converged": self.converged, "iterations": self.iterations, "objective": self.objective,
                "primal_residuals": self.primal_residuals.tolist(),
                "dual_residuals": self.dual_residuals.tolist(),
                "capacities": self.capacities.tolist(), "rents": self.rents.tolist(),
                "scarcity": self.scarcity.tolist(), "allocation": self.allocation.to_dict(),
                "closing_sums": self.closing_sums.tolist(),
                "wall_time": self.wall_time, "x_update_time": self.x_update_time,
                "x_update_parallel_time": self.x_update_parallel_time, "exchange": self.exchange,
                "trades": self.trades.tolist(), "pair_prices": self.pair_prices.tolist()}


def consensus_entries(data) -> int:
    """Number of consensus constraints (public): T per trade direction, 2 capacities per prosumer."""
    return max(1, 2 * len(data.pairs) * data.T + (2 * data.n if data.has_storage else 0))


def admm_result(agents: Sequence[AdmmProsumer], coordinator: StorageOperatorAgent, data, residuals: list[dict],
                closing_sums: Sequence[int], wall_time: float, exchange: dict) -> AdmmResult:
    """The ADMM's result from its parties' final state (the simulator's view: every prosumer's
    local cost and bill is read here, which no party of a real round could)."""
    n, T = data.n, data.T
    bills = [a.bills[-1] if a.bills else None for a in agents]  # None: it dropped out before the bills
    prices = np.zeros((n, n, T))
    trades = np.zeros((n, n, T))
    for (i, j) in data.pairs:
        if bills[i] is None or bills[j] is None or j in agents[i].gone:
            continue
        own = price_from_fixed(price_to_fixed(bills[i].price_halves[j]))  # as revealed on chain
        prices[i, j] = prices[j, i] = own + agents[i].closing_received[j]
        trades[i, j], trades[j, i] = bills[i].trades[j], bills[j].trades[i]
    caps = np.array([a.y_c for a in agents])
    local = np.array([a.last.local_cost for a in agents])
    usage = np.array([_usage(a.last.parts) for a in agents])
    rents = price_from_fixed(coordinator.last_rents) if coordinator.last_rents is not None else np.zeros(2)
    alloc = allocate(data, local, usage, caps, rents, trades, prices)
    op = coordinator.operator
    x_times = [a.solve_times for a in agents]
    return AdmmResult(
        converged=coordinator.converged, iterations=max(len(a.solve_times) for a in agents),
        objective=potential(data, local, caps),
        primal_residuals=np.array([r["primal"] for r in residuals if "primal" in r]),
        dual_residuals=np.array([r["dual"] for r in residuals if "dual" in r]),
        trades=trades, capacities=caps, pair_prices=prices, rents=rents,
        scarcity=op.last.nu.copy() if op is not None and op.last is not None else np.zeros(2), allocation=alloc,
        schedules=[a.last.schedule for a in agents], bills=bills, closing_sums=from_fixed(closing_sums),
        wall_time=wall_time, x_update_time=float(sum(map(sum, x_times))),
        x_update_parallel_time=float(sum(max(ts) for ts in zip(*x_times))) if x_times and x_times[0] else 0.0,
        exchange=exchange)


# ------------------------------------------------------------------------------------------
# the four cases (the paper's Table 1)
# ------------------------------------------------------------------------------------------
@dataclass(eq=False)
class CaseResult:
    case: int
    label: str
    allocation: Allocation
    objective: float  # Phi
    method: str  # "qp", "admm" or "admm-private"
    qp: QPResult | None = None
    admm: AdmmResult | None = None

    def to_dict(self) -> dict:
        d = {"case": self.case, "label": self.label, "method": self.method, "objective": self.objective,
             "allocation": self.allocation.to_dict()}
        if self.qp is not None:
            d["qp"] = self.qp.to_dict()
        if self.admm is not None:
            d["admm"] = self.admm.to_dict()
        return d


@dataclass(eq=False)
class CaseTable:
    names: list[str]
    results: dict[int, CaseResult]

    def savings(self) -> dict[int, float]:
        """Saving of each case's market total against case 1, in % (needs case 1)."""
        base = self.results[1].allocation.total
        return {c: 100.0 * (base - r.allocation.total) / abs(base) for c, r in self.results.items()}

    def violations(self, tol: float = 0.5) -> list[str]:
        """Where the expected ordering fails: case 4 not cheapest in total, or a prosumer that pays
        more (by more than ``tol`` CNY) with P2P (2 vs 1, 4 vs 3) or with storage (3 vs 1, 4 vs 2)."""
        out = []
        res = self.results
        tot = {c: r.allocation.total for c, r in res.items()}
        if 4 in tot and any(tot[4] > tot[c] + 1e-6 for c in tot if c != 4):
            out.append(f"case 4 total {tot[4]:.1f} is not the cheapest ({tot})")
        for a, b, what in ((2, 1, "P2P"), (4, 3, "P2P"), (3, 1, "storage"), (4, 2, "storage")):
            if a in res and b in res:
                ca, cb = res[a].allocation.cost, res[b].allocation.cost
                for i, name in enumerate(self.names):
                    if ca[i] > cb[i] + tol:
                        out.append(f"{name} pays {ca[i]:.1f} in case {a} vs {cb[i]:.1f} in case {b} ({what} added)")
        return out

    def format(self) -> str:
        cases = sorted(self.results)
        head = f"{'CNY/day':<14}" + "".join(f"{'case ' + str(c):>11}" for c in cases)
        lines = [head]
        for i, name in enumerate(self.names):
            lines.append(f"{name:<14}" + "".join(f"{self.results[c].allocation.cost[i]:>11.1f}" for c in cases))
        lines.append(f"{'SES revenue':<14}" + "".join(
            f"{(self.results[c].allocation.storage_revenue if self.results[c].allocation.storage_revenue else float('nan')):>11.1f}"
            for c in cases))
        lines.append(f"{'Total':<14}" + "".join(f"{self.results[c].allocation.total:>11.1f}" for c in cases))
        if 1 in self.results:
            sv = self.savings()
            lines.append(f"{'saving vs 1':<14}" + "".join(f"{sv[c]:>10.2f}%" for c in cases))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"names": self.names, "cases": {str(c): r.to_dict() for c, r in self.results.items()},
                "savings_pct": {str(c): v for c, v in self.savings().items()} if 1 in self.results else {},
                "violations": self.violations()}


# ------------------------------------------------------------------------------------------
# privacy experiment (the paper's Fig. 6)
# ------------------------------------------------------------------------------------------
@dataclass(eq=False)
class PrivacyResult:
    target: int
    plain_errors: np.ndarray  # (K1,) relative error per iteration, standard ADMM, plaintext messages
    private_errors: np.ndarray  # (K2,) private protocol (masked aggregates + private proximal terms)
    plain_iterations: int
    private_iterations: int
    plain_ratio_of_means: float = 0.0  # mean |g_est - g| / mean |g - g*| over the kept iterations
    private_ratio_of_means: float = 0.0

    @staticmethod
    def _summary(e: np.ndarray) -> dict:
        return {"mean": float(np.mean(e)), "median": float(np.median(e)),
                "share_above_20pct": float(np.mean(e > 0.2)), "iterations": int(e.size)}

    def summary(self) -> dict:
        return {"target": self.target,
                "plain": {**self._summary(self.plain_errors), "ratio_of_means": self.plain_ratio_of_means},
                "private": {**self._summary(self.private_errors), "ratio_of_means": self.private_ratio_of_means}}

    def to_dict(self) -> dict:
        return {**self.summary(), "plain_errors": self.plain_errors.tolist(),
                "private_errors": self.private_errors.tolist()}


def _relative_errors(true: np.ndarray, est: np.ndarray, floor: float) -> tuple[np.ndarray, float]:
    """(|est - g| / |g - g*| per iteration, mean |est - g| / mean |g - g*|), over iterations
    where |g - g*| > floor."""
    g_star = true[-1]
    dev = np.linalg.norm(true - g_star, axis=1)
    err = np.linalg.norm(est - true, axis=1)
    keep = dev > floor
    return err[keep] / dev[keep], float(err[keep].mean() / dev[keep].mean())
