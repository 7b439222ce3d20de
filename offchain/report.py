"""run.json and a self-contained report.html with plots, for every mechanism's run."""
from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

RUN_SCHEMA = "gridshare.run/1"


def progress_bar(console) -> Progress:
    """The progress bar of long commands (on stderr, gone when done)."""
    return Progress(TextColumn("{task.description:<48}"), BarColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


class OutputError(ValueError):
    """The output folder cannot take this run."""


def check_output_dir(out: Path) -> None:
    """Refuse a folder that already holds a run (or any other files): nothing gets overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "another run" if (out / "run.json").exists() or (out / "audit.json").exists() else "other files"
        raise OutputError(f"output folder {out} already holds {what}; choose a new --out")


def write_run(out: Path, run: dict[str, Any], figures: dict[str, plt.Figure], title: str,
              summary_rows: list[tuple[str, str]], names: tuple[str, str] = ("run.json", "report.html")) -> None:
    """Write run.json and report.html (or ``names``) atomically: into a temporary folder renamed at the end."""
    check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out.parent))
    try:
        (tmp / names[0]).write_text(json.dumps(run, indent=2, default=_json_default))
        (tmp / names[1]).write_text(_html(title, summary_rows, figures))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for fig in figures.values():
            plt.close(fig)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _html(title: str, rows: list[tuple[str, str]], figures: dict[str, plt.Figure]) -> str:
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    imgs = "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{_png(fig)}"/>'
        f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, fig in figures.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}}
figure{{margin:1.5em 0}}img{{max-width:100%}}figcaption{{color:#555}}</style></head>
<body><h1>{html.escape(title)}</h1><table>{table}</table>{imgs}</body></html>
"""


def tariff_figures(run: dict[str, Any]) -> dict[str, plt.Figure]:
    """Plots of a tariff-mechanism run, drawn from run.json alone."""
    iters = run["iterations"]
    hours = np.arange(len(run["final_tariff"]))
    figs: dict[str, plt.Figure] = {}

    fig, ax = plt.subplots(figsize=(9, 4))
    cmap = plt.get_cmap("viridis")
    for k, it in enumerate(iters):
        ax.plot(hours, it["tariff"], color=cmap(k / max(len(iters) - 1, 1)), lw=1, alpha=0.8)
    ax.step(hours, run["market"]["retail"], where="mid", color="crimson", ls="--", label="retail (band cap)")
    ax.step(hours, run["market"]["feed_in"], where="mid", color="navy", ls="--", label="feed-in (band floor)")
    ax.plot(hours, run["final_tariff"], color="black", lw=2.2, label="final internal tariff")
    if run.get("reference"):
        ax.plot(hours, run["reference"]["tariff"], "o", ms=3, color="orange", label="centralized reference")
    ax.set(xlabel="hour", ylabel="price (CNY/kWh)", title="Internal tariff per iteration (light to dark)")
    ax.legend(fontsize=8)
    figs["Tariff convergence"] = fig

    fig, ax = plt.subplots(figsize=(9, 3.5))
    worst = [max(abs(v) for v in it["imbalance"]) for it in iters]
    total = [sum(abs(v) for v in it["imbalance"]) for it in iters]
    ax.semilogy(range(len(iters)), np.maximum(worst, 1e-6), "o-", label="max |imbalance| over hours")
    ax.semilogy(range(len(iters)), np.maximum(total, 1e-6), "s-", label="sum |imbalance| over hours")
    ax.set(xlabel="iteration", ylabel="kW", title="Community imbalance (decrypted aggregate) per iteration")
    ax.legend(fontsize=8)
    figs["Imbalance per iteration"] = fig

    prosumers = run["prosumers"][:12]
    cols = 4
    rows = -(-len(prosumers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.4 * rows), sharex=True, squeeze=False)
    for ax, p in zip(axes.flat, prosumers):
        s = p["schedule"]
        ax.bar(hours, s["internal"], color="tab:green", label="internal (+buy / -sell)")
        ax.plot(hours, s["grid"], color="tab:red", lw=1, label="grid (+buy / -sell)")
        if any(abs(v) > 1e-9 for v in s.get("battery", [])):
            ax.plot(hours, s["battery"], color="tab:purple", lw=1, label="battery (+charge)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(p["name"], fontsize=9)
    for ax in list(axes.flat)[len(prosumers):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Schedules at the final tariff (kW, expected over scenarios)"
                 + ("" if len(run["prosumers"]) <= 12 else f" - first 12 of {len(run['prosumers'])}"))
    fig.tight_layout()
    figs["Prosumer schedules"] = fig

    fig, ax = plt.subplots(figsize=(max(9, 0.35 * len(run["prosumers"])), 3.8))
    idx = np.arange(len(run["prosumers"]))
    ax.bar(idx - 0.2, [p["cost_alone"] for p in run["prosumers"]], 0.4, label="alone")
    ax.bar(idx + 0.2, [p["cost_shared"] for p in run["prosumers"]], 0.4, label="with sharing")
    ax.set_xticks(idx, [p["name"] for p in run["prosumers"]], rotation=60, fontsize=7, ha="right")
    ax.set(ylabel="objective (CNY/day)", title="Cost of each prosumer before and after sharing")
    ax.legend(fontsize=8)
    figs["Costs before and after"] = fig

    if iters and "gas" in iters[0]:
        fig, ax = plt.subplots(figsize=(9, 3.2))
        kinds = list(iters[0]["gas"])
        bottom = np.zeros(len(iters))
        for kind in kinds:
            vals = np.array([it["gas"].get(kind, 0) for it in iters], dtype=float)
            ax.bar(range(len(iters)), vals, bottom=bottom, label=kind)
            bottom += vals
        ax.set(xlabel="iteration", ylabel="gas", title="Gas per iteration")
        ax.legend(fontsize=8)
        figs["Gas per iteration"] = fig
    return figs


def audit_figures(series: dict[int, dict[str, Any]]) -> dict[str, plt.Figure]:
    """Plots of an audit, drawn from what was read on chain."""
    figs: dict[str, plt.Figure] = {}
    for rid, s in series.items():
        if s["tariff"] and s.get("mechanism") == "storage":
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.8))
            rents, sums = np.asarray(s["tariff"]), np.asarray(s["imbalance"])
            a1.plot(rents[:, 0], label="energy capacity (per kWh)")
            a1.plot(rents[:, 1], label="power capacity (per kW)")
            a1.set(xlabel="iteration", ylabel="token per day", title=f"round {rid}: the operator's rents")
            a1.legend(fontsize=8)
            a2.plot(sums[:, 0], label="sum of w (energy)")
            a2.plot(sums[:, 1], label="sum of w (power)")
            a2.set(xlabel="iteration", ylabel="kWh / kW", title=f"round {rid}: decrypted sums per iteration")
            a2.legend(fontsize=8)
            figs[f"Round {rid}: rents and decrypted sums"] = fig
        elif s["tariff"]:
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.8))
            cmap = plt.get_cmap("viridis")
            k = len(s["tariff"])
            for i, (tar, imb) in enumerate(zip(s["tariff"], s["imbalance"])):
                a1.plot(tar, color=cmap(i / max(k - 1, 1)), lw=1)
                a2.plot(imb, color=cmap(i / max(k - 1, 1)), lw=1)
            a1.set(xlabel="hour", ylabel="price (CNY/kWh)", title=f"round {rid}: tariff per iteration")
            a2.set(xlabel="hour", ylabel="kW", title=f"round {rid}: decrypted imbalance per iteration")
            figs[f"Round {rid}: tariff and imbalance"] = fig
        if s["payments"]:
            fig, ax = plt.subplots(figsize=(max(8, 0.4 * len(s["payments"])), 3.5))
            accounts = list(s["payments"])
            ax.bar(range(len(accounts)), [s["payments"][a] for a in accounts],
                   color=["tab:green" if s["payments"][a] >= 0 else "tab:red" for a in accounts])
            ax.set_xticks(range(len(accounts)), [a[:8] for a in accounts], rotation=60, fontsize=7)
            ax.set(ylabel="token (+ received / - paid)", title=f"round {rid}: settlement transfers per party")
            figs[f"Round {rid}: payments"] = fig
        if s["gas"]:
            fig, ax = plt.subplots(figsize=(9, 3.2))
            kinds = sorted({kind for g in s["gas"].values() for kind in g})
            its = list(s["gas"])
            bottom = np.zeros(len(its))
            for kind in kinds:
                vals = np.array([s["gas"][k].get(kind, 0) for k in its], dtype=float)
                ax.bar(its, vals, bottom=bottom, label=kind)
                bottom += vals
            ax.set(xlabel="iteration", ylabel="gas", title=f"round {rid}: gas per iteration")
            ax.legend(fontsize=8)
            figs[f"Round {rid}: gas per iteration"] = fig
    return figs


