"""gridshare command line: run, demo, resume, refund, deploy, audit, chain, bench.

Bad input exits with status 2 and one line ``gridshare: error: <reason>``, checked before any
heavy work; a run that does not converge says so first and exits with status 3; nothing is left
half-written and no traceback reaches the user (``GRIDSHARE_DEBUG=1`` shows it).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from . import terminal

def _process_age() -> float:
    """Seconds since this process started (interpreter start and imports included; Linux), else 0."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


STARTED = time.perf_counter() - _process_age()  # when the user pressed enter: the wall time counts from here
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_SCENARIO = PROJECT_ROOT / "scenarios" / "community10.toml"
console = Console(stderr=True)


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _int_in(low: int, high: int):
    at_least = _int_at_least(low)

    def parse(text: str) -> int:
        value = at_least(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value
    return parse


def _integer(text: str) -> int:
    return _int_at_least(-(1 << 63))(text)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"gridshare: error: {message} (see '{self.prog} --help')\n")


def _add_run_options(p: argparse.ArgumentParser, mechanism_options: bool = True) -> None:
    from .framework import MIN_PARTICIPANTS as MIN_PROSUMERS
    from .mechanisms.tariff.scenario import MAX_PROSUMERS as MAX_SCALED

    p.add_argument("--mode", choices=("chain", "private", "plaintext"), default="chain",
                   help="chain: the private round through a chain (default); private: the same protocol in process "
                        "(masked, Paillier-encrypted, no chain); plaintext: the reference mode in the clear")
    p.add_argument("--chain", metavar="URL", help="the chain: 'anvil' (a local anvil the run starts and stops, at "
                                                   "its default hardfork, its chain kept in the run folder), 'embedded' "
                                                   "(the in-process eth-tester chain, Prague) or a node's JSON-RPC URL "
                                                   "(default: the scenario's [chain] url, normally 'anvil')")
    p.add_argument("--deployment", type=Path, metavar="FILE",
                   help="run on the contracts of this deployment file (gridshare deploy, brownie scripts/deploy.py)")
    p.add_argument("--key-bits", type=_integer, help="Paillier modulus size, even, 512..8192 (default: the scenario's)")
    p.add_argument("--no-verify-openings", action="store_true",
                   help="no opening checks: participants do not check the coordinator's decryptions and nobody "
                        "may challenge them on chain (default: every opening is checked and can be challenged)")
    p.add_argument("--drop", type=_int_at_least(0), default=0, metavar="K",
                   help="simulate K participants (drawn with the seed) that crash: they go silent and the round "
                        "goes on without them, the others submitting that iteration again (default: none)")
    p.add_argument("--drop-at", type=_int_at_least(0), default=1, metavar="ITERATION",
                   help="the iteration in which the --drop participants go silent (default: %(default)s)")
    p.add_argument("--cheat", type=_int_at_least(0), default=0, metavar="K",
                   help="simulate K participants (drawn with the seed, none of the --drop ones) that encrypt other "
                        "values than they commit to: at settlement the blame step names them (one proven cheat "
                        "forfeits its deposit) and settles everyone else (chain mode; default: none)")
    p.add_argument("--prosumers", type=_int_at_least(MIN_PROSUMERS), metavar="N",
                   help=f"scale (tariff: N <= {MAX_SCALED:,}) or cut (storage-p2p: N <= the file's prosumers) the "
                        f"scenario to N prosumers, N >= {MIN_PROSUMERS} (a round's privacy minimum)")
    p.add_argument("--seed", type=_int_at_least(0), help="seed for profiles and scaling (default: the scenario's)")
    p.add_argument("--settle-unconverged", action="store_true",
                   help="settle a round that did not converge at its last prices (default: close it, nothing traded)")
    p.add_argument("--processes", action="store_true",
                   help="run every party (each prosumer, the coordinator, each payee) as its own OS process that holds "
                        "only its own keys and data and talks to the others through the chain (chain mode on a node; "
                        "default: every party in this process, the same protocol, faster)")
    p.add_argument("--out", type=Path, help="output folder for run.json and report.html (default: runs/<time>)")
    p.add_argument("--json", action="store_true", help="print the run record's summary as JSON on stdout")
    if mechanism_options:
        p.epilog = _mechanism_options_help()
        p.formatter_class = argparse.RawDescriptionHelpFormatter


