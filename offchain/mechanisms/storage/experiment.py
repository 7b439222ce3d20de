"""The storage operator's gradient-inference experiment (the paper's Fig. 6), run through the
round driver: standard ADMM in plaintext against the private protocol."""
from __future__ import annotations

import numpy as np

from ...units import energy_from_fixed, price_from_fixed
from .market import AdmmSettings, PrivacyResult, _relative_errors


def privacy_experiment(models, data, settings: AdmmSettings, target: int = 1, key_bits: int = 2048,
                       floor: float = 1e-4) -> PrivacyResult:
    """The storage operator estimates prosumer ``target``'s Lagrangian gradient in (C^E, C^P).

    Plain: standard ADMM (no proximal terms), messages in plaintext; the operator sees w_target^k
    and computes every c_i itself, so g_est = -rho (w^k - c^(k-1)). Private: masked Paillier
    aggregates and private proximal draws; the operator sees sum_i w^k and its own broadcast s^k,
    and estimates w_target ~ W/n, c_target ~ (rho W/n - s)/(a + rho), tau = 0.
    ``floor``: iterations where |g - g*| is below it are left out (the ratio is undefined there).
    """
    from ...protocol.driver import run_round
    from ...protocol.transport import PlainTransport, PrivateTransport
    from . import admm_setup

    if not data.has_storage:
        raise ValueError("the privacy experiment needs the shared store (case 3 or 4)")
    n, rho = data.n, settings.rho_capacity
    a = np.array([data.storage.energy_slope, 0.0])

    def traced(transport, proximal: bool):
        rows = []

        def observer(k, setup, delivery, answer):
            if answer.final:
                return
            agent = setup.participants[target]
            view = delivery.individual[target] if delivery.individual is not None else delivery.sums
            rows.append({"gradient": agent.gradient(), "view": energy_from_fixed(view[:2]),
                         "s": price_from_fixed(answer.prices)})

        out = run_round(admm_setup(models, data, settings, proximal=proximal), transport, observer=observer)
        return rows, len(out.setup.participants[target].solve_times)

    plain, plain_k = traced(PlainTransport(), proximal=False)
    g = np.array([r["gradient"] for r in plain])
    est, prev_c = [], np.zeros(2)
    for r in plain:
        w_i = r["view"]  # the operator sees the individual vector
        est.append(-rho * (w_i - prev_c))
        prev_c = (rho * w_i - r["s"]) / (a + rho)  # it computes c_i itself
    plain_err, plain_ratio = _relative_errors(g, np.array(est), floor)

    priv, priv_k = traced(PrivateTransport(key_bits), proximal=True)
    g = np.array([r["gradient"] for r in priv])
    est, prev_c = [], np.zeros(2)
    for r in priv:
        w_hat = r["view"] / n  # only the decrypted aggregate
        est.append(-rho * (w_hat - prev_c))
        prev_c = (rho * w_hat - r["s"]) / (a + rho)
    priv_err, priv_ratio = _relative_errors(g, np.array(est), floor)
    return PrivacyResult(target, plain_err, priv_err, plain_k, priv_k, plain_ratio, priv_ratio)
