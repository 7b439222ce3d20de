"""``gridshare audit``: read a market from a node, verify every round, report."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from eth_utils import is_address, to_checksum_address
from rich.console import Console

from ..chain.backends import Chain, ChainError, connect
from ..errors import UsageError
from ..terminal import printer
from ..report import audit_figures, check_output_dir, progress_bar, write_run
from .history import MarketHistory
from .reader import read_market_transactions
from .verify import Finding, audit_market

AUDIT_SCHEMA = "gridshare.audit/1"


def run_audit(chain: Chain, market: str, round_id: int | None = None, from_block: int = 0,
              progress=None) -> tuple[list[Finding], dict]:
    """Findings and plot series of ``market``'s rounds, from chain data alone."""
    if not is_address(market):
        raise ChainError(f"{market!r} is not an address")
    market = to_checksum_address(market)
    if not chain.w3.eth.get_code(market):
        raise ChainError(f"no contract at {market} on {chain.url or 'the embedded chain'}")
    history = MarketHistory(market, read_market_transactions(chain, market, from_block, progress=progress))
    if not history.round_ids() and not history.events:
        raise ChainError(f"{market} has no market history (is it a gridshare market?)")
    return audit_market(chain, history, round_id, from_block)


MARKS = {"PASS": "[green]PASS[/green]", "NOTE": "[cyan]NOTE[/cyan]", "CULPRIT": "[bold yellow]CULPRIT[/bold yellow]",
         "FAIL": "[bold red]FAIL[/bold red]"}


def _kind(f: Finding) -> str:
    return "FAIL" if not f.ok else "CULPRIT" if f.culprit else "NOTE" if f.note else "PASS"


def audit_command(args, console: Console) -> int:
    out = args.out or Path("runs") / dt.datetime.now().strftime(f"audit-{args.market[:10]}-%Y%m%d-%H%M%S")
    check_output_dir(out)
    chain = connect(args.chain)
    if args.from_block > chain.block_number:
        raise UsageError(f"--from-block {args.from_block} is past the chain's head (block {chain.block_number})")
    t0 = time.perf_counter()
    with progress_bar(console) as bar:
        task = bar.add_task("reading blocks", total=None)
        findings, series = run_audit(chain, args.market, args.round, args.from_block,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
    seconds = time.perf_counter() - t0
    failed = [f for f in findings if not f.ok]
    culprits = [f for f in findings if f.culprit]
    checks = [f for f in findings if not f.note and not f.culprit]
    show = printer()
    for f in findings:
        where = f"round {f.round}" + (f" iteration {f.iteration}" if f.iteration is not None else "") if f.round else ""
        line = f"{MARKS[_kind(f)]}  {f.check:<20} {where:<22} {f.detail}"
        if _kind(f) != "PASS" and f.tx:
            line += f"  (tx {f.tx}, block {f.block})"
        show.print(line, soft_wrap=True)
    notes = len(findings) - len(checks) - len(culprits)
    verdict = ("every check passed" if not failed else f"{len(failed)} of {len(checks)} checks failed") + \
        (f", {len(culprits)} culprit(s) named and punished" if culprits else "") + (f", {notes} notes" if notes else "")
    show.print(f"[bold]{verdict}[/bold] ({seconds:.2f} s); written: {out / 'audit.json'}, {out / 'audit.html'}",
                  soft_wrap=True)
    report = {"schema": AUDIT_SCHEMA, "market": to_checksum_address(args.market), "chain": args.chain,
              "chain_id": chain.chain_id, "round": args.round, "seconds": seconds, "passed": not failed,
              "findings": [f.to_dict() for f in findings],
              "series": {str(k): v for k, v in series.items()}}
    rows = [("market", report["market"]), ("chain", f"{args.chain} (chain id {chain.chain_id})"),
            ("verdict", verdict)] + [(f"{_kind(f)} {f.check}" + (f" (round {f.round})" if f.round else ""),
                                      f"{f.detail}" + (f" (tx {f.tx}, block {f.block})" if f.tx else ""))
                                     for f in findings if _kind(f) != "PASS"]
    write_run(out, report, audit_figures(series), f"gridshare audit of {report['market']}", rows,
              names=("audit.json", "audit.html"))
    return 1 if failed else 0
