"""``gridshare bench load``: many prosumers through back-to-back private rounds on one market of an
anvil node started here, a random share of them going silent in each round (after the deadline
the attempt they missed is re-run by the others, masked among themselves), and what the chain
made of it: rounds completed, transactions failed or lost, throughput, and where the time goes
(per transaction kind and per phase).

A transaction is *lost* when it was recorded as sent but the node has no receipt of it, *failed*
when its receipt says it reverted; every mined transaction of the run's accounts (their nonces)
must be a recorded one (the ERC-20 approvals before the deposits included)."""
from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .bench_chain import BATCH, _check_json, _write, prefund
from ..errors import UsageError
from ..terminal import printer

# Market methods timed per kind of transaction (the kinds ChainTransport records)
TIMED = {"create_round": "create_round", "register_many": "register", "approve_many": "approve",
         "deposit_many": "deposit", "start": "start", "submit_many": "submit", "advance": "advance",
         "aggregate": "aggregate", "publish": "publish", "conclude": "conclude", "dispute": "dispute",
         "open_check_many": "open check", "accuse": "accuse", "challenge": "challenge", "reveal_many": "reveal",
         "settle": "settle", "open_blame_many": "open blame", "close": "close", "withdraw_many": "withdraw"}


class Clock:
    """Wall time and calls per kind of chain call, accumulated (instance methods wrapped)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.slowest: dict[str, float] = defaultdict(float)

    def wrap(self, obj: Any, method: str, kind: str) -> None:
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                self.seconds[kind] += dt
                self.calls[kind] += 1
                self.slowest[kind] = max(self.slowest[kind], dt)

        setattr(obj, method, timed)

    def snapshot(self) -> dict[str, float]:
        return dict(self.seconds)


def _drop_count(args, participants: int) -> int:
    from ..chain.market import MIN_PARTICIPANTS

    if not 0 <= args.drop_rate < 1:
        raise UsageError(f"--drop-rate must be in [0, 1), got {args.drop_rate}")
    k = round(args.drop_rate * participants)
    if k and args.drop_at >= args.iterations:
        raise UsageError(f"--drop-at {args.drop_at}: the rounds stop after --iterations {args.iterations}; "
                         "nobody would drop out")
    if participants - k < MIN_PARTICIPANTS:
        raise UsageError(f"--drop-rate {args.drop_rate} leaves {participants - k} of {participants} prosumers; a round "
                         f"needs at least {MIN_PARTICIPANTS}")
    return k


def _receipts(chain, hashes: list[str]) -> tuple[int, int]:
    """(lost, failed) among ``hashes``: no receipt, or a receipt with status 0."""
    lost = failed = 0
    for i in range(0, len(hashes), BATCH):
        for r in chain._rpc_batch([("eth_getTransactionReceipt", [h]) for h in hashes[i:i + BATCH]]):
            if r is None:
                lost += 1
            elif int(r["status"], 16) != 1:
                failed += 1
    return lost, failed


def _left(market, transport) -> int | None:
    """What is still held on the round after it (its accounts' balances and a forfeit pool nobody
    was paid from): 0 once every deposit was withdrawn; None if no round was created."""
    if not hasattr(transport, "round_id"):
        return None
    held = sum(market.balance(transport.round_id, a) for a in {a.address for a in transport.accounts.values()})
    return held + int(market.round_info(transport.round_id)["forfeited"])


def _nonces(chain, accounts) -> int:
    total = 0
    for i in range(0, len(accounts), BATCH):
        total += sum(int(x, 16) for x in chain._rpc_batch([("eth_getTransactionCount", [a.address, "latest"])
                                                           for a in accounts[i:i + BATCH]]))
    return total


def _summarise(out: dict[str, Any], rounds: list[dict[str, Any]], clock: Clock, mined: int, run_seconds: float) -> None:
    """The run's figures from its rounds so far (``out`` updated)."""
    recorded = sum(x["transactions"] for x in rounds)
    approvals = sum(x["approvals"] for x in rounds)
    completed = [x for x in rounds if x["completed"]]
    phases: dict[str, float] = defaultdict(float)
    for x in rounds:
        for k, v in x["phases"].items():
            if k != "total":
                phases[k] += v
    kinds = {k: {"seconds": round(clock.seconds[k], 2), "calls": clock.calls[k],
                 "seconds_per_call": clock.seconds[k] / clock.calls[k], "slowest_call_seconds": round(clock.slowest[k], 3),
                 "transactions": sum(x["by_kind"].get(k, 0) for x in rounds)}
             for k in sorted(clock.seconds, key=lambda k: -clock.seconds[k])}
    for k, v in kinds.items():
        v["seconds_per_transaction"] = v["seconds"] / v["transactions"] if v["transactions"] else None
    sent = [k for k in kinds if kinds[k]["transactions"]]  # "waiting out deadlines" sends none
    per_tx = {k: kinds[k]["seconds_per_transaction"] for k in sent}
    out.update({
        "rounds_run": len(rounds), "rounds_completed": len(completed),
        "rounds_failed": [{"round": x["round"], "error": x["error"]} for x in rounds if not x["completed"]],
        "converged_rounds": sum(1 for x in rounds if x["converged"]),
        "transactions": {"recorded": recorded, "erc20_approvals": approvals, "mined_by_the_accounts": mined,
                         "unaccounted": mined - recorded,
                         "lost": sum(x["lost"] for x in rounds), "failed": sum(x["failed"] for x in rounds)},
        "rounds_with_tokens_left": [x["round"] for x in rounds if x["tokens_left"]],
        "reruns": sum(n - 1 for x in rounds for n in x["attempts"].values()),
        "run_seconds": round(run_seconds, 2),
        "throughput": {"transactions_per_second": recorded / run_seconds,
                       "rounds_per_minute": len(completed) / (run_seconds / 60),
                       "seconds_per_round": float(np.mean([x["wall_seconds"] for x in completed])) if completed else None},
        "gas_per_round": float(np.mean([x["gas"] for x in completed])) if completed else None,
        "phases_seconds": {k: round(v, 2) for k, v in sorted(phases.items(), key=lambda kv: -kv[1])},
        "chain_calls": kinds,
        "slowest": {"phase": max(phases, key=phases.get) if phases else None,
                    "chain_step": next(iter(kinds), None),
                    "transaction_kind_by_total_time": sent[0] if sent else None,
                    "transaction_kind_by_time_per_transaction": max(per_tx, key=per_tx.get) if per_tx else None},
        "rounds": rounds})


