"""Report figures of the storage + P2P mechanism, drawn from the run record alone."""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np


def figures(record: dict[str, Any]) -> dict[str, plt.Figure]:
    d = record["details"]
    figs: dict[str, plt.Figure] = {}
    cases = sorted(d["cases"], key=int)
    names = d["names"]
    fig, ax = plt.subplots(figsize=(max(9, 0.9 * len(names)), 3.8))
    width = 0.8 / len(cases)
    for k, c in enumerate(cases):
        ax.bar(np.arange(len(names)) + k * width, d["cases"][c]["allocation"]["cost"], width,
               label=f"case {c}: {d['cases'][c]['label']}")
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="CNY/day", title="Cost of each prosumer per case")
    ax.legend(fontsize=7)
    figs["Costs per case"] = fig
    last = cases[-1]
    solution = d["cases"][last].get("admm") or d["cases"][last].get("qp")
    trades = np.asarray(solution["trades"])
    if trades.size and np.abs(trades).max() > 1e-6:
        fig, ax = plt.subplots(figsize=(6, 5))
        im = ax.imshow(trades.clip(min=0).sum(axis=2), cmap="viridis")  # kWh sold i -> j over the day
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set(xlabel="buyer", ylabel="seller", title=f"P2P energy over the day (kWh), case {last}")
        fig.colorbar(im, ax=ax)
        figs["P2P flows"] = fig
    capacities = np.asarray(solution["capacities"])
    if capacities.size and capacities[:, 0].max() > 1e-6 and last in d["rented_energy"]:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 3.8))
        for name, energy in zip(names, d["rented_energy"][last]):
            a1.plot(energy, label=name)
        a1.set(xlabel="hour", ylabel="kWh", title=f"Energy held in each prosumer's rented capacity, case {last}")
        a1.legend(fontsize=6, ncol=2)
        a2.bar(names, capacities[:, 0], label="energy capacity (kWh)")
        a2.bar(names, capacities[:, 1], alpha=0.6, label="power capacity (kW)")
        a2.set(title="Capacity rented for the day")
        a2.tick_params(axis="x", rotation=45, labelsize=8)
        a2.legend(fontsize=8)
        figs["Rented capacity per prosumer"] = fig
    pe = d.get("privacy_experiment")
    if pe:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.semilogy(np.asarray(pe["plain_errors"]) * 100, label="plain ADMM (the operator sees each w_i)")
        ax.semilogy(np.asarray(pe["private_errors"]) * 100, label="private protocol (sums only, private proximal terms)")
        ax.set(xlabel="iteration", ylabel="relative error (%)",
               title=f"Operator's estimate of prosumer {pe['target'] + 1}'s Lagrangian gradient, case {pe['case']}")
        ax.legend(fontsize=8)
        figs["Privacy experiment"] = fig
    return figs
