"""``gridshare run``: the shared-storage + P2P market of paper A, case by case (1 grid only, 2 P2P,
3 storage, 4 both), by the centralized QP, the two-block ADMM (plaintext or private in process), or
the private protocol through a chain with settlement in tokens (``--method chain``)."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .mechanisms.admm import AdmmSettings, CaseResult, CaseTable, solve_case
from .models.profiles import build_profiles
from .models.scenario import ScenarioError
from .models.storage_p2p import build_market, get_case
from .models.storage_scenario import load_storage_scenario
from .report import RUN_SCHEMA, check_output_dir, progress_bar, storage_figures, write_run


def solve_case_on_chain(chain, scenario, case: int, profiles, key_bits: int, progress=None) -> tuple[CaseResult, dict]:
    """One case through the chain: the private ADMM as round transactions, then settlement."""
    from .protocol.storage_round import run_storage_round

    c = get_case(case)
    models, data = build_market(scenario, c, profiles=profiles)
    r = run_storage_round(chain, models, data, AdmmSettings.from_scenario(scenario), key_bits=key_bits,
                          case_label=c.label, progress=progress)
    settlement = r.to_dict()
    settlement["matches_offchain_mirror"] = (
        [r.payments.get(a, 0) for a in (r.addresses[n] for n in data.names)] == r.expected["amounts"])
    return CaseResult(c.number, c.label, r.admm.allocation, r.admm.objective, "chain", admm=r.admm), settlement


def run_storage_cases(args, console: Console) -> dict[str, Any]:
    scenario = load_storage_scenario(args.scenario, seed=args.seed)
    if args.prosumers is not None:
        if args.prosumers > len(scenario.prosumers):
            raise ScenarioError(f"--prosumers {args.prosumers}: the scenario has {len(scenario.prosumers)}")
        scenario = scenario.subset(range(args.prosumers))
    profiles = build_profiles(scenario)
    cases = [1, 2, 3, 4] if args.case == "all" else [int(args.case)]
    results, references, settlements = {}, {}, {}
    chain = None
    if args.method == "chain":
        from .chain.backends import connect

        chain = connect(args.chain)
    t0 = time.perf_counter()
    with progress_bar(console) as bar:
        for case in cases:
            task = bar.add_task(f"case {case}: {args.method}", total=None)

            def progress(k, primal, dual, task=task, case=case):
                bar.update(task, description=f"case {case}: {args.method}, iteration {k}, RMS primal residual {primal:.3g}")

            if chain is not None:
                results[case], settlements[str(case)] = solve_case_on_chain(
                    chain, scenario, case, profiles, args.key_bits, progress)
            else:
                results[case] = solve_case(scenario, case, method=args.method, profiles=profiles,
                                           key_bits=args.key_bits, progress=progress)
            if args.method != "qp":
                bar.update(task, description=f"case {case}: centralized QP (reference)")
                references[case] = solve_case(scenario, case, method="qp", profiles=profiles)
            bar.remove_task(task)
    privacy = None
    if args.privacy:
        from .mechanisms.admm import privacy_experiment

        case = max(c for c in cases if get_case(c).storage) if any(get_case(c).storage for c in cases) else 4
        with console.status(f"privacy experiment (case {case}): plain ADMM, then the private protocol"):
            models, data = build_market(scenario, case, profiles=profiles)
            privacy = {"case": case, **privacy_experiment(models, data, AdmmSettings.from_scenario(scenario),
                                                          target=1, key_bits=args.key_bits).to_dict()}
    names = [p.name for p in scenario.prosumers]
    table = CaseTable(names, results)
    run = {
        "schema": RUN_SCHEMA, "mechanism": "storage-p2p", "method": args.method,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "scenario": scenario.to_dict(), "wall_seconds": time.perf_counter() - t0,
        "chain": (chain.url or chain.kind) if chain is not None else None,
        **table.to_dict(),
        "settlement": settlements,
        "privacy_experiment": privacy,
        "reference_gap_pct": {str(c): 100 * (results[c].objective - r.objective) / abs(r.objective)
                              for c, r in references.items()},
        # energy held in each prosumer's rented capacity, hour by hour (kWh)
        "rented_energy": {str(c): [np.asarray(sch.get("shared_energy", np.zeros(scenario.hours))).tolist()
                                   for sch in (r.admm or r.qp).schedules] for c, r in results.items()},
    }
    return run


def run_command(args, console: Console) -> int:
    out = args.out or Path("runs") / dt.datetime.now().strftime("storage-%Y%m%d-%H%M%S")
    check_output_dir(out)
    run = run_storage_cases(args, console)
    printer = Console(highlight=False)
    cases = sorted(run["cases"], key=int)
    table = Table(title=f"{run['scenario']['name']}: cost per prosumer and case (CNY/day), {run['method']}",
                  caption="; ".join(f"case {c}: {run['cases'][c]['label']}" for c in cases))
    table.add_column("prosumer")
    for c in cases:
        table.add_column(f"case {c}", justify="right")
    for i, name in enumerate(run["names"]):
        table.add_row(name, *(f"{run['cases'][c]['allocation']['cost'][i]:.1f}" for c in cases))
    table.add_row("storage revenue", *(f"{run['cases'][c]['allocation']['storage_revenue']:.1f}" for c in cases))
    table.add_row("total", *(f"{run['cases'][c]['allocation']['total']:.1f}" for c in cases), style="bold")
    if run["savings_pct"]:
        table.add_row("saving vs case 1", *(f"{run['savings_pct'][c]:.2f}%" for c in cases))
    printer.print(table)
    for c, gap in run["reference_gap_pct"].items():
        admm = run["cases"][c]["admm"]
        printer.print(f"case {c}: ADMM {admm['iterations']} iteration{'s' * (admm['iterations'] != 1)}, {admm['wall_time']:.1f} s, "
                      f"objective {gap:+.4f}% vs the centralized QP", soft_wrap=True)
    for c, st in run["settlement"].items():
        payees = {k: v / 1e18 for k, v in st["payments"].items()}
        printer.print(f"case {c} settled on chain: market {st['market']} round {st['round_id']}, "
                      f"{st['transactions']} transactions, "
                      f"{sum(g['total'] for g in st['gas'].values()):,} gas; payments sum to "
                      f"{sum(st['payments'].values())} (token base units); operator "
                      f"{payees.get(st['addresses']['operator'], 0):+.2f}, centre "
                      f"{payees.get(st['addresses']['centre'], 0):+.2f}, grid {payees.get(st['addresses']['grid'], 0):+.2f} "
                      f"tokens; matches the off-chain mirror: {st['matches_offchain_mirror']}", soft_wrap=True)
        if args.chain:
            printer.print(f"  verify it from chain data: gridshare audit --chain {args.chain} --market {st['market']}",
                          soft_wrap=True)
    if run["privacy_experiment"]:
        pe = run["privacy_experiment"]
        printer.print(f"privacy experiment (case {pe['case']}, prosumer {pe['target'] + 1}): the operator's estimate of its "
                      f"Lagrangian gradient is off by a median {100 * pe['plain']['median']:.2g}% per iteration in plain "
                      f"ADMM and {100 * pe['private']['median']:.3g}% with the private protocol", soft_wrap=True)
    for v in run["violations"]:
        printer.print(f"[yellow]expected ordering does not hold:[/yellow] {v}", soft_wrap=True)
    rows = [("method", run["method"]), ("cases", ", ".join(cases))] + [
        (f"case {c} total (CNY/day)", f"{run['cases'][c]['allocation']['total']:.1f}") for c in cases]
    if run["chain"]:
        rows.append(("chain", run["chain"]))
    for c, st in run["settlement"].items():
        rows.append((f"case {c} on chain", f"market {st['market']}, round {st['round_id']}, {st['transactions']} "
                     f"transactions, {sum(g['total'] for g in st['gas'].values()):,} gas, payments = off-chain "
                     f"mirror: {st['matches_offchain_mirror']}"))
    write_run(out, run, storage_figures(run), f"gridshare shared storage + P2P: {run['scenario']['name']}", rows)
    printer.print(f"written: {out / 'run.json'}, {out / 'report.html'}")
    return 0