def load(args, console: Console) -> dict[str, Any]:
    from ..chain.backends import connect, start_anvil
    from ..chain.market import Market, deploy_rule
    from ..models.scenario import check_key_bits
    from ..protocol.driver import run_round
    from ..protocol.transport import ChainTransport
    from ..registry import load_scenario
    from ..report import progress_bar

    key_bits = check_key_bits(args.key_bits, "--key-bits")
    _check_json(args.json)
    mechanism, scenario = load_scenario(args.scenario, prosumers=args.prosumers)
    if not hasattr(scenario, "iteration"):
        raise UsageError(f"{args.scenario}: bench load runs tariff scenarios (their iteration cap is --iterations)")
    scenario = replace(scenario, iteration=replace(scenario.iteration, max_iterations=args.iterations))
    slots, slot_bits, participants = mechanism.layout(scenario)
    k_drop = _drop_count(args, participants)
    from ..privacy.packing import SlotLayout

    SlotLayout.for_round(slots, participants, key_bits, slot_bits=slot_bits)
    with console.status(f"preparing {participants} prosumers (profiles, models, stand-alone solves)"):
        t0 = time.perf_counter()
        job = mechanism.prepare(scenario, {o.flag.lstrip("-"): o.default for o in mechanism.options})
        prepare_seconds = time.perf_counter() - t0
    rng = random.Random(args.seed)
    clock = Clock()
    rounds: list[dict[str, Any]] = []
    out: dict[str, Any] = {
        "mechanism": mechanism.name, "scenario": scenario.name, "prosumers": participants, "rounds_asked": args.rounds,
        "drop_rate": args.drop_rate, "dropped_per_round": k_drop, "drop_at": args.drop_at,
        "iteration_cap": args.iterations, "key_bits": key_bits, "verify_openings": not args.no_verify_openings,
        "prepare_seconds": round(prepare_seconds, 2)}
    with start_anvil() as node:
        chain = connect(node.url)
        setup = job.rounds[0]()
        n_accounts = 1 + len(setup.payees) + participants
        prefund(chain, n_accounts)
        accounts = chain.accounts(n_accounts)
        market = Market.deploy(chain, accounts[0])  # ChainTransport's coordinator: account 0 owns the token
        for method, kind in TIMED.items():
            clock.wrap(market, method, kind)
        clock.wrap(market.token, "mint_many", "mint")
        clock.wrap(chain, "mine_until", "waiting out deadlines")
        rules = {mechanism.rule_contract: deploy_rule(chain, mechanism.rule_contract, accounts[0])}
        out["chain"] = {"kind": "anvil", "hardfork": chain.hardfork, "market": market.address,
                        "node": "anvil --prune-history (no history on disk)"}
        nonces0 = _nonces(chain, accounts)
        block0 = chain.block_number
        t_run = time.perf_counter()
        with progress_bar(console) as bar:
            task = bar.add_task("load", total=args.rounds)
            for r in range(args.rounds):
                setup = job.rounds[0]() if r else setup
                names = [p.name for p in setup.participants]
                dropped = sorted(rng.sample(names, k_drop)) if k_drop else []
                transport = ChainTransport(chain, key_bits=key_bits, verify_openings=not args.no_verify_openings,
                                           market=market, rules=rules, drops={args.drop_at: dropped} if dropped else None)
                before, height = clock.snapshot(), chain.block_number
                bar.update(task, description=f"round {r + 1}/{args.rounds}: registration")

                def progress(k, answer, r=r):
                    bar.update(task, description=f"round {r + 1}/{args.rounds}: iteration {k + 1} of at most "
                                                 f"{args.iterations}")

                t0 = time.perf_counter()
                error, outcome = None, None
                try:
                    outcome = run_round(setup, transport, settle_unconverged=True, progress=progress)
                except Exception as exc:  # noqa: BLE001 - a failed round is this benchmark's finding
                    error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                wall = time.perf_counter() - t0
                rules = transport.rules or rules
                after = clock.snapshot()
                hashes = [t.hash for t in transport.transactions]
                lost, failed = _receipts(chain, hashes)
                by_kind: dict[str, int] = defaultdict(int)
                for t in transport.transactions:
                    by_kind[t.kind] += 1
                rounds.append({
                    "round": r + 1, "round_id": getattr(transport, "round_id", None), "error": error,
                    "first_block": height, "blocks": chain.block_number - height,
                    "completed": outcome is not None and outcome.settled,
                    "converged": outcome.converged if outcome else None,
                    "iterations": len(outcome.iterations) if outcome else None,
                    "dropped": len(transport.dropped_at), "dropped_asked": len(dropped),
                    "attempts": {str(k): a for k, a in sorted(transport.attempts.items()) if a > 1},
                    "tokens_left": _left(market, transport),
                    "wall_seconds": round(wall, 2), "transactions": len(hashes), "approvals": by_kind.get("approve", 0),
                    "by_kind": dict(by_kind), "lost": lost, "failed": failed,
                    "gas": int(sum(t.gas for t in transport.transactions)),
                    "phases": {k: round(v, 3) for k, v in (outcome.seconds if outcome else transport.seconds).items()},
                    "chain_calls": {k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after
                                    if after.get(k, 0.0) - before.get(k, 0.0) > 0}})
                bar.advance(task)
                if args.json is not None:  # the figures so far, in case the run is cut short
                    partial = dict(out, partial=True, blocks=chain.block_number - block0)
                    _summarise(partial, rounds, clock, _nonces(chain, accounts) - nonces0, time.perf_counter() - t_run)
                    args.json.write_text(json.dumps(partial, indent=2))
        run_seconds = time.perf_counter() - t_run
        mined = _nonces(chain, accounts) - nonces0
        out["blocks"] = chain.block_number - block0
    _summarise(out, rounds, clock, mined, run_seconds)
    return out