def storage_figures(run: dict[str, Any]) -> dict[str, plt.Figure]:
    """Plots of a shared-storage + P2P run (run.json of `gridshare run`)."""
    figs: dict[str, plt.Figure] = {}
    cases = sorted(run["cases"], key=int)
    names = run["names"]
    fig, ax = plt.subplots(figsize=(max(9, 0.9 * len(names)), 3.8))
    width = 0.8 / len(cases)
    for k, c in enumerate(cases):
        ax.bar(np.arange(len(names)) + k * width, run["cases"][c]["allocation"]["cost"], width,
               label=f"case {c}: {run['cases'][c]['label']}")
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="CNY/day", title="Cost of each prosumer per case")
    ax.legend(fontsize=7)
    figs["Costs per case"] = fig
    last = run["cases"][cases[-1]]
    solution = last.get("admm") or last.get("qp")
    if last.get("admm"):
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.semilogy(last["admm"]["primal_residuals"], label="primal residual")
        ax.semilogy(last["admm"]["dual_residuals"], label="dual residual")
        ax.set(xlabel="iteration", title=f"ADMM residuals, case {cases[-1]}")
        ax.legend(fontsize=8)
        figs["Residual convergence"] = fig
    trades = np.asarray(solution["trades"])
    if trades.size and np.abs(trades).max() > 1e-6:
        fig, ax = plt.subplots(figsize=(6, 5))
        flow = trades.clip(min=0).sum(axis=2)  # kWh sold i -> j over the day
        im = ax.imshow(flow, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set(xlabel="buyer", ylabel="seller", title=f"P2P energy over the day (kWh), case {cases[-1]}")
        fig.colorbar(im, ax=ax)
        figs["P2P flows"] = fig
    capacities = np.asarray(solution["capacities"])
    if capacities.size and capacities[:, 0].max() > 1e-6:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 3.8))
        for name, energy in zip(names, run["rented_energy"][cases[-1]]):
            a1.plot(energy, label=name)
        a1.set(xlabel="hour", ylabel="kWh", title=f"Energy held in each prosumer's rented capacity, case {cases[-1]}")
        a1.legend(fontsize=6, ncol=2)
        a2.bar(names, capacities[:, 0], label="energy capacity (kWh)")
        a2.bar(names, capacities[:, 1], alpha=0.6, label="power capacity (kW)")
        a2.set(title="Capacity rented for the day")
        a2.tick_params(axis="x", rotation=45, labelsize=8)
        a2.legend(fontsize=8)
        figs["Rented capacity per prosumer"] = fig
    pe = run.get("privacy_experiment")
    if pe:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.semilogy(np.asarray(pe["plain_errors"]) * 100, label="plain ADMM (the operator sees each w_i)")
        ax.semilogy(np.asarray(pe["private_errors"]) * 100, label="private protocol (sums only, private proximal terms)")
        ax.set(xlabel="iteration", ylabel="relative error (%)",
               title=f"Operator's estimate of prosumer {pe['target'] + 1}'s Lagrangian gradient, case {pe['case']}")
        ax.legend(fontsize=8)
        figs["Privacy experiment"] = fig
    settled = run.get("settlement") or {}
    if settled:
        c = sorted(settled, key=int)[-1]
        bills = settled[c]["bills"]
        fig, ax = plt.subplots(figsize=(max(9, 0.9 * len(names)), 3.8))
        pos, neg = np.zeros(len(names)), np.zeros(len(names))
        for item in ("rent", "usage", "transmission", "grid", "p2p"):
            v = np.array([b[item] for b in bills], dtype=float) / 1e18
            base = np.where(v >= 0, pos, neg)
            ax.bar(names, v, bottom=base, label=item)
            pos, neg = pos + v.clip(min=0), neg + v.clip(max=0)
        ax.axhline(0, color="black", lw=0.6)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.set(ylabel="tokens (+ credit, - payment)", title=f"On-chain settlement per prosumer, case {c} (Bill events)")
        ax.legend(fontsize=7, ncol=5)
        figs["On-chain settlement"] = fig
    return figs