def _mechanism_options_help() -> str:
    """Each mechanism's own options, in its own namespace (the scenario's mechanism parses them); a
    mechanism that does not load is named, and breaks no other command."""
    from .errors import MechanismError
    from .registry import get, names

    lines = ["options of the scenario's mechanism (each mechanism has its own):"]
    for name in names():
        try:
            options = get(name).options
        except MechanismError as exc:
            lines.append(f"  {name}: not available ({exc})")
            continue
        lines.append(f"  {name}:" + ("" if options else " none"))
        for o in options:
            lines.append(f"    {o.flag}" + (f" {{{','.join(o.choices)}}}" if o.choices else "") + f"  {o.help}")
    return "\n".join(lines)


def mechanism_parser(mechanism) -> argparse.ArgumentParser:
    """The parser of one mechanism's own options. An option that shadows one of `gridshare run`'s
    is the mechanism's error (a :class:`MechanismError`), not every command's."""
    from .errors import MechanismError

    generic = {flag for action in _run_actions() for flag in action.option_strings}
    parser = _MechanismParser(prog=f"gridshare run (mechanism {mechanism.name})", add_help=False)
    for o in mechanism.options:
        if o.flag in generic:
            raise MechanismError(f"mechanism {mechanism.name!r}: its option {o.flag} shadows gridshare run's own")
        kw = {"action": o.action} if o.action else {"type": o.type, "choices": o.choices}
        try:
            parser.add_argument(o.flag, dest=o.flag.lstrip("-").replace("-", "_"), default=o.default, help=o.help, **kw)
        except argparse.ArgumentError as exc:
            raise MechanismError(f"mechanism {mechanism.name!r}: {exc}") from None
    return parser


class _MechanismParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        from .errors import UsageError

        raise UsageError(f"{message} (see 'gridshare run --help')")


def _run_actions() -> list:
    p = argparse.ArgumentParser(add_help=True)
    _add_run_options(p, mechanism_options=False)
    return p._actions