def load_command(args, console: Console) -> int:
    result = load(args, console)
    tx, tp = result["transactions"], result["throughput"]
    out = printer()
    table = Table(title=f"bench load: {result['prosumers']} prosumers x {result['rounds_run']} rounds on anvil "
                        f"({result['chain']['hardfork']}), {result['dropped_per_round']} silent per round from iteration "
                        f"{result['drop_at']}, at most {result['iteration_cap']} iterations, {result['key_bits']}-bit keys")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [("rounds completed (settled)", f"{result['rounds_completed']} of {result['rounds_run']}"),
            ("  converged before the cap", f"{result['converged_rounds']}"),
            ("attempts re-run without the dropped", f"{result['reruns']}"),
            ("rounds with tokens left after withdrawals", f"{len(result['rounds_with_tokens_left'])}"),
            ("transactions recorded (of which ERC-20 approvals)", f"{tx['recorded']:,} ({tx['erc20_approvals']:,})"),
            ("mined by the run's accounts", f"{tx['mined_by_the_accounts']:,}"),
            ("  not accounted for", f"{tx['unaccounted']:,}"),
            ("lost (no receipt)", f"{tx['lost']:,}"), ("failed (reverted)", f"{tx['failed']:,}"),
            ("wall time (s)", f"{result['run_seconds']:.1f}"),
            ("seconds per round", f"{tp['seconds_per_round']:.1f}" if tp["seconds_per_round"] else "-"),
            ("rounds per minute", f"{tp['rounds_per_minute']:.2f}"),
            ("transactions per second", f"{tp['transactions_per_second']:.1f}"),
            ("gas per round", f"{result['gas_per_round']:,.0f}" if result["gas_per_round"] else "-"),
            ("first round, last round (s)", f"{result['rounds'][0]['wall_seconds']:.1f}, "
                                            f"{result['rounds'][-1]['wall_seconds']:.1f}"),
            ("blocks (first round, all rounds)", f"{result['rounds'][0]['blocks']:,}, {result['blocks']:,}"),
            ("slowest phase", f"{result['slowest']['phase']}"),
            ("slowest chain step (total time)", f"{result['slowest']['chain_step']}"),
            ("slowest transaction kind (total time)", f"{result['slowest']['transaction_kind_by_total_time']}"),
            ("slowest transaction kind (per transaction)",
             f"{result['slowest']['transaction_kind_by_time_per_transaction']}")]
    for label, value in rows:
        table.add_row(label, value)
    for phase, seconds in result["phases_seconds"].items():
        table.add_row(f"  phase {phase} (s, all rounds)", f"{seconds:.1f}")
    for kind, v in result["chain_calls"].items():
        per = f", {1000 * v['seconds_per_transaction']:.1f} ms/tx" if v["seconds_per_transaction"] else ""
        table.add_row(f"  chain calls {kind} (s)", f"{v['seconds']:.1f}{per}")
    out.print(table)
    for f in result["rounds_failed"]:
        out.print(f"[bold red]round {f['round']} failed:[/bold red] {f['error']}", soft_wrap=True)
    for r in result["rounds_with_tokens_left"]:
        out.print(f"[bold red]round {r}: tokens left on the round after every withdrawal[/bold red]", soft_wrap=True)
    _write(args.json, result, out)
    lost = tx["lost"] or tx["failed"] or tx["unaccounted"]
    return 1 if result["rounds_failed"] or result["rounds_with_tokens_left"] or lost else 0
