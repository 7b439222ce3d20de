"""Report figures of the tariff mechanism, drawn from the run record alone."""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np


def figures(record: dict[str, Any]) -> dict[str, plt.Figure]:
    d = record["details"]
    iters = record["iterations"]
    hours = np.arange(len(d["final_tariff"]))
    figs: dict[str, plt.Figure] = {}

    fig, ax = plt.subplots(figsize=(9, 4))
    cmap = plt.get_cmap("viridis")
    for k, it in enumerate(iters):
        ax.plot(hours, np.asarray(it["prices"]) / 1e6, color=cmap(k / max(len(iters) - 1, 1)), lw=1, alpha=0.8)
    ax.step(hours, d["market"]["retail"], where="mid", color="crimson", ls="--", label="retail (band cap)")
    ax.step(hours, d["market"]["feed_in"], where="mid", color="navy", ls="--", label="feed-in (band floor)")
    ax.plot(hours, d["final_tariff"], color="black", lw=2.2, label="final internal tariff")
    if d.get("reference"):
        ax.plot(hours, d["reference"]["tariff"], "o", ms=3, color="orange", label="centralized reference")
    ax.set(xlabel="hour", ylabel="price (CNY/kWh)", title="Internal tariff per iteration (light to dark)")
    ax.legend(fontsize=8)
    figs["Tariff convergence"] = fig

    fig, ax = plt.subplots(figsize=(9, 3.5))
    imb = d["imbalance_kw"]
    ax.semilogy(range(len(imb)), np.maximum([max(abs(v) for v in x) for x in imb], 1e-6), "o-",
                label="max |imbalance| over hours")
    ax.semilogy(range(len(imb)), np.maximum([sum(abs(v) for v in x) for x in imb], 1e-6), "s-",
                label="sum |imbalance| over hours")
    ax.set(xlabel="iteration", ylabel="kW", title="Community imbalance (decrypted aggregate) per iteration")
    ax.legend(fontsize=8)
    figs["Imbalance per iteration"] = fig

    names = [p["name"] for p in record["parties"] if p["role"] == "prosumer"]
    schedules = list(zip(names, d["schedules"]))[:12]
    cols = 4
    rows = -(-len(schedules) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.4 * rows), sharex=True, squeeze=False)
    for ax, (name, s) in zip(axes.flat, schedules):
        ax.bar(hours, s["internal"], color="tab:green", label="internal (+buy / -sell)")
        ax.plot(hours, s["grid"], color="tab:red", lw=1, label="grid (+buy / -sell)")
        if any(abs(v) > 1e-9 for v in s.get("battery", [])):
            ax.plot(hours, s["battery"], color="tab:purple", lw=1, label="battery (+charge)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(schedules):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Schedules at the final tariff (kW, expected over scenarios)"
                 + ("" if len(names) <= 12 else f" - first 12 of {len(names)}"))
    fig.tight_layout()
    figs["Prosumer schedules"] = fig
    return figs