def build_parser() -> argparse.ArgumentParser:
    from .framework import MIN_PARTICIPANTS
    from .registry import names

    parser = _Parser(prog="gridshare", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run any mechanism's scenario and write run.json + report.html",
                         description="Run a scenario of any registered mechanism (the file names it: "
                                     f"{', '.join(names())}): its private round on chain (or in process), "
                                     "its centralised reference, settlement in tokens; print the per-party table; "
                                     "write run.json (gridshare.run/2) and report.html.")
    run.add_argument("scenario", type=Path, help="scenario TOML, e.g. scenarios/community10.toml")
    _add_run_options(run)

    demo = sub.add_parser("demo", help="the one-command demo: gridshare run scenarios/community10.toml",
                          description="The one-command demo, the same as `gridshare run scenarios/community10.toml`: "
                                      "ten prosumers through one private round of the tariff mechanism on a local "
                                      "anvil the run starts and stops.")
    demo.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario TOML (default: %(default)s)")
    _add_run_options(demo)

    resume = sub.add_parser("resume", help="continue a run whose process was killed, from chain state and its key store",
                            description="Continue a run whose process was killed at any step: with the options, "
                                        "key store (keys/) and transaction journal it kept in its folder, the run "
                                        "makes the same steps again; what the chain already holds is read, not sent "
                                        "again, and the rest is done; a run on a node it started ('anvil') restarts "
                                        "that node from the chain it kept in the folder. A run on the embedded chain "
                                        "(which died with its process) or in process starts again from the beginning.")
    resume.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the killed run's --out folder")
    resume.add_argument("--json", action="store_true", help="print the run record's summary as JSON on stdout")

    refund = sub.add_parser("refund", help="get the deposits back from a round that cannot finish",
                            description="Withdraw a participant's deposit from a round: a round whose coordinator "
                                        "missed its deadline is cancelled first (anyone may), then every account "
                                        "of the key store with a balance in the round withdraws it. Exit status 1 "
                                        "when the round is still live and its coordinator on time.")
    refund.add_argument("--chain", metavar="URL", required=True, help="JSON-RPC URL of the node")
    refund.add_argument("--market", metavar="ADDRESS", required=True, help="the round contract")
    refund.add_argument("--round", type=_int_at_least(1), required=True, help="the round")
    refund.add_argument("--keys", type=Path, metavar="DIR", required=True,
                        help="the key store of the accounts that deposited: a run folder (RUN_DIR or RUN_DIR/keys) "
                             "or a deployment's <file>.keys")

    party = sub.add_parser("party", help="run one party's side of a round, as its own process",
                           description="Run one party of a chain round (a prosumer, the coordinator, a payee) to the "
                                       "round's end: it acts only on what the chain shows and on what its own folder "
                                       "holds (party.json, its account key and secrets, its agent), as `gridshare run "
                                       "--processes` writes them under RUN_DIR/parties/. A party restarted after a "
                                       "crash resumes from its folder and the chain and sends nothing twice. Exit "
                                       "status 0 when the round settled or closed.")
    party.add_argument("--chain", metavar="URL", required=True, help="JSON-RPC URL of the node")
    party.add_argument("--market", metavar="ADDRESS", required=True, help="the round contract")
    party.add_argument("--round", type=_int_at_least(1), help="the round (a participant or payee; the coordinator "
                                                               "creates its round and keeps its id)")
    party.add_argument("--name", required=True, help="the party's name, as its folder's party.json gives it")
    party.add_argument("--keys", type=Path, metavar="DIR", required=True, help="the party's folder")
    party.add_argument("--patience", type=float, default=30.0, metavar="SECONDS",
                       help="on a dev chain, how long a party waits for the others before it mines the blocks "
                            "to a deadline (default: %(default)s)")

    chain = sub.add_parser("chain", help="manage a local development chain", description="Manage a local development chain.")
    chain_sub = chain.add_subparsers(dest="chain_command", required=True, metavar="ACTION", parser_class=_Parser)
    up = chain_sub.add_parser("up", help="start anvil on 127.0.0.1 and print its URL",
                              description="Start anvil from node_modules on 127.0.0.1 (at its default hardfork "
                                          "unless --hardfork names one), print its URL, and keep it running until "
                                          "interrupted.")
    up.add_argument("--hardfork", help="e.g. prague (default: anvil's own, Osaka or later)")
    up.add_argument("--port", type=_int_in(0, 65535), default=8545, help="port (default: %(default)s; 0 picks a free one)")
    up.add_argument("--accounts", type=_int_at_least(1), default=10, help="unlocked accounts (default: %(default)s)")
    up.add_argument("--state", type=Path, metavar="FILE",
                    help="load the chain from FILE (a run's chain-state.json) if it exists, and save it there while "
                         "running and when stopped")

    comp = sub.add_parser("compile", help="compile the contracts (make install does it once)",
                          description="Compile the Solidity contracts of contracts/ and of every registered "
                                      "mechanism with the project's solc into build/contracts (a cache keyed by "
                                      "sources, settings and compiler). `make install` runs it, so that no run "
                                      "waits for the compiler; a run whose sources changed compiles them first, "
                                      "as its own timed step.")
    comp.add_argument("--force", action="store_true", help="compile again even if the cache holds these sources")

    deploy = sub.add_parser("deploy", help="deploy a mechanism's contracts and write a deployment file",
                            description="Deploy SettlementToken, the round contract PrivateRounds and the "
                                        "mechanism's rule contract, and write a deployment file (chain id, "
                                        "addresses, ABI hashes) for `gridshare run --deployment FILE`.")
    deploy.add_argument("--chain", metavar="URL", required=True, help="JSON-RPC URL of the node")
    deploy.add_argument("--mechanism", choices=names(), default="tariff", help="mechanism (default: %(default)s)")
    deploy.add_argument("--out", type=Path, default=Path("build/deployment.json"),
                        help="deployment file to write (default: %(default)s)")

    audit = sub.add_parser("audit", help="rebuild and verify a market's rounds from chain data alone",
                           description="Read a market's transactions, events and storage from a node (no keys, no run "
                                       "files) and re-verify every round: participants and key, aggregates, "
                                       "opening proofs, the mechanism's price and stop rules, settlement, token "
                                       "conservation, order of events. Exit status 1 when any check fails.")
    audit.add_argument("--chain", metavar="URL", required=True, help="JSON-RPC URL of the node")
    audit.add_argument("--market", metavar="ADDRESS", required=True, help="the round contract (printed by every run)")
    audit.add_argument("--round", type=_int_at_least(1), help="audit this round only (default: every round)")
    audit.add_argument("--from-block", type=_int_at_least(0), default=0, help="first block to read (default: 0)")
    audit.add_argument("--out", type=Path, help="output folder for audit.json and audit.html (default: runs/audit-...)")

    bench = sub.add_parser("bench", help="benchmarks", description="Benchmarks of the product's main jobs.")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH", parser_class=_Parser)
    rnd = bench_sub.add_parser("round", help="time one private round per phase, gas, private/plaintext ratio",
                               description="Run one scenario's main round in plaintext and privately on chain, side "
                                           "by side, and report wall time per phase, gas and the privacy overhead.")
    rnd.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario TOML (default: %(default)s)")
    rnd.add_argument("--prosumers", type=_int_at_least(MIN_PARTICIPANTS), metavar="N", help="scale the scenario to N prosumers")
    rnd.add_argument("--seed", type=_int_at_least(0), help="seed for profiles and scaling")
    rnd.add_argument("--chain", metavar="URL", help="JSON-RPC URL of a node (default: the embedded chain)")
    rnd.add_argument("--key-bits", type=_integer, default=2048, help="Paillier modulus size (default: %(default)s)")
    rnd.add_argument("--no-verify-openings", action="store_true", help="skip the on-chain opening checks")
    rnd.add_argument("--anvil", action="store_true", help="also start an anvil node and run the round there")
    rnd.add_argument("--json", type=Path, help="write the figures to this JSON file")
    adm = bench_sub.add_parser("admm", help="iterations, wall time and gas of the storage + P2P ADMM",
                               description="Solve one case of the shared-storage + P2P market by the centralized QP "
                                           "and the two-block ADMM side by side: prosumer solves in series, on a "
                                           "Dask cluster, and the private protocol through an anvil node started "
                                           "here (gas, settlement); report iterations and wall times.")
    adm.add_argument("--scenario", type=Path, default=PROJECT_ROOT / "scenarios" / "storage10.toml",
                     help="storage scenario TOML (default: %(default)s)")
    adm.add_argument("--case", type=int, choices=[1, 2, 3, 4], default=4, help="case (default: %(default)s)")
    adm.add_argument("--private", action="store_true", help="also run the private protocol in process")
    adm.add_argument("--workers", type=_int_at_least(1), default=2,
                     help="Dask workers for the parallel run (default: %(default)s; 1 skips it)")
    adm.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler's address instead of a local cluster")
    adm.add_argument("--no-anvil", action="store_true", help="skip the run through anvil")
    adm.add_argument("--key-bits", type=_integer, default=2048, help="Paillier key size (default: %(default)s)")
    adm.add_argument("--json", type=Path, help="write the figures to this JSON file")
    aud = bench_sub.add_parser("audit", help="time the audit of a demo round on anvil",
                               description="Run a private round on an anvil node started here, then audit it by URL; "
                                           "report the audit's time in process and as the whole command.")
    aud.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario TOML (default: %(default)s)")
    aud.add_argument("--prosumers", type=_int_at_least(MIN_PARTICIPANTS), metavar="N", help="scale the scenario to N prosumers")
    aud.add_argument("--seed", type=_int_at_least(0), help="seed for profiles and scaling")
    aud.add_argument("--json", type=Path, help="write the figures to this JSON file")
    stl = bench_sub.add_parser("settle", help="settlement gas of the storage cases, typed against hand-built input",
                               description="Settle the four storage cases' closing reveals on chain and report the "
                                           "settle gas next to the figures recorded before the typed ABI rule.")
    stl.add_argument("--json", type=Path, help="write the figures to this JSON file")
    fuz = bench_sub.add_parser("fuzz", help="random honest and hostile call sequences against the round contract",
                               description="Run hypothesis' stateful test of the round contract (offchain/tools/fuzz.py): "
                                           "random sequences of register, deposit, start, submit (honest or hostile: "
                                           "copies, made-up encryptions and masks, false mask points, cheats), "
                                           "disputes (openings, accusations), publish, challenge, reveal, settle (with "
                                           "a blame step), cancel, withdraw and hostile calls on the embedded chain, "
                                           "every invariant (token conservation, zero-sum payments, forward-only "
                                           "phases, forfeits = compensations, withdrawable deposits, no frozen round, "
                                           "the chain equal to a Python model) checked after every step; reports "
                                           "the counts (disputes, blame steps, hostile calls by kind). Exit status 1, "
                                           "with the shrunk failing sequence, if one broke.")
    fuz.add_argument("--examples", type=_int_at_least(1), default=600,
                     help="random sequences to run (hypothesis may run a few more; default: %(default)s, about 25 "
                          "minutes on 2 cores)")
    fuz.add_argument("--steps", type=_int_at_least(1), default=40, help="calls per sequence at most (default: %(default)s)")
    fuz.add_argument("--seed", type=_int_at_least(0), help="seed: the same sequences again (default: random)")
    fuz.add_argument("--json", type=Path, help="write the report to this JSON file")
    reg = bench_sub.add_parser("registration", help="gas per participant of registration and deposit, by round size",
                               description="For each round size, register every participant of a tariff round on an "
                                           "anvil node started here (its key A and first mask point Y(0), both checked "
                                           "on chain to be curve points), deposit and start it; report per "
                                           "participant the register and deposit gas, the start gas and the SecAgg+ "
                                           "neighbour degree.")
    reg.add_argument("--sizes", default="10,200", metavar="N,N,...",
                     help="round sizes, comma-separated, each at least 3 (default: %(default)s)")
    reg.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="tariff scenario TOML scaled to each size "
                                                                          "(default: %(default)s)")
    reg.add_argument("--key-bits", type=_integer, default=2048, help="Paillier modulus size (default: %(default)s)")
    reg.add_argument("--json", type=Path, help="write the figures to this JSON file")
    agg = bench_sub.add_parser("aggregate", help="chunked aggregation of a large round against the per-transaction gas cap",
                               description="Create a round of many participants on anvil nodes started here, have "
                                           "every participant submit a valid Paillier ciphertext, aggregate them in "
                                           "chunks and report the gas of every chunk against EIP-7825's cap of "
                                           "16,777,216 gas per transaction, per hardfork side by side; the aggregate "
                                           "is then opened on chain and checked against the submitted values.")
    agg.add_argument("--participants", type=_int_at_least(3), default=2000, help="participants (default: %(default)s)")
    agg.add_argument("--hardfork", action="append", metavar="NAME",
                     help="anvil hardfork to run on, repeatable; 'default' is anvil's own (default: default and prague)")
    agg.add_argument("--chunk", type=_int_at_least(1),
                     help="ciphertexts per aggregation transaction (default: the chain's, 300 from Osaka on, 450 before)")
    agg.add_argument("--key-bits", type=_integer, default=2048, help="Paillier modulus size (default: %(default)s)")
    agg.add_argument("--json", type=Path, help="write the figures to this JSON file")
    blm = bench_sub.add_parser("blame", help="gas of the blame and dispute steps, at the default hardfork and Prague",
                               description="Run the scenario's round with one hostile participant on an anvil node "
                                           "at its default hardfork and one at Prague. Blame step: it encrypts other "
                                           "values than it commits to; at settlement every other participant opens "
                                           "its final ciphertext and proves its masks (openBlame), the cheat is "
                                           "slashed. Dispute step: it masks with made-up masks; the coordinator "
                                           "disputes the attempt, every submitter opens its check values (openCheck), "
                                           "a neighbour accuses it, advance drops it and the attempt is re-run without "
                                           "it. Report the gas of each transaction; exit status 1 if a round does not "
                                           "settle.")
    blm.add_argument("--what", choices=("blame", "dispute", "both"), default="both",
                     help="the step to measure (default: %(default)s)")
    blm.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario TOML (default: %(default)s)")
    blm.add_argument("--json", type=Path, help="write the figures to this JSON file")
    prc = bench_sub.add_parser("processes", help="a round with every party in process and as its own process",
                               description="Run a scenario's round on an anvil node started here twice, side by side: "
                                           "every party in one process, then every party its own OS process "
                                           "(`gridshare run --processes`); report round and command times, gas per "
                                           "prosumer and whether the payments are identical (exit status 1 if not).")
    prc.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario TOML (default: %(default)s)")
    prc.add_argument("--prosumers", type=_int_at_least(MIN_PARTICIPANTS), metavar="N", help="scale the scenario to N prosumers")
    prc.add_argument("--seed", type=_int_at_least(0), help="seed for profiles and scaling")
    prc.add_argument("--json", type=Path, help="write the figures to this JSON file")
    lod = bench_sub.add_parser("load", help="many prosumers through back-to-back rounds with random dropouts",
                               description="Run the tariff scenario scaled to N prosumers through back-to-back private "
                                           "rounds on one market of an anvil node started here, with a random share "
                                           "of the prosumers going silent in each round (the attempt they miss is "
                                           "re-run without them); report rounds completed, failed and lost "
                                           "transactions, throughput and the slowest step.")
    lod.add_argument("--prosumers", type=_int_at_least(3), default=200, help="prosumers per round (default: %(default)s)")
    lod.add_argument("--rounds", type=_int_at_least(1), default=50,
                     help="back-to-back rounds (default: %(default)s, about 75 minutes on 2 cores: from Prague on, "
                          "anvil's time per block grows with the chain)")
    lod.add_argument("--drop-rate", type=float, default=0.1, metavar="FRACTION",
                     help="share of the prosumers that go silent in each round, [0, 1), leaving at least 3 "
                          "(default: %(default)s)")
    lod.add_argument("--drop-at", type=_int_at_least(0), default=1, metavar="ITERATION",
                     help="the iteration in which they go silent (default: %(default)s)")
    lod.add_argument("--iterations", type=_int_at_least(1), default=3, metavar="K",
                     help="iteration cap per round; a round that reaches it is settled at its last prices "
                          "(default: %(default)s)")
    lod.add_argument("--key-bits", type=_integer, default=2048, help="Paillier modulus size (default: %(default)s)")
    lod.add_argument("--no-verify-openings", action="store_true", help="rounds without opening checks")
    lod.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="tariff scenario TOML (default: %(default)s)")
    lod.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the dropouts (default: %(default)s)")
    lod.add_argument("--json", type=Path, help="write the figures to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
            if extra and args.command not in ("run", "demo"):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.mechanism_args = extra  # the scenario's mechanism parses them (its own options)
        except SystemExit as done:  # --help, or a usage error already printed as one line
            return int(done.code or 0)
        return _dispatch(args)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        if not (_interrupted or _caused_by_interrupt(exc)):
            return _failed(exc)
        return _said_interrupted()
    except KeyboardInterrupt:
        return _said_interrupted()


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether an interrupt surfaced as another error (e.g. ImportError from a module whose import
    it cut short)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _said_interrupted() -> int:
    if _running is not None and not (_running / "run.json").exists():
        console.print(f"interrupted; the run's folder keeps what it did: `gridshare resume {_running}` finishes it",
                      soft_wrap=True)
    else:
        console.print("interrupted")
    return 130


def _failed(exc: Exception) -> int:
    """One line for a failure: the error's own for a user-facing one, else an internal error."""
    from .errors import GridshareError

    if os.environ.get("GRIDSHARE_DEBUG"):
        raise exc
    if isinstance(exc, GridshareError):
        print(f"gridshare: error: {exc}", file=sys.stderr)
        return exc.exit_code
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(f"gridshare: internal error: {type(exc).__name__}: {first} (GRIDSHARE_DEBUG=1 shows the traceback)",
          file=sys.stderr)
    return 1


_running: Path | None = None  # the folder of the run in progress, for the hint on an interruption
_interrupted = False  # a SIGTERM arrived


def _stop_on_sigterm() -> None:
    """A `kill` (SIGTERM) stops like Ctrl-C does: journals flushed, the lock released, a hint printed."""
    import signal

    def stop(*_):
        global _interrupted
        _interrupted = True  # even if the interrupt surfaces as another error
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # once: a second kill is not caught
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def _dispatch(args) -> int:
    if args.command in ("run", "demo"):
        return _run(args)
    if args.command == "resume":
        return _resume(args)
    if args.command == "refund":
        from .refund import refund_command

        return refund_command(args)
    if args.command == "deploy":
        return _deploy(args)
    if args.command == "audit":
        from .audit.command import audit_command

        return audit_command(args, console)
    if args.command == "party":
        from .protocol.parties import party_command

        return party_command(args, console)
    if args.command == "chain":
        return _chain_up(args)
    if args.command == "compile":
        return _compile(args)
    from .tools import bench
    from .errors import OutputError

    if args.json is not None:  # before the benchmark runs, not after
        OutputError.check_file(args.json, "--json file")
    return {"round": bench.bench_round_command, "audit": bench.bench_audit_command,
            "admm": bench.bench_admm_command, "settle": bench.bench_settle_command,
            "fuzz": bench.bench_fuzz_command, "registration": bench.bench_registration_command,
            "aggregate": bench.bench_aggregate_command, "load": bench.bench_load_command,
            "blame": bench.bench_blame_command, "processes": bench.bench_processes_command}[args.bench_command](args, console)


def _run(args) -> int:
    import datetime as dt

    from .report import check_output_dir
    from .runner import RunOptions, prepare

    scenario = args.scenario
    out = args.out or Path("runs") / dt.datetime.now().strftime(f"{scenario.stem}-%Y%m%d-%H%M%S")
    check_output_dir(out)
    options = RunOptions(mode=args.mode, chain_url=args.chain, key_bits=args.key_bits, run_dir=out,
                         verify_openings=False if args.no_verify_openings else None, deployment=args.deployment,
                         settle_unconverged=args.settle_unconverged, prosumers=args.prosumers, seed=args.seed,
                         drop=args.drop, drop_at=args.drop_at, cheat=args.cheat, processes=args.processes)
    from .registry import load_scenario

    mechanism, _ = load_scenario(scenario, prosumers=args.prosumers, seed=args.seed)
    options.mechanism_options = _mechanism_options(mechanism, args.mechanism_args, scenario)
    prepared = prepare(scenario, options)  # checks the mechanism's options too; a node it starts is its last step
    try:
        from .runner import keep_run

        keep_run(prepared, scenario, out)
        return _execute(prepared, out, args)
    finally:
        prepared.close()


def _mechanism_options(mechanism, extra: list[str], scenario: Path) -> dict:
    """The scenario's mechanism's own options from the command line (its defaults for the rest);
    an option of another mechanism, or none's, is a usage error naming it."""
    from .errors import MechanismError, UsageError
    from .registry import get, names

    values, unknown = mechanism_parser(mechanism).parse_known_args(extra)
    for arg in unknown:
        flag = arg.split("=")[0]
        for name in names():
            try:
                if name != mechanism.name and any(o.flag == flag for o in get(name).options):
                    raise UsageError(f"{flag} is an option of the {name} mechanism; {scenario} runs {mechanism.name}")
            except MechanismError:
                continue
        if flag.startswith("-"):
            raise UsageError(f"unrecognized argument {flag} (see 'gridshare run --help')")
        raise UsageError(f"unrecognized argument {arg!r}")
    return vars(values)


def _resume(args) -> int:
    from .runner import prepare, resume_options, run_progress

    scenario, options = resume_options(args.run_dir)
    before = run_progress(args.run_dir)  # read before the resumed run writes its lines again
    options.run_dir = args.run_dir
    prepared = prepare(scenario, options)
    try:
        return _resume_prepared(args, scenario, prepared, before)
    finally:
        prepared.close()


def _resume_prepared(args, scenario, prepared, before: list[dict]) -> int:
    from .chain.backends import ContractRevert
    from .runner import ended_round, keep_run

    if prepared.chain is None or prepared.chain.kind != "rpc":
        console.print(f"{args.run_dir}: the killed run's {'chain lived' if prepared.chain else 'round ran'} in its "
                      "process and ended with it; running it again from the beginning", soft_wrap=True)
    else:
        ended = ended_round(prepared, before, args.run_dir)
        if ended is not None:  # nothing to send: say what happened on chain instead
            print(f"gridshare: {ended}", file=sys.stderr)
            return 1
    keep_run(prepared, scenario, args.run_dir, resumed=True)
    try:
        code = _execute(prepared, args.run_dir, args)
    except ContractRevert as exc:  # e.g. a deadline passed while the run was down
        created = [x["created"] for x in before if "created" in x]
        where = (f"`gridshare refund --chain {created[-1]['url']} --market {created[-1]['market']} --round "
                 f"{created[-1]['round_id']} --keys {args.run_dir}` returns the deposits once the round's deadlines "
                 "have passed" if created else "no round was created, so no deposit is held")
        print(f"gridshare: error: the resumed run cannot go on: the chain refused {exc}; {where}", file=sys.stderr)
        return 1
    journal = prepared.chain.journal if prepared.chain is not None else None
    if journal is not None:
        done = [x["iteration"] for x in before if "iteration" in x]
        console.print(f"resumed {args.run_dir} after iteration {done[-1]}" if done else f"resumed {args.run_dir}",
                      f"({len(done)} iteration(s) done before the kill): {journal.reused} journaled transaction(s) "
                      f"reused, {journal.sent} sent", soft_wrap=True)
    return code


def _execute(prepared, out: Path, args) -> int:
    import json

    from .report import party_table, progress_bar, render
    from .runner import execute, exit_code, not_converged_line, wall_line

    global _running
    _running = out
    _stop_on_sigterm()
    timings = {}
    with progress_bar(console) as bar:
        task = bar.add_task("preparing the scenario (profiles, models)", total=None)
        if prepared.chain is not None:
            from .chain.compiler import compile_contracts, compiled

            if not compiled():  # a fresh checkout without `make install`, or edited contracts
                bar.update(task, description="compiling the contracts (once per change of the sources)")
                t0 = time.perf_counter()
                compile_contracts()
                timings["compile"] = time.perf_counter() - t0

        def progress(label, k, answer):
            if k is None:
                bar.update(task, description=label, total=None, completed=0)
            else:
                bar.update(task, description=f"{label}: iteration {k}", completed=k + 1, total=None)

        def count(what, done, total):
            bar.update(task, description=what, completed=done, total=total)

        record = execute(prepared, progress, count)
        data = record.to_dict()
        bar.update(task, description="drawing the figures, writing run.json and report.html", total=None, completed=0)
        t0 = time.perf_counter()

        def finish(record: dict) -> None:  # the last moment before run.json is written
            record["timings"] = {**{k: round(v, 4) for k, v in timings.items()},
                                 **{k: v for k, v in record["timings"].items() if k != "wall"},
                                 "report": round(time.perf_counter() - t0, 4),
                                 "wall": round(time.perf_counter() - STARTED, 4)}
            record["summary"] = [(k, wall_line(record["timings"]) if k == "wall time (s)" else v)
                                 for k, v in record["summary"]]

        render(out, data, prepared.mechanism.figures(data), finish)
    printer = terminal.printer()
    code = exit_code(record)
    if code:
        printer.print(f"[bold red]{not_converged_line(record)}[/bold red]", soft_wrap=True)
    if args.json:
        print(json.dumps({k: data[k] for k in ("mechanism", "chain", "convergence", "gas", "timings", "summary")},
                         indent=2, default=str))
    else:
        printer.print(party_table(data))
        for key, value in data["summary"]:
            printer.print(f"[bold]{key}:[/bold] {value}", soft_wrap=True)
        market = data["chain"]["contracts"]["market"] if data["chain"] else None
        if data["chain"] and data["chain"]["kind"] == "anvil":
            printer.print(f"verify it from chain data: the node this run started is stopped, its chain kept in "
                          f"{data['chain']['state']}; `gridshare chain up --state {data['chain']['state']}` serves "
                          f"it again for `gridshare audit --chain URL --market {market}`", soft_wrap=True)
        elif data["chain"] and data["chain"]["url"]:
            printer.print(f"verify it from chain data: gridshare audit --chain {data['chain']['url']} "
                          f"--market {market}", soft_wrap=True)
        printer.print(f"[bold]written:[/bold] {out / 'run.json'}, {out / 'report.html'}")
    return code


def _compile(args) -> int:
    from .chain.compiler import BUILD_DIR, compile_contracts, compiled
    from .errors import MechanismError
    from .registry import get, names

    for name in names():  # their rule contracts' sources join the compilation
        try:
            get(name)
        except MechanismError as exc:  # a broken mechanism breaks only its own commands
            print(f"gridshare: warning: {exc}; its rule contract is not compiled", file=sys.stderr)
    if compiled() and not args.force:
        print(f"contracts up to date in {BUILD_DIR}")
        return 0
    t0 = time.perf_counter()
    with console.status("compiling the contracts"):
        artifacts = compile_contracts(force=args.force)
    print(f"compiled {len(artifacts)} contracts in {time.perf_counter() - t0:.1f} s into {BUILD_DIR}")
    return 0


def _deploy(args) -> int:
    from .chain.backends import connect
    from .chain.deployment import check_deployment_path, operator_keys, write_deployment
    from .chain.market import Market, deploy_rule
    from .registry import get

    check_deployment_path(args.out)
    mechanism = get(args.mechanism)
    chain = connect(args.chain)
    chain.check_rules()
    chain.account_seed = operator_keys(args.out).account_seed()
    operator = chain.accounts(1)[0]
    market = Market.deploy(chain, operator)
    rule = deploy_rule(chain, mechanism.rule_contract, operator)
    write_deployment(args.out, chain, mechanism, market, rule, operator.address)
    print(f"mechanism {mechanism.name}: market {market.address}, token {market.token.address}, "
          f"rule {mechanism.rule_contract} {rule}; written: {args.out} (the operator's key: "
          f"{operator_keys(args.out).folder})")
    return 0


def _chain_up(args) -> int:
    import signal

    from .chain.backends import start_anvil

    _stop_on_sigterm()  # the node stops with us instead of being orphaned
    # a node users query (`cast call --block N`) keeps its past states
    if args.state is not None:
        from .errors import OutputError

        OutputError.check_file(args.state, "--state file")
    with start_anvil(accounts=args.accounts, port=args.port, hardfork=args.hardfork, prune_history=False,
                     state=args.state) as node:
        print(node.url, flush=True)
        console.print(f"anvil ({args.hardfork or 'default hardfork'}) listening on {node.url}; Ctrl-C stops it")
        try:
            while node.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
