"""``gridshare bench ...``: the product's main jobs timed, every ratio measured side by side in one run."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ..terminal import printer

TARGETS = {"embedded_seconds": 30.0, "anvil_seconds": 10.0, "private_over_plaintext": 4.0,
           "transactions_per_prosumer_per_iteration": 1.0, "gas_per_prosumer_per_iteration": 150_000}


def _main_round(scenario_path, prosumers=None, seed=None):
    """The mechanism, the scenario and a factory of the main round (agents built once)."""
    from ..registry import load_scenario

    mechanism, scenario = load_scenario(scenario_path, prosumers=prosumers, seed=seed)
    job = mechanism.prepare(scenario, {o.flag.lstrip("-"): o.default for o in mechanism.options})
    return mechanism, scenario, job


def _gas_figures(outcome) -> dict[str, Any]:
    """Gas by kind, and what a prosumer pays counting every transaction it sends (runner.prosumer_costs)."""
    from ..runner import prosumer_costs

    gas = outcome.transport.gas
    n = len(outcome.setup.participants)
    agg = float(np.mean(gas["aggregate"])) if gas.get("aggregate") else 0.0
    decryption = gas.get("publish", []) + gas.get("conclude", [])
    costs = prosumer_costs(outcome)
    return {"gas_per_submission": costs["submission_mean"], "gas_aggregate_per_iteration": agg,
            "gas_publish_per_iteration": float(np.mean(decryption)),
            "transactions_per_prosumer_per_iteration": costs["transactions_per_prosumer_per_iteration"],
            "gas_per_prosumer_per_iteration": costs["per_prosumer_per_iteration"],
            "gas_per_prosumer_per_round": costs["per_prosumer_per_round"],
            "gas_per_iteration": costs["submission_mean"] * n + agg + float(np.mean(decryption)),
            "gas_reveal": float(np.mean(gas["reveal"])) if gas.get("reveal") else 0.0,
            "gas_settle": int(sum(gas.get("settle", []))),
            "gas_total": int(sum(sum(v) for v in gas.values()))}


def bench_round(args, console: Console) -> dict[str, Any]:
    from ..chain.backends import connect, start_anvil
    from ..protocol.driver import run_round
    from ..protocol.transport import ChainTransport, PlainTransport

    mechanism, scenario, job = _main_round(args.scenario, args.prosumers, args.seed)
    factory = job.rounds[-1]
    setup = factory()
    for p in setup.participants:  # stand-alone solves (tariff) belong to neither mode's loop
        getattr(getattr(p, "model", None), "alone", lambda: None)()
    t0 = time.perf_counter()
    plain = run_round(setup, PlainTransport())
    plain_seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"mechanism": mechanism.name, "scenario": scenario.name,
                           "prosumers": len(setup.participants), "key_bits": args.key_bits,
                           "verify_openings": not args.no_verify_openings,
                           "plaintext": {"wall_seconds": plain_seconds, "iterations": len(plain.iterations)},
                           "private": {}, "targets": TARGETS}

    def private(chain) -> dict[str, Any]:
        t0 = time.perf_counter()
        o = run_round(factory(), ChainTransport(chain, key_bits=args.key_bits, verify_openings=not args.no_verify_openings))
        wall = time.perf_counter() - t0
        return {"chain": chain.url or chain.kind, "wall_seconds": wall, "iterations": len(o.iterations),
                "converged": o.converged, "phases": {k: round(v, 3) for k, v in o.seconds.items()},
                "private_over_plaintext": wall / plain_seconds,
                "price_gap_vs_plaintext": float(np.max(np.abs(np.asarray(o.final_prices) - plain.final_prices))) / 1e6,
                **_gas_figures(o)}

    name = "rpc" if args.chain else "embedded"
    with console.status(f"private round on {args.chain or 'the embedded chain'}"):
        out["private"][name] = private(connect(args.chain))
    if args.anvil:
        with console.status("private round on anvil (started here)"), start_anvil() as node:
            out["private"]["anvil"] = private(connect(node.url))
    return out


def bench_round_command(args, console: Console) -> int:
    result = bench_round(args, console)
    table = Table(title=f"bench round: {result['mechanism']} {result['scenario']}, {result['prosumers']} prosumers, "
                        f"{result['key_bits']}-bit Paillier")
    table.add_column("figure")
    runs = result["private"]
    for name in runs:
        table.add_column(name, justify="right")
    rows = [("wall time, private round (s)", "wall_seconds", "{:.2f}"),
            ("private / plaintext time", "private_over_plaintext", "{:.2f}x"),
            ("iterations", "iterations", "{}"),
            ("gas per submission tx", "gas_per_submission", "{:,.0f}"),
            ("transactions per prosumer per iteration", "transactions_per_prosumer_per_iteration", "{:.2f}"),
            ("gas per prosumer per iteration (all it sends + aggregation share)", "gas_per_prosumer_per_iteration", "{:,.0f}"),
            ("gas per prosumer per round besides (register, approve, deposit, reveal, withdraw)",
             "gas_per_prosumer_per_round", "{:,.0f}"),
            ("gas aggregate per iteration", "gas_aggregate_per_iteration", "{:,.0f}"),
            ("gas publish/conclude per iteration", "gas_publish_per_iteration", "{:,.0f}"),
            ("gas per iteration, all told", "gas_per_iteration", "{:,.0f}"),
            ("gas per reveal", "gas_reveal", "{:,.0f}"),
            ("gas of the settlement", "gas_settle", "{:,.0f}"),
            ("max price gap vs plaintext", "price_gap_vs_plaintext", "{:.1e}")]
    for label, key, fmt in rows:
        table.add_row(label, *(fmt.format(run[key]) for run in runs.values()))
    for phase in sorted({p for run in runs.values() for p in run["phases"]}):
        table.add_row(f"  phase {phase} (s)", *(f"{run['phases'].get(phase, 0):.2f}" for run in runs.values()))
    out = printer()
    out.print(table)
    out.print(f"plaintext mode: {result['plaintext']['wall_seconds']:.2f} s, {result['plaintext']['iterations']} iterations")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        out.print(f"written: {args.json}")
    return 0


def bench_audit_command(args, console: Console) -> int:
    """A private round on anvil, then its audit by URL: in process and as the whole command."""
    import subprocess
    import sys
    import tempfile

    from ..audit.command import run_audit
    from ..chain.backends import connect, start_anvil
    from ..protocol.driver import run_round
    from ..protocol.transport import ChainTransport

    _, _, job = _main_round(args.scenario, args.prosumers, args.seed)
    with start_anvil() as node:
        with console.status("private round on anvil"):
            result = run_round(job.rounds[-1](), ChainTransport(connect(node.url)))
        market = result.transport.market.address
        t0 = time.perf_counter()
        findings, _ = run_audit(connect(node.url), market)
        in_process = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "offchain.cli", "audit", "--chain", node.url,
                                   "--market", market, "--out", f"{tmp}/audit"], capture_output=True, text=True)
            command = time.perf_counter() - t0
    out = {"prosumers": len(result.setup.participants), "iterations": len(result.iterations), "checks": len(findings),
           "passed": all(f.ok for f in findings) and proc.returncode == 0,
           "audit_seconds_in_process": in_process, "audit_command_seconds": command, "target_seconds": 5.0}
    printer().print(f"audit of a {out['prosumers']}-prosumer, {out['iterations']}-iteration round on anvil: "
                    f"{out['checks']} checks, passed={out['passed']}; {in_process:.2f} s in process, "
                    f"{command:.2f} s as the whole `gridshare audit` command (target 5 s)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def bench_admm_command(args, console: Console) -> int:
    """The storage + P2P ADMM of one case against the centralized QP, side by side in one run:
    serial solves, solves on a Dask cluster, the private protocol through anvil (gas)."""
    from ..chain.backends import connect, start_anvil
    from ..mechanisms.storage import solve_admm
    from ..mechanisms.storage.market import AdmmSettings, centralized_qp
    from ..models.profiles import build_profiles
    from ..models.storage_p2p import build_market
    from ..protocol.executors import DaskExecutor
    from ..protocol.transport import ChainTransport, PrivateTransport
    from ..registry import load_scenario

    _, scenario = load_scenario(args.scenario)
    models, data = build_market(scenario, args.case, profiles=build_profiles(scenario))
    settings = AdmmSettings.from_scenario(scenario)
    out: dict[str, Any] = {"case": args.case, "prosumers": data.n, "hours": data.T,
                           "paper": {"iterations": 62, "total_seconds": 420, "parallel_seconds": 89},
                           "target_seconds_anvil_case4": 30, "runs": {}}
    with console.status("centralized QP"):
        t0 = time.perf_counter()
        qp = centralized_qp(models, data)
        out["qp_seconds"] = time.perf_counter() - t0

    def figures(r, wall: float) -> dict[str, Any]:
        return {"iterations": r.iterations, "converged": r.converged, "wall_seconds": wall,
                "x_update_seconds": r.x_update_time,
                "wall_if_prosumers_parallel": wall - r.x_update_time + r.x_update_parallel_time,
                "objective_gap_pct": 100 * (r.objective - qp.objective) / abs(qp.objective),
                "total_gap_pct": 100 * (r.allocation.total - qp.allocation.total) / abs(qp.allocation.total)}

    runs = out["runs"]

    def timed(label: str, **kw):
        with console.status(label):
            t0 = time.perf_counter()
            r, outcome = solve_admm(models, data, settings, **kw)
            return r, outcome, time.perf_counter() - t0

    r, _, wall = timed(f"ADMM, case {args.case}, prosumer solves one after the other")
    runs["admm"] = figures(r, wall)
    if args.workers > 1 or args.scheduler:
        executor = DaskExecutor(args.workers, args.scheduler)
        try:
            r, _, wall = timed("ADMM, prosumer solves on a Dask cluster", executor=executor)
        finally:
            executor.close()
        runs["admm-dask"] = {**figures(r, wall + executor.startup_seconds),
                             "cluster_start_seconds": executor.startup_seconds}
    if args.private:
        r, _, wall = timed(f"ADMM, private protocol in process ({args.key_bits}-bit Paillier)",
                           transport=PrivateTransport(args.key_bits))
        runs["admm-private"] = figures(r, wall)
    if not args.no_anvil:
        with start_anvil() as node:
            r, outcome, wall = timed("private protocol through anvil (started here), settled in tokens",
                                     transport=ChainTransport(connect(node.url), key_bits=args.key_bits))
        t = outcome.transport
        mirror = t.mirror(outcome.final_prices)
        runs["chain-anvil"] = {**figures(r, wall), "chain_seconds": t.seconds.get("chain", 0.0),
                               "transactions": len(t.transactions),
                               "gas_per_iteration": sum(t.gas_of_iteration(k).get(kind, 0) for k in range(len(outcome.iterations))
                                                        for kind in ("submit", "aggregate", "publish", "conclude"))
                               / len(outcome.iterations),
                               **_gas_figures(outcome),
                               "settlement_matches_mirror": mirror.amounts == outcome.settlement.amounts}
    table = Table(title=f"bench admm: case {args.case} of {scenario.name}, {data.n} prosumers x {data.T} h")
    table.add_column("figure")
    for name in runs:
        table.add_column(name, justify="right")
    rows = [("iterations", "iterations", "{}"), ("wall time (s)", "wall_seconds", "{:.1f}"),
            ("  of which Dask cluster start (s)", "cluster_start_seconds", "{:.1f}"),
            ("prosumer solves, summed (s)", "x_update_seconds", "{:.1f}"),
            ("wall time if every prosumer had its own core (s)", "wall_if_prosumers_parallel", "{:.1f}"),
            ("objective vs centralized QP (%)", "objective_gap_pct", "{:+.4f}"),
            ("market total vs centralized QP (%)", "total_gap_pct", "{:+.4f}"),
            ("time in chain calls (s)", "chain_seconds", "{:.1f}"), ("transactions", "transactions", "{:,}"),
            ("gas per submission", "gas_per_submission", "{:,.0f}"), ("gas per iteration", "gas_per_iteration", "{:,.0f}"),
            ("gas of settlement", "gas_settle", "{:,.0f}"), ("gas in total", "gas_total", "{:,.0f}")]
    for label, key, fmt in rows:
        if any(key in run for run in runs.values()):
            table.add_row(label, *(fmt.format(run[key]) if key in run else "" for run in runs.values()))
    printer().print(table)
    printer().print(f"centralized QP: {out['qp_seconds']:.2f} s. The paper: 62 iterations, 420 s total, 89 s with "
                    "prosumers in parallel (MATLAB + Gurobi). Target: case 4 through anvil in 30 s.")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


def bench_settle_command(args, console: Console) -> int:
    """Settle gas of the four storage cases through the typed rule, against the hand-built
    calldata version's figures recorded before the change (tests/fixtures/golden_main.json)."""
    from pathlib import Path

    from ..chain.backends import connect, start_anvil
    from ..mechanisms.storage import solve_admm
    from ..mechanisms.storage.market import AdmmSettings
    from ..models.profiles import build_profiles
    from ..models.storage_p2p import build_market
    from ..protocol.transport import ChainTransport
    from ..registry import load_scenario

    root = Path(__file__).resolve().parent.parent
    golden = json.loads((root / "tests" / "fixtures" / "golden_main.json").read_text())["storage"]["cases"]
    _, scenario = load_scenario(root / "scenarios" / "storage10.toml")
    profiles = build_profiles(scenario)
    settings = AdmmSettings.from_scenario(scenario)
    out: dict[str, Any] = {"cases": {}, "before": "main 5092d12: StorageMarket's hand-built calldata to its calculator"}
    with start_anvil() as node:
        chain = connect(node.url)
        market, rules = None, {}
        for case in (1, 2, 3, 4):
            with console.status(f"case {case} through anvil"):
                models, data = build_market(scenario, case, profiles=profiles)
                _, outcome = solve_admm(models, data, settings, transport=ChainTransport(chain, market=market, rules=rules))
            market, rules = outcome.transport.market, outcome.transport.rules
            after = sum(outcome.transport.gas["settle"])
            before = golden[str(case)]["gas"]["settle"]
            out["cases"][str(case)] = {"before": int(before), "after": after, "ratio": after / before}
    table = Table(title="settle gas, storage10 cases (anvil at its default hardfork)")
    for col in ("case", "hand-built (before)", "typed ABI (after)", "after / before"):
        table.add_column(col, justify="right")
    for c, v in out["cases"].items():
        table.add_row(c, f"{v['before']:,}", f"{v['after']:,}", f"{v['ratio']:.3f}")
    printer().print(table)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def bench_fuzz_command(args, console: Console) -> int:
    """Random sequences of honest and hostile calls against the round contract (offchain.fuzz),
    every invariant checked after every step; exit 1 with hypothesis' shrunk failure if one broke."""
    from .fuzz import run_fuzz
    from ..report import progress_bar

    with progress_bar(console) as bar:
        task = bar.add_task(f"fuzz: {args.examples} sequences of up to {args.steps} calls", total=args.examples)

        def progress(report: dict) -> None:
            bar.update(task, completed=min(report["examples"], args.examples),
                       description=f"fuzz: {report['examples']} sequences, {report['steps']:,} steps, "
                                   f"{report['transactions']:,} transactions")

        result = run_fuzz(args.examples, args.steps, args.seed, progress)
    out = printer()
    table = Table(title=f"bench fuzz: {result['examples']:,} sequences of up to {args.steps} calls "
                        f"(seed {args.seed if args.seed is not None else 'random'})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, value in (("sequences (examples)", result["examples"]), ("steps", result["steps"]),
                         ("transactions", result["transactions"]), ("disputes", result["disputes"]),
                         ("accusations", result["accusations"]), ("blame steps", result["blame_steps"]),
                         ("openings disproved by a challenge", result["openings_disproved"]),
                         ("hostile calls (each rejected, nothing changed)", result["hostile"]),
                         ("all calls rejected as the model predicted", result["rejections"]),
                         ("withdrawal checks of finished rounds", result["withdrawal_checks"]),
                         ("end checks (deadlines passed from a state end the round)", result["end_checks"]),
                         ("wall time (s)", f"{result['wall_seconds']:.1f}"),
                         ("invariants", "BROKEN" if result["failed"] else "all held")):
        table.add_row(label, f"{value:,}" if isinstance(value, int) else value)
    for title, key in (("rounds ending an example", "round_outcomes"), ("closed", "closed"), ("fault", "faults"),
                       ("rejected", "rejected"), ("hostile", "hostile_calls")):
        for name, count in sorted(result[key].items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(f"  {title}: {name}", f"{count:,}")
    out.print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        out.print(f"written: {args.json}")
    if result["failed"]:
        out.print("[bold red]an invariant broke; hypothesis' shrunk failing sequence:[/bold red]")
        out.print(result["failure"], markup=False, highlight=False)
        return 1
    return 0


def bench_registration_command(args, console: Console) -> int:
    from .bench_chain import registration_command

    return registration_command(args, console)


def bench_aggregate_command(args, console: Console) -> int:
    from .bench_chain import aggregate_command

    return aggregate_command(args, console)


def bench_load_command(args, console: Console) -> int:
    from .bench_load import load_command

    return load_command(args, console)


def bench_blame_command(args, console: Console) -> int:
    from .bench_chain import blame_command

    return blame_command(args, console)


def bench_processes_command(args, console: Console) -> int:
    """The same round with every party in this process and with every party its own OS process
    (`gridshare run --processes`), side by side on one anvil: wall time, gas, payments."""
    import subprocess
    import sys
    import tempfile

    from ..chain.backends import start_anvil

    runs = {}
    with start_anvil() as node, tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("in process", []), ("processes", ["--processes"])):
            cmd = [sys.executable, "-m", "offchain.cli", "run", str(args.scenario), "--chain", node.url,
                   "--out", f"{tmp}/{len(runs)}"] + (["--prosumers", str(args.prosumers)] if args.prosumers else []) + \
                (["--seed", str(args.seed)] if args.seed is not None else []) + extra
            with console.status(f"the round, every party {label}"):
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                console.print(f"gridshare: error: the run {label} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
                return 1
            record = json.loads(Path(f"{tmp}/{len(runs)}/run.json").read_text())
            runs[label] = {"command_seconds": seconds, "round_seconds": record["timings"]["round total"],
                           "iterations": record["convergence"]["iterations"],
                           "gas_per_prosumer_per_iteration": record["gas"]["per_prosumer_per_iteration"],
                           "gas_total": record["gas"]["total"],
                           "payments": {p["name"]: p["payment"]["base_units"] for p in record["parties"] if p["payment"]}}
    a, b = runs["in process"], runs["processes"]
    out = {"scenario": str(args.scenario), "prosumers": len(a["payments"]) - 2, "runs": runs,
           "payments_identical": a["payments"] == b["payments"],
           "round_time_ratio": b["round_seconds"] / a["round_seconds"]}
    printer().print(f"{out['prosumers']} prosumers, {a['iterations']} iterations on anvil: round {a['round_seconds']:.1f} s "
                    f"in process, {b['round_seconds']:.1f} s as {out['prosumers'] + 2} processes "
                    f"({out['round_time_ratio']:.1f}x); gas per prosumer per iteration {a['gas_per_prosumer_per_iteration']:,.0f} "
                    f"and {b['gas_per_prosumer_per_iteration']:,.0f}; payments identical: {out['payments_identical']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if out["payments_identical"] else 1
