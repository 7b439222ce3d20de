"""The demo job: plaintext run, centralized reference and the private round side by side."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .chain.backends import Chain, ChainError, connect
from .chain.compiler import CompileError
from .chain.deployment import load_deployment
from .mechanisms.tariff import TariffRule, centralized_reference, run_plaintext
from .models.prosumer import build_models
from .models.scenario import ScenarioError, load_scenario
from .privacy.packing import PackingError
from .protocol.round import PrivateRoundResult, run_private_round
from .report import RUN_SCHEMA, OutputError, check_output_dir, progress_bar, tariff_figures, write_run
from .units import tokens


def user_error_types() -> tuple[type[Exception], ...]:
    return ScenarioError, ChainError, OutputError, PackingError, CompileError


def run_tariff_demo(args, console: Console, chain: Chain | None = None) -> dict[str, Any]:
    """Everything the demo computes, as the run.json dictionary."""
    scenario = load_scenario(args.scenario, prosumers=args.prosumers, seed=args.seed)
    chain = chain or connect(args.chain)
    market = None
    if getattr(args, "deployment", None):
        market = load_deployment(args.deployment, chain)
        owner, operator = market.token.contract.functions.owner().call(), chain.accounts(1)[0].address
        if owner != operator:
            raise ChainError(f"{args.deployment}: the token's owner is {owner}; the demo's operator {operator} "
                             "must own it to mint collateral")
    t0 = time.perf_counter()
    models = build_models(scenario)
    rule = TariffRule.from_scenario(scenario)
    initial = scenario.initial_tariff()
    with progress_bar(console) as bar:
        task = bar.add_task("plaintext mode (no chain, no encryption)", total=rule.max_iterations)
        plain = run_plaintext(models, rule, initial,
                              progress=lambda k, *_: bar.update(task, completed=k + 1))
        bar.update(task, description="centralized reference (one problem)", completed=rule.max_iterations)
        reference = centralized_reference(models, scenario.market)
        bar.update(task, description="private round on chain", completed=0)
        private = run_private_round(
            chain, models, rule, initial, key_bits=args.key_bits, market=market,
            verify_openings=not args.no_verify_openings,
            progress=lambda what, frac: bar.update(task, description=what, completed=frac * rule.max_iterations))
    return assemble_run(scenario, chain, plain, reference, private, args, time.perf_counter() - t0)


def assemble_run(scenario, chain: Chain, plain, reference, private: PrivateRoundResult, args,
                 wall: float) -> dict[str, Any]:
    prosumers = []
    for agent in private.agents:
        alone_resp = agent.model.alone()
        resp = agent.response
        sched = resp.schedule
        prosumers.append({
            "name": agent.name, "address": agent.address,
            "cost_alone": alone_resp.objective, "cost_shared": resp.objective,
            "saving": alone_resp.objective - resp.objective,
            "payment_tokens": -tokens(private.payments.get(agent.address, 0)),
            "schedule": {
                "internal": resp.x.tolist(),
                "grid": (sched["grid_import_expected"] - sched["grid_export_expected"]).tolist(),
                "battery": (sched.get("battery_charge", 0 * resp.x) - sched.get("battery_discharge", 0 * resp.x)).tolist(),
            },
        })
    total_alone = sum(p["cost_alone"] for p in prosumers)
    total_shared = sum(p["cost_shared"] for p in prosumers)
    final = private.final_tariff
    gas = private.gas
    n = len(prosumers)
    per_iteration_aggregation = np.mean(gas.get("aggregate", [0]))
    return {
        "schema": RUN_SCHEMA,
        "mechanism": "tariff",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "scenario": scenario.to_dict(),
        "market": {"retail": scenario.market.retail.tolist(), "feed_in": scenario.market.feed_in.tolist()},
        "chain": {"kind": chain.kind, "url": chain.url, "chain_id": chain.chain_id, "hardfork": "prague",
                  "market": private.market.address, "token": private.market.token.address,
                  "round_id": private.round_id, "coordinator": private.coordinator.account.address,
                  "grid_account": private.grid_address},
        "parameters": {"prosumers": n, "key_bits": args.key_bits, "periods": len(final),
                       "verify_openings": not args.no_verify_openings, "rule": private.coordinator.iteration.rule.to_dict()},
        "converged": private.converged, "reason": private.reason,
        "iterations": private.iterations,  # [k].tariff: tariff of iteration k, [k].imbalance: its decrypted aggregate
        "final_tariff": final.tolist(),
        "prosumers": prosumers,
        "community": {"cost_alone": total_alone, "cost_shared": total_shared,
                      "alone_by_prosumer": [p["cost_alone"] for p in prosumers],
                      "saving_pct": 100 * (total_alone - total_shared) / abs(total_alone),
                      "grid_payment_tokens": -tokens(private.payments.get(private.grid_address, 0))},
        "plaintext": {"iterations": plain.iterations, "converged": plain.converged, "tariff": plain.tariff.tolist(),
                      "max_tariff_gap_vs_private": float(np.max(np.abs(plain.tariff - final))),
                      "wall_seconds": plain.wall_time},
        "reference": {**reference.to_dict(),
                      "max_tariff_gap": float(np.max(np.abs(reference.tariff - final))),
                      "total_gap_pct": 100 * (total_shared - reference.total_objective) / abs(reference.total_objective)},
        "gas": {
            "per_kind_mean": {k: float(np.mean(v)) for k, v in gas.items()},
            "per_kind_total": {k: int(np.sum(v)) for k, v in gas.items()},
            "submission_mean": float(np.mean(gas["submit"])),
            "per_prosumer_per_iteration": float(np.mean(gas["submit"]) + per_iteration_aggregation / n),
            "total": int(sum(sum(v) for v in gas.values())),
        },
        "timings": {**{k: round(v, 4) for k, v in private.seconds.items()}, "demo_wall": wall},
        "transactions": private.transactions,
    }


def summary_table(run: dict[str, Any]) -> Table:
    table = Table(title=f"gridshare - {run['parameters']['prosumers']} prosumers, tariff mechanism, private round")
    for col in ("prosumer", "cost alone (CNY)", "with sharing (CNY)", "saving (CNY)", "pays (+) / gets (-) (token)"):
        table.add_column(col, justify="right" if col != "prosumer" else "left")
    for p in run["prosumers"]:
        table.add_row(p["name"], f"{p['cost_alone']:.2f}", f"{p['cost_shared']:.2f}", f"{p['saving']:.2f}",
                      f"{p['payment_tokens']:+.3f}")
    c = run["community"]
    table.add_row("community", f"{c['cost_alone']:.2f}", f"{c['cost_shared']:.2f}",
                  f"{c['cost_alone'] - c['cost_shared']:.2f}",
                  f"grid {c['grid_payment_tokens']:+.3f}", style="bold")
    return table


def _saving(community: dict[str, Any]) -> str:
    """The saving in CNY, and in % of the stand-alone total when that total is not close to zero
    (a community whose earners and payers nearly cancel would show a meaningless percentage)."""
    saving = community["cost_alone"] - community["cost_shared"]
    gross = sum(abs(p) for p in community.get("alone_by_prosumer", [])) or abs(community["cost_alone"])
    pct = f" ({community['saving_pct']:.2f}% of the stand-alone total)" if abs(community["cost_alone"]) > 0.25 * gross else ""
    return f"{saving:.2f} CNY/day{pct}"


def summary_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    t, g = run["timings"], run["gas"]
    return [
        ("market contract", run["chain"]["market"]),
        ("chain", f"{run['chain']['kind']} {run['chain']['url'] or ''} (chain id {run['chain']['chain_id']}, Prague)"),
        ("round", str(run["chain"]["round_id"])),
        ("converged", f"{run['converged']} after {len(run['iterations'])} iterations ({run['reason']})"),
        ("community saving", _saving(run["community"])),
        ("final tariff (CNY/kWh)", " ".join(f"{p:.3f}" for p in run["final_tariff"])),
        ("plaintext mode", f"{run['plaintext']['iterations']} iterations, max tariff gap "
                           f"{run['plaintext']['max_tariff_gap_vs_private']:.2e}"),
        ("centralized reference", f"max tariff gap {run['reference']['max_tariff_gap']:.4f} CNY/kWh, "
                                  f"total cost gap {run['reference']['total_gap_pct']:.3f}%"),
        ("gas per submission", f"{g['submission_mean']:,.0f}"),
        ("gas per prosumer per iteration", f"{g['per_prosumer_per_iteration']:,.0f} (submission + aggregation share)"),
        ("gas total", f"{g['total']:,}"),
        ("wall time per phase (s)", ", ".join(f"{k} {v:.2f}" for k, v in t.items())),
    ]


def demo_command(args, console: Console) -> int:
    out = args.out or Path("runs") / dt.datetime.now().strftime("demo-%Y%m%d-%H%M%S")
    check_output_dir(out)
    run = run_tariff_demo(args, console)
    rows = summary_rows(run)
    write_run(out, run, tariff_figures(run), "gridshare private trading round", rows)
    if args.json:
        import json
        print(json.dumps({k: run[k] for k in ("chain", "converged", "community", "gas", "timings", "final_tariff")},
                         indent=2))
    else:
        out_console = Console()
        out_console.print(summary_table(run))
        for key, value in rows:
            out_console.print(f"[bold]{key}:[/bold] {value}")
        out_console.print(f"[bold]written:[/bold] {out / 'run.json'}, {out / 'report.html'}")
    return 0
