"""One renderer for every run: ``run.json`` (the record) and a self-contained ``report.html`` with
the summary, the per-party table and the figures every mechanism shares (price convergence,
residuals, each party's bill, costs before and after, gas per iteration with every kind of
transaction), followed by the mechanism's own figures (its ``figures.py``)."""
from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,  # noqa: E402
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table  # noqa: E402

from .errors import OutputError  # noqa: E402

PRICE_SCALE = 1e6


def progress_bar(console) -> Progress:
    """The progress bar of long commands (on stderr, gone when done)."""
    return Progress(TextColumn("{task.description:<56}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("[dim]left"), TimeRemainingColumn(), console=console, transient=True)


def check_output_dir(out: Path) -> None:
    """Refuse a folder that already holds files, or one that cannot be created: before any work."""
    from .runner import check_not_in_use

    out = Path(out)
    if out.is_dir():
        check_not_in_use(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not out.is_dir():
            raise OutputError(f"output folder {out} is a file; choose a new --out")
        if (out / "run-options.json").exists() and not (out / "run.json").exists():
            raise OutputError(f"output folder {out} holds an unfinished run: `gridshare resume {out}` finishes it; "
                              "or choose a new --out")
        what = "another run" if (out / "run.json").exists() or (out / "audit.json").exists() else "other files"
        raise OutputError(f"output folder {out} already holds {what}; choose a new --out")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {out}: cannot write in it; choose a new --out")
    OutputError.check_parent(out, "output folder")


def write_run(out: Path, record: dict[str, Any], figures: dict[str, plt.Figure], title: str,
              rows: list[tuple[str, str]], tables: list[tuple[str, list[str], list[list[str]]]] = (),
              names: tuple[str, str] = ("run.json", "report.html"),
              finish: Callable[[dict], None] | None = None) -> None:
    """Write the record and the report (or ``names``) into ``out``, each file atomically (written
    beside, then renamed), so nothing is left half-written. ``out`` may already hold the run's
    own state (its options, key store and journals: runner.keep_run), never another run's record.
    ``finish(record)`` runs once the figures are drawn, before anything is written; ``rows`` may
    be a callable, read after it."""
    if (out / names[0]).exists():
        raise OutputError(f"output folder {out} already holds another run; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    try:
        images = {name: _png(fig) for name, fig in figures.items()}
    finally:
        for fig in figures.values():
            plt.close(fig)
    if finish is not None:
        finish(record)
    write_atomically(out / names[1], _html(title, rows() if callable(rows) else rows, tables, images))
    write_atomically(out / names[0], json.dumps(record, indent=2, default=_json_default))


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def _html(title: str, rows, tables, images: dict[str, str]) -> str:
    summary = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    extra = ""
    for caption, head, body in tables:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        lines = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        extra += f"<h2>{html.escape(caption)}</h2><table><tr>{cells}</tr>\n{lines}</table>"
    imgs = "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{png}"/>'
        f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, png in images.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin-bottom:1.5em}}th,td{{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}}
figure{{margin:1.5em 0}}img{{max-width:100%}}figcaption{{color:#555}}</style></head>
<body><h1>{html.escape(title)}</h1><table>{summary}</table>{extra}{imgs}</body></html>
"""


# ------------------------------------------------------------------------------------------
# the per-party table (CLI and HTML)
# ------------------------------------------------------------------------------------------
FAULT_TEXT = {
    "WithheldReveal": "withheld its final reveal",
    "FalseOpening": "posted an opening a challenge disproved",
    "FalseCheck": "claimed check masks a neighbour's proof contradicts",
    "SumCheated": "encrypted other values than it revealed",
    "NotOpened": "did not open in the blame step, settled by the fallback",
    "CoordinatorLate": "missed its deadline",
    "CoordinatorFalseOpening": "published a false decryption",
    "CoordinatorFalseSums": "published sums that every participant's proven ciphertext contradicts",
    "Overdrawn": "revealed values whose bill exceeds its deposit, settled without them",
}


def party_rows(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-party table: costs alone and with sharing, payment and bill."""
    items = sorted({k for p in record["parties"] for k in p["bill"]}, key=_item_order(record))
    head = ["party", "role", "cost alone", "shared", "saving", "pays (token)", *items]

    def num(v, fmt_="{:.2f}"):
        return "" if v is None else fmt_.format(v)

    mode = record.get("parameters", {}).get("mode")
    main = [r for r in record.get("rounds", []) if r.get("transport") == mode][-1:] or [{}]
    dropped = main[0].get("dropped", {})  # in the main round
    blamed = main[0].get("blamed", {})
    body = []
    for p in record["parties"]:
        role = p["role"] + (f" (dropped in iteration {dropped[p['name']]})" if p["name"] in dropped else "")
        if p["name"] in blamed:
            b = blamed[p["name"]]
            role += f" (at fault: {FAULT_TEXT.get(b['fault'], b['fault'])}; forfeited {int(b['forfeited']) / 1e18:g} tokens)"
        saving = (p["cost_alone"] - p["cost_shared"]) if p["cost_alone"] is not None and p["cost_shared"] is not None else None
        pay = p["payment"]["tokens"] if p["payment"] else None
        body.append([p["name"], role, num(p["cost_alone"]), num(p["cost_shared"]), num(saving),
                     "" if pay is None else f"{pay:+.3f}", *(num(p["bill"].get(i), "{:+.3f}") for i in items)])
    # columns nobody has a value in (nothing traded: no shared cost, no saving, no payment) are left out
    keep = [j for j in range(len(head)) if j < 3 or any(row[j] for row in body)]
    return [head[j] for j in keep], [[row[j] for j in keep] for row in body]


def _item_order(record):
    order = list(record.get("details", {}).get("bill_items", []))
    return lambda k: (order.index(k) if k in order else len(order), k)


def party_table(record: dict[str, Any]) -> Table:
    head, body = party_rows(record)
    gone = [f"{row[0]} ({row[1].split('(')[1].rstrip(')')})" for row in body if "(dropped" in row[1]]
    caught = [row[0] for row in body if "(blamed" in row[1]]
    table = Table(title=record["title"], caption="costs per day in the scenario's currency; payments and bill "
                  "items in tokens, + paid by the party, - received" +
                  (f"; dropped out: {', '.join(gone)}" if gone else "") +
                  (f"; blamed and slashed (encrypted other values than committed): {', '.join(caught)}" if caught else ""))
    for col in head:
        table.add_column(col, justify="left" if col in ("party", "role") else "right")
    for row in body:
        table.add_row(*row)
    return table


# ------------------------------------------------------------------------------------------
# the figures every mechanism shares, drawn from the record alone
# ------------------------------------------------------------------------------------------
def common_figures(record: dict[str, Any]) -> dict[str, plt.Figure]:
    figs: dict[str, plt.Figure] = {}
    iters = record["iterations"]
    if iters and iters[0]["prices"]:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        prices = np.asarray([it["prices"] for it in iters], dtype=float) / PRICE_SCALE
        for j in range(prices.shape[1]):
            ax.plot(range(len(iters)), prices[:, j], lw=1, alpha=0.8)
        ax.set(xlabel="iteration", ylabel="price (token per unit)",
               title=f"Public prices per iteration ({prices.shape[1]} prices, one line each)")
        figs["Price convergence"] = fig
    names = sorted({k for it in iters for k in it["residuals"]})
    if names:
        fig, ax = plt.subplots(figsize=(9, 3.4))
        for name in names:
            vals = [max(abs(it["residuals"].get(name, np.nan)), 1e-12) for it in iters]
            ax.semilogy(range(len(iters)), vals, "o-", ms=3, label=name)
        ax.set(xlabel="iteration", title="Convergence figures per iteration (what the stop rule reads)")
        ax.legend(fontsize=8)
        figs["Residuals"] = fig
    parties = [p for p in record["parties"] if p["cost_alone"] is not None and p["cost_shared"] is not None]
    if parties:
        fig, ax = plt.subplots(figsize=(max(9, 0.35 * len(parties)), 3.8))
        idx = np.arange(len(parties))
        ax.bar(idx - 0.2, [p["cost_alone"] for p in parties], 0.4, label="alone")
        ax.bar(idx + 0.2, [p["cost_shared"] for p in parties], 0.4, label="with sharing")
        ax.set_xticks(idx, [p["name"] for p in parties], rotation=60, fontsize=7, ha="right")
        ax.set(ylabel="cost per day", title="Cost of each party before and after sharing")
        ax.legend(fontsize=8)
        figs["Costs before and after"] = fig
    billed = [p for p in record["parties"] if p["payment"] is not None]
    if billed:
        fig, ax = plt.subplots(figsize=(max(9, 0.45 * len(billed)), 3.8))
        items = sorted({k for p in billed for k in p["bill"]}, key=_item_order(record))
        x = np.arange(len(billed))
        if items:
            pos, neg = np.zeros(len(billed)), np.zeros(len(billed))
            for item in items:
                v = np.array([p["bill"].get(item, 0.0) for p in billed])
                ax.bar(x, v, bottom=np.where(v >= 0, pos, neg), label=item)
                pos, neg = pos + v.clip(min=0), neg + v.clip(max=0)
        ax.plot(x, [p["payment"]["tokens"] for p in billed], "k_", ms=14, mew=2, label="payment")
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xticks(x, [p["name"] for p in billed], rotation=60, fontsize=7, ha="right")
        ax.set(ylabel="tokens (+ paid, - received)", title="Each party's bill and settled payment")
        ax.legend(fontsize=7, ncol=3)
        figs["Bills and payments"] = fig
    if any(it["gas"] for it in iters):
        fig, ax = plt.subplots(figsize=(9, 3.2))
        kinds = sorted({k for it in iters for k in it["gas"]})
        bottom = np.zeros(len(iters))
        for kind in kinds:
            vals = np.array([it["gas"].get(kind, 0) for it in iters], dtype=float)
            ax.bar(range(len(iters)), vals, bottom=bottom, label=kind)
            bottom += vals
        ax.set(xlabel="iteration", ylabel="gas", title="Gas per iteration, by kind of transaction")
        ax.legend(fontsize=8)
        figs["Gas per iteration"] = fig
    return figs


def render(out: Path, record: dict[str, Any], mechanism_figures: dict[str, plt.Figure],
           finish: Callable[[dict], None] | None = None) -> None:
    """Write ``report.html`` and then ``run.json`` of a run record; ``finish(record)`` runs
    between the two (the record's last timings: the report's own)."""
    head, body = party_rows(record)
    rows = lambda: [(k, v) for k, v in record["summary"]]  # noqa: E731 - read after ``finish``
    write_run(out, record, {**common_figures(record), **mechanism_figures}, record["title"], rows,
              [("Parties", head, body)], finish=finish)


# ------------------------------------------------------------------------------------------
# audit figures
# ------------------------------------------------------------------------------------------
def audit_figures(series: dict[int, dict[str, Any]]) -> dict[str, plt.Figure]:
    """Plots of an audit, drawn from what was read on chain."""
    figs: dict[str, plt.Figure] = {}
    for rid, s in series.items():
        if s["prices"]:
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.8))
            prices, sums = np.asarray(s["prices"], dtype=float), np.asarray(s["sums"], dtype=float)
            for j in range(prices.shape[1]):
                a1.plot(prices[:, j], lw=1)
            if sums.size:
                for j in range(sums.shape[1]):
                    a2.plot(sums[:, j], lw=1)
            a1.set(xlabel="iteration", ylabel="price (token per unit)", title=f"round {rid}: published prices")
            a2.set(xlabel="iteration", ylabel="sum (kWh)", title=f"round {rid}: decrypted sums per iteration")
            figs[f"Round {rid}: prices and sums"] = fig
        if s["payments"]:
            fig, ax = plt.subplots(figsize=(max(8, 0.4 * len(s["payments"])), 3.5))
            accounts = list(s["payments"])
            ax.bar(range(len(accounts)), [s["payments"][a] for a in accounts],
                   color=["tab:red" if s["payments"][a] >= 0 else "tab:green" for a in accounts])
            ax.set_xticks(range(len(accounts)), [a[:8] for a in accounts], rotation=60, fontsize=7)
            ax.set(ylabel="token (+ paid / - received)", title=f"round {rid}: settlement payments per party")
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
