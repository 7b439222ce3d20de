"""gridshare command line: demo, run, deploy, audit, chain, bench.

Bad input exits with status 2 and one line ``gridshare: error: <reason>``; nothing is written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = PROJECT_ROOT / "scenarios" / "community10.toml"
console = Console(stderr=True)


class UserError(Exception):
    """A problem with the user's input: reported in one line, exit status 2."""


def _positive_int(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _add_round_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario TOML (default: %(default)s)")
    p.add_argument("--prosumers", type=_positive_int(2), help="scale the scenario to N prosumers (N >= 2)")
    p.add_argument("--seed", type=int, help="seed for profiles and scaling (default: the scenario's)")
    p.add_argument("--chain", metavar="URL", help="JSON-RPC URL of a node (default: the embedded eth-tester chain)")
    p.add_argument("--key-bits", type=_positive_int(512), default=2048, help="Paillier modulus size (default: %(default)s)")
    p.add_argument("--no-verify-openings", action="store_true",
                   help="skip the on-chain check of each decryption's opening proof (2.8M gas per iteration)")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"gridshare: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gridshare", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser("demo", help="run a full private trading round and write run.json + report.html",
                          description="Run a full private trading round of the tariff mechanism: encrypted bids on "
                                      "chain, on-chain aggregation, tariff iteration, settlement in tokens.")
    _add_round_options(demo)
    demo.add_argument("--out", type=Path, help="output folder for run.json and report.html (default: runs/<time>)")
    demo.add_argument("--deployment", type=Path, metavar="FILE",
                      help="run on the market of this deployment file (gridshare deploy, brownie scripts/deploy.py)")
    demo.add_argument("--json", action="store_true", help="print the run summary as JSON on stdout")

    chain = sub.add_parser("chain", help="manage a local development chain",
                           description="Manage a local development chain.")
    chain_sub = chain.add_subparsers(dest="chain_command", required=True, metavar="ACTION", parser_class=_Parser)
    up = chain_sub.add_parser("up", help="start anvil (Prague) on 127.0.0.1 and print its URL",
                              description="Start anvil from node_modules with --hardfork prague on 127.0.0.1, "
                                          "print its URL, and keep it running until interrupted.")
    up.add_argument("--port", type=int, default=8545, help="port (default: %(default)s; 0 picks a free one)")
    up.add_argument("--accounts", type=_positive_int(1), default=10, help="unlocked accounts (default: %(default)s)")

    run = sub.add_parser("run", help="the shared-storage + P2P market of paper A, case by case",
                         description="Solve the shared-storage capacity renting + P2P market (paper A) for one or all "
                                     "of its four cases (1 grid only, 2 P2P, 3 shared storage, 4 both) by the "
                                     "centralized QP or the two-block ADMM (plaintext, private in process, or the "
                                     "private protocol through a chain with settlement in tokens); print the cost "
                                     "table; write run.json and report.html.")
    run.add_argument("scenario", type=Path, help="storage scenario TOML, e.g. scenarios/storage10.toml")
    run.add_argument("--case", choices=["1", "2", "3", "4", "all"], default="all", help="case (default: all)")
    run.add_argument("--method", choices=["qp", "admm", "admm-private", "chain"],
                     help="centralized QP, plaintext ADMM, ADMM with Paillier-encrypted masked messages in process, "
                          "or that private protocol through a chain, settled in tokens (default: admm; chain "
                          "when --chain is given)")
    run.add_argument("--chain", metavar="URL", help="run --method chain on this JSON-RPC node "
                                                     "(default: the embedded eth-tester chain)")
    run.add_argument("--key-bits", type=_positive_int(512), default=2048,
                     help="Paillier key size for admm-private and chain (default: %(default)s)")
    run.add_argument("--prosumers", type=_positive_int(2), help="only the scenario's first N prosumers")
    run.add_argument("--privacy", action="store_true",
                     help="also run paper A's inference test: the storage operator estimates a prosumer's "
                          "Lagrangian gradient from what it sees, in plain ADMM and in the private protocol")
    run.add_argument("--seed", type=int, help="seed for profiles (default: the scenario's)")
    run.add_argument("--out", type=Path, help="output folder for run.json and report.html (default: runs/<time>)")

    deploy = sub.add_parser("deploy", help="deploy the market contracts and write a deployment file",
                            description="Deploy SettlementToken and TariffMarket and write a deployment file "
                                        "(chain id, addresses, ABI hashes) for `gridshare demo --deployment FILE`.")
    deploy.add_argument("--chain", metavar="URL", required=True, help="JSON-RPC URL of the node")
    deploy.add_argument("--out", type=Path, default=Path("build/deployment.json"),
                        help="deployment file to write (default: %(default)s)")

    audit = sub.add_parser("audit", help="rebuild and verify a market's rounds from chain data alone",
                           description="Read a market's transactions, events and storage from a node (no keys, no run "
                                       "files) and re-verify every round: participants and key, aggregates, "
                                       "opening proofs, tariff updates, stop rule, settlement, token conservation, "
                                       "order of events. Exit status 1 when any check fails.")
    audit.add_argument("--chain", metavar="URL", required=True, help="JSON-RPC URL of the node")
    audit.add_argument("--market", metavar="ADDRESS", required=True, help="the market contract (printed by the demo)")
    audit.add_argument("--round", type=_positive_int(1), help="audit this round only (default: every round)")
    audit.add_argument("--from-block", type=_positive_int(0), default=0, help="first block to read (default: 0)")
    audit.add_argument("--out", type=Path, help="output folder for audit.json and audit.html (default: runs/audit-...)")

    bench = sub.add_parser("bench", help="benchmarks", description="Benchmarks of the product's main jobs.")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH", parser_class=_Parser)
    rnd = bench_sub.add_parser("round", help="time one private round per phase, gas, private/plaintext ratio",
                               description="Run the plaintext and the private round of one scenario side by side "
                                           "and report wall time per phase, gas and the privacy overhead.")
    _add_round_options(rnd)
    rnd.add_argument("--anvil", action="store_true", help="also start an anvil node and run the round there")
    rnd.add_argument("--json", type=Path, help="write the figures to this JSON file")
    adm = bench_sub.add_parser("admm", help="iterations, wall time and gas of the storage + P2P ADMM",
                               description="Solve one case of the shared-storage + P2P market by the centralized QP "
                                           "and the two-block ADMM side by side: prosumer solves in series, on a "
                                           "Dask local cluster, and the private protocol through an anvil node "
                                           "started here (gas, settlement); report iterations and wall times.")
    adm.add_argument("--scenario", type=Path, default=PROJECT_ROOT / "scenarios" / "storage10.toml",
                     help="storage scenario TOML (default: %(default)s)")
    adm.add_argument("--case", type=int, choices=[1, 2, 3, 4], default=4, help="case (default: %(default)s)")
    adm.add_argument("--private", action="store_true", help="also run the private protocol in process")
    adm.add_argument("--workers", type=_positive_int(1), default=2,
                     help="Dask workers for the parallel run (default: %(default)s; 1 skips it)")
    adm.add_argument("--no-anvil", action="store_true", help="skip the run through anvil")
    adm.add_argument("--key-bits", type=_positive_int(512), default=2048,
                     help="Paillier key size (default: %(default)s)")
    adm.add_argument("--json", type=Path, help="write the figures to this JSON file")
    aud = bench_sub.add_parser("audit", help="time the audit of a demo round on anvil",
                               description="Run a private round on an anvil node started here, then audit it by URL; "
                                           "report the audit's time in process and as the whole command.")
    aud.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario TOML (default: %(default)s)")
    aud.add_argument("--prosumers", type=_positive_int(2), help="scale the scenario to N prosumers (N >= 2)")
    aud.add_argument("--seed", type=int, help="seed for profiles and scaling")
    aud.add_argument("--json", type=Path, help="write the figures to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.chain and args.method not in (None, "chain"):
            parser.error(f"--chain runs the on-chain protocol: use it with --method chain, not {args.method}")
        args.method = args.method or ("chain" if args.chain else "admm")
    try:
        if args.command == "demo":
            from .runner import demo_command
            return demo_command(args, console)
        if args.command == "run":
            from .storage_run import run_command
            return run_command(args, console)
        if args.command == "deploy":
            return _deploy(args)
        if args.command == "audit":
            from .audit.command import audit_command
            return audit_command(args, console)
        if args.command == "chain":
            return _chain_up(args)
        if args.command == "bench":
            from . import bench
            command = {"round": bench.bench_round_command, "audit": bench.bench_audit_command,
                       "admm": bench.bench_admm_command}[args.bench_command]
            return command(args, console)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - every user-facing failure becomes one line
        from .runner import user_error_types
        if isinstance(exc, (UserError, *user_error_types())):
            print(f"gridshare: error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


def _deploy(args) -> int:
    from .chain.backends import connect
    from .chain.deployment import write_deployment
    from .chain.market import Market
    chain = connect(args.chain)
    operator = chain.accounts(1)[0]
    market = Market.deploy(chain, operator)
    write_deployment(args.out, chain, market, operator.address)
    print(f"market {market.address}, token {market.token.address}; written: {args.out}")
    return 0


def _chain_up(args) -> int:
    import signal

    from .chain.backends import start_anvil

    # a `kill` (SIGTERM) stops the node like Ctrl-C does, instead of orphaning it
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with start_anvil(accounts=args.accounts, port=args.port) as node:
        print(node.url, flush=True)
        console.print(f"anvil (hardfork prague) listening on {node.url}; Ctrl-C stops it")
        try:
            while node.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
