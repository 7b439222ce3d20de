"""``gridshare run SCENARIO``: any registered mechanism's job, end to end, and its run record.

Order of work: everything that can be wrong with the input is checked first (the scenario, the
mechanism's options, the key size against the slot layout, the output folder, the chain URL and a
deployment file), then the mechanism prepares its rounds (profiles, models), the plaintext mode
runs where the mechanism asks for it, the main mode runs every round (on a chain by default),
the centralised reference is solved, and the record is assembled from what the driver returned.
"""
from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NOT_CONVERGED_EXIT, ChainError, UsageError
from .framework import Mechanism
from .record import Convergence, Iteration, Party, Payment, Round, RunRecord, software

MODES = ("chain", "private", "plaintext")


@dataclass
class RunOptions:
    mode: str = "chain"
    chain_url: str | None = None  # None: the scenario's [chain] url
    key_bits: int | None = None  # None: the scenario's [privacy] key_bits
    verify_openings: bool | None = None
    deployment: Path | None = None
    settle_unconverged: bool = False
    prosumers: int | None = None
    seed: int | None = None
    mechanism_options: dict[str, Any] = field(default_factory=dict)
    executor: Any = None
    run_dir: Path | None = None  # where a node the run starts keeps its chain (chain-state.json)
    drop: int = 0  # participants that go silent (simulated crashes) ...
    drop_at: int = 1  # ... from this iteration on
    cheat: int = 0  # participants that encrypt other values than they commit to (found by the blame step)
    processes: bool = False  # every party its own OS process (chain mode on a node)

    KEPT = ("mode", "chain_url", "key_bits", "verify_openings", "deployment", "settle_unconverged", "prosumers",
            "seed", "mechanism_options", "drop", "drop_at", "cheat", "processes")  # what run-options.json keeps for a resume


@dataclass
class Prepared:
    """A run whose input was checked: nothing heavy has happened yet."""
    mechanism: Mechanism
    scenario: Any
    options: RunOptions
    chain: Any = None
    market: Any = None
    rules: dict[str, str] = field(default_factory=dict)
    store: Any = None  # the run folder's KeyStore (keep_run; runs on a node only)
    log: Any = None  # appends a line to the run folder's progress.jsonl
    node: Any = None  # the anvil the run started (chain "anvil"), stopped by close()

    def close(self) -> None:
        """Stops the node the run started (which saves its chain in the run folder)."""
        if self.node is not None:
            self.node.stop()
            self.node = None


def prepare(scenario_path: Path, options: RunOptions) -> Prepared:
    """Loads and checks the scenario, the options, the key size and the chain (cheap)."""
    from .models.scenario import check_key_bits
    from .registry import load_scenario

    if options.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    mechanism, scenario = load_scenario(scenario_path, prosumers=options.prosumers, seed=options.seed)
    mechanism.check_options(scenario, options.mechanism_options)
    options.key_bits = check_key_bits(options.key_bits if options.key_bits is not None else scenario.privacy.key_bits,
                                      "--key-bits")
    if options.verify_openings is None:
        options.verify_openings = scenario.privacy.verify_openings
    slots, slot_bits, participants = mechanism.layout(scenario)
    _check_drops(options, participants, mechanism.iteration_cap(scenario))
    _check_processes(options, mechanism, scenario)
    if slots and options.mode != "plaintext":
        from .privacy.packing import SlotLayout

        SlotLayout.for_round(slots, participants, options.key_bits, slot_bits=slot_bits)
    prepared = Prepared(mechanism, scenario, options)
    if options.mode == "chain":
        from .chain.backends import connect

        url = options.chain_url or scenario.chain.url
        if url == ANVIL:  # the last check: nothing below fails on a node the run started
            prepared.node = _start_node(options, participants)
            url = prepared.node.url
        try:
            prepared.chain = connect(None if url == "embedded" else url)
            prepared.chain.check_rules()
        except BaseException:
            if prepared.node is not None:
                prepared.node.proc.kill()  # gone without saving anything
            raise
        if prepared.node is not None:
            prepared.chain.started_here = True
            prepared.chain.state_file = options.run_dir / CHAIN_STATE if options.run_dir else None
        if options.deployment is not None:
            from .chain.deployment import load_deployment, operator_keys

            prepared.market, prepared.rules = load_deployment(options.deployment, prepared.chain, mechanism)
            if prepared.chain.kind == "rpc":
                prepared.chain.account_seed = operator_keys(options.deployment, existing=True).account_seed()
            owner, operator = prepared.market.token.owner(), prepared.chain.accounts(1)[0].address
            if owner != operator:
                raise ChainError(f"{options.deployment}: the token's owner is {owner}; the run's coordinator "
                                 f"{operator} must own it to mint collateral")
    elif options.deployment is not None or options.chain_url:
        raise UsageError(f"--chain and --deployment run the chain mode, not --mode {options.mode}")
    return prepared


ANVIL = "anvil"  # the chain "URL" of a local anvil the run starts and stops itself
CHAIN_STATE = "chain-state.json"  # where that node keeps its chain, in the run folder


def _start_node(o: RunOptions, participants: int):
    """A local anvil at its default hardfork, bound to this process; its chain is
    kept in the run folder (loaded from there when a killed run is resumed)."""
    from .chain.backends import start_anvil

    if o.deployment is not None:
        raise UsageError("--deployment needs the node it was deployed on (--chain URL); the chain 'anvil' is a "
                         "fresh node the run starts")
    return start_anvil(state=o.run_dir / CHAIN_STATE if o.run_dir else None)


def _check_processes(o: RunOptions, mechanism, scenario) -> None:
    if not o.processes:
        return
    if o.mode != "chain" or (o.chain_url or scenario.chain.url) == "embedded":
        raise UsageError("--processes runs the parties on a node (--chain anvil or a URL): the embedded chain lives "
                         "inside one process")
    if o.drop or o.cheat:
        raise UsageError("--drop and --cheat simulate parties inside one process; with --processes, stop a party's "
                         "process instead (`gridshare party` resumes it)")
    if mechanism.processes_unsupported:
        raise UsageError(f"--processes: the {mechanism.name} mechanism cannot run as processes yet: "
                         f"{mechanism.processes_unsupported}")


def _check_drops(o: RunOptions, participants: int, cap: int | None) -> None:
    from .chain.market import MIN_PARTICIPANTS

    if participants < MIN_PARTICIPANTS:
        raise UsageError(f"a round needs at least {MIN_PARTICIPANTS} participants (the privacy minimum), "
                         f"the scenario has {participants}")
    if o.drop < 0 or o.drop_at < 0:
        raise UsageError(f"--drop and --drop-at must not be negative, got {o.drop} and {o.drop_at}")
    if o.cheat < 0:
        raise UsageError(f"--cheat must not be negative, got {o.cheat}")
    if o.cheat and (o.mode != "chain" or o.verify_openings is False):
        raise UsageError("--cheat needs the chain mode with checked openings: the blame step runs on chain")
    if o.cheat and participants - o.drop - o.cheat < 1:
        raise UsageError(f"--cheat {o.cheat} with --drop {o.drop} leaves no honest participant of {participants}")
    if o.drop and cap is not None and o.drop_at >= cap:
        raise UsageError(f"--drop-at {o.drop_at} never comes: the round runs iterations 0..{cap - 1} at most")
    if o.drop_at != 1 and not o.drop:
        raise UsageError(f"--drop-at {o.drop_at} without --drop: nobody would drop")
    if o.drop and participants - o.drop < MIN_PARTICIPANTS:
        raise UsageError(f"--drop {o.drop} leaves {participants - o.drop} of {participants} participants; a round "
                         f"needs at least {MIN_PARTICIPANTS}")


def _drops(o: RunOptions, setup) -> dict[int, list[str]]:
    """Who goes silent when: ``--drop`` participants, drawn with the run's seed, from ``--drop-at`` on."""
    if not o.drop:
        return {}
    import random

    names = [q.name for q in setup.participants]
    chosen = set(random.Random(o.seed or 0).sample(names, o.drop))
    return {o.drop_at: [n for n in names if n in chosen]}


def _cheats(o: RunOptions, setup, drops: dict[int, list[str]]) -> list[str]:
    """Who encrypts other values than it commits to: ``--cheat`` participants, drawn with the
    run's seed, none of the dropped."""
    if not o.cheat:
        return []
    import random

    gone = {n for names in drops.values() for n in names}
    names = [q.name for q in setup.participants if q.name not in gone]
    chosen = set(random.Random((o.seed or 0) + 1).sample(names, o.cheat))
    return [n for n in names if n in chosen]


def _transport(p: Prepared, drops: dict[int, list[str]], index: int, cheats: list[str] = ()):
    from .protocol.transport import ChainTransport, PrivateTransport

    o = p.options
    if o.mode == "chain":
        kept = (lambda party: p.store.party(f"round{index}-{party}")) if p.store is not None else None
        announce = (lambda where: p.log({"round index": index, "created": where})) if p.log is not None else None
        return ChainTransport(p.chain, key_bits=o.key_bits, verify_openings=o.verify_openings, market=p.market,
                              rules=p.rules, drops=drops, windows=p.scenario.chain.windows, kept=kept,
                              behaviours=dict.fromkeys(cheats, "cheat"), announce=announce)
    return PrivateTransport(o.key_bits, drops=drops)


RUN_OPTIONS = "run-options.json"


def keep_run(p: Prepared, scenario_path: Path, out: Path, resumed: bool = False) -> None:
    """Makes ``out`` a run folder a killed run can be resumed from (``gridshare resume``): the
    run's options (run-options.json), and on a node its key store (keys/, see
    :mod:`offchain.keystore`) and the journal of every transaction it sends
    (transactions.jsonl); progress.jsonl grows by one line per iteration."""
    import json

    from .keystore import KeyStore
    from .report import write_atomically

    out.mkdir(parents=True, exist_ok=True)
    lock_run_folder(out)
    if not resumed:
        if any(f.name != RUN_LOCK for f in out.iterdir()):  # another run wrote here since the early check
            release_run_folder(out)
            raise UsageError(f"output folder {out} was just taken by another run; choose a new --out")
        kept = {k: getattr(p.options, k) for k in RunOptions.KEPT}
        kept["deployment"] = str(Path(kept["deployment"]).resolve()) if kept["deployment"] else None
        write_atomically(out / RUN_OPTIONS, json.dumps({"schema": "gridshare.run-options/1", "scenario": str(
            Path(scenario_path).resolve()), "command": ["gridshare", *sys.argv[1:]], "options": kept}, indent=2))
    if p.chain is not None and p.chain.kind == "rpc":
        from .chain.backends import TxJournal

        p.store = KeyStore(out / "keys")
        seed = p.store.party("accounts").keep("seed", lambda: p.chain.account_seed.hex())
        p.chain.account_seed = bytes.fromhex(seed)
        p.chain.journal = TxJournal(out / "transactions.jsonl")
    log = out / "progress.jsonl"
    log.write_text("")  # a resumed run writes its lines again as it replays

    def append(line: dict) -> None:
        with open(log, "a") as f:
            f.write(json.dumps(line, default=float) + "\n")

    p.log = append


RUN_LOCK = "run.lock"


def lock_run_folder(out: Path) -> None:
    """Takes ``out/run.lock`` for this process (released at exit), so that no second run uses the
    folder at the same time; a lock whose process is gone (killed) is taken over."""
    import atexit
    import json
    import os
    import socket

    path = Path(out) / RUN_LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": ["gridshare", *sys.argv[1:]],
            "since": dt.datetime.now().isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            check_not_in_use(out)
            path.unlink(missing_ok=True)  # its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mine))
        atexit.register(release_run_folder, out)
        return
    raise UsageError(f"{out}: could not take its lock {path}")


def check_not_in_use(out: Path) -> None:
    """Refuses a run folder whose lock another live process holds (one on another host counts as live)."""
    import json
    import os
    import socket

    try:
        holder = json.loads((Path(out) / RUN_LOCK).read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no lock, or one half-written by a process killed while taking it
    if pid != os.getpid() and (host != socket.gethostname() or _alive(pid)):
        raise UsageError(f"{out} is in use by another gridshare run (pid {pid} on {host} since {holder.get('since')}: "
                         f"{' '.join(holder.get('command', []))}); wait for it to end or choose another folder")


def release_run_folder(out: Path) -> None:
    import json
    import os

    path = Path(out) / RUN_LOCK
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resume_options(out: Path) -> tuple[Path, RunOptions]:
    """The scenario and options a killed run kept in its folder (keep_run)."""
    import json

    path = Path(out) / RUN_OPTIONS
    check_not_in_use(out)
    if (Path(out) / "run.json").exists():
        raise UsageError(f"{out} holds a finished run (run.json); there is nothing to resume")
    try:
        kept = json.loads(path.read_text())
        options = RunOptions(**kept["options"])
        scenario = Path(kept["scenario"])
    except FileNotFoundError:
        raise UsageError(f"{out} is not a run folder ({RUN_OPTIONS} missing)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a run's options ({exc})") from None
    if options.deployment:
        options.deployment = Path(options.deployment)
    return scenario, options


def run_progress(out: Path) -> list[dict]:
    """The lines of a run folder's progress.jsonl (a line cut short by a kill is skipped)."""
    import json

    lines = []
    for text in (Path(out) / "progress.jsonl").read_text().splitlines() if (Path(out) / "progress.jsonl").exists() else []:
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


def ended_round(p: Prepared, progress: list[dict], out: Path) -> str | None:
    """Why a killed run cannot be resumed because its round ended on chain without it (cancelled
    after its coordinator's deadline, or closed by a dispute or dropouts), with where its deposits
    are; None when the run can go on. Reads the chain only: sends nothing."""
    from .chain.market import CLOSE_REASONS, Market
    from .chain.backends import ContractRevert

    created = [x["created"] for x in progress if "created" in x]
    if not created:
        return None
    where = created[-1]
    try:
        market = Market(p.chain, where["market"])
        info = market.round_info(where["round_id"])
    except (ContractRevert, ValueError) as exc:
        raise ChainError(f"{out}: its round {where['round_id']} of {where['market']} is not on {p.chain.url} "
                         f"({exc}); is this the node the run used?") from None
    if info["phase"] != "Closed":
        return None
    closed = market.contract.events.Closed.get_logs(argument_filters={"roundId": where["round_id"]}, from_block=0)
    reason = CLOSE_REASONS[closed[-1].args["reason"]] if closed else "unknown"
    if reason == "ByCoordinator":
        return None  # the run closed it itself (did not converge): the resumed run reads that and finishes
    block = closed[-1].blockNumber if closed else "?"
    what = {"CoordinatorLate": "cancelled (its coordinator missed its deadline while the run was down)"}.get(
        reason, f"closed ({reason})")
    from .refund import party_names

    names = party_names(out / "keys")
    held = {a: market.balance(where["round_id"], a) for a in names}
    held = {a: v for a, v in held.items() if v}
    money = ("every deposit has been withdrawn" if not held else
             f"{len(held)} account(s) still hold deposits: `gridshare refund --chain {where['url']} --market "
             f"{where['market']} --round {where['round_id']} --keys {out}` returns them")
    return f"round {where['round_id']} of {where['market']} was {what} at block {block}; {money}. Nothing was sent."


def execute(p: Prepared, progress=None, count=None) -> RunRecord:
    """Runs the job and returns its record (never raises for an unconverged round); ``progress``
    (label, iteration, answer) follows the rounds, ``count`` (what, done, total) the preparation."""
    from .framework import _progress_sink

    token = _progress_sink.set(count)
    try:
        return _run_job(p, progress)
    finally:
        _progress_sink.reset(token)


def _run_job(p: Prepared, progress) -> RunRecord:
    from .protocol.driver import run_round
    from .protocol.transport import PlainTransport

    t_start = time.perf_counter()
    o, mechanism = p.options, p.mechanism
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    job = mechanism.prepare(p.scenario, o.mechanism_options)
    timings["prepare"] = time.perf_counter() - t0
    plain, outcomes = [], []
    for i, (factory, label) in enumerate(zip(job.rounds, job.labels)):
        setup = factory()
        drops = _drops(o, setup)
        if job.plaintext_check and o.mode != "plaintext":
            plain.append(run_round(factory(), PlainTransport(drops), executor=o.executor,
                                   progress=_bar(progress, f"{label}, plaintext mode")))
        bar = _logged(p.log, label, _bar(progress, f"{label}, {o.mode} mode"))
        if o.processes:
            outcomes.append(_in_processes(p, setup, i, bar))
            continue
        transport = PlainTransport(drops) if o.mode == "plaintext" else _transport(p, drops, i, _cheats(o, setup, drops))
        out = run_round(setup, transport, executor=o.executor, settle_unconverged=o.settle_unconverged, progress=bar)
        if o.mode == "chain":  # later rounds reuse the market and the rule contracts
            p.market, p.rules = transport.market, transport.rules
        outcomes.append(out)
    t0 = time.perf_counter()
    if progress is not None:
        progress("centralized reference", None, None)
    reference = job.reference() if job.reference is not None else None
    timings["reference"] = time.perf_counter() - t0
    summary = mechanism.summarise(job, outcomes, plain, reference)
    main = outcomes[-1]
    timings.update({f"round {k}": round(v, 4) for k, v in main.seconds.items()})
    if plain:
        timings["plaintext mode"] = plain[-1].seconds["total"]
    timings["wall"] = time.perf_counter() - t_start
    return _record(p, job, summary, outcomes, plain, timings)


def _in_processes(p: Prepared, setup, index: int, progress):
    """Round ``index`` with every party its own OS process (:mod:`offchain.protocol.spawn`), on the
    run's market and rule contracts (deployed here, by the coordinator's account, if not given)."""
    from .chain.market import Market, deploy_rule
    from .protocol import spawn

    chain, o = p.chain, p.options
    operator = chain.accounts(1)[0]
    if p.market is None:
        p.market = Market.deploy(chain, operator)
    name = p.mechanism.rule_contract
    if name not in p.rules:
        p.rules[name] = deploy_rule(chain, name, operator)
    return spawn.run(setup, chain, p.market, p.rules[name], o.run_dir / "parties" / f"round{index}", key_bits=o.key_bits,
                     verify_openings=o.verify_openings, windows=p.scenario.chain.windows,
                     settle_unconverged=o.settle_unconverged, progress=progress)


def _logged(log, label: str, progress):
    """``progress``, and each iteration's public answer as a line of the run folder's log."""
    if log is None:
        return progress

    def step(k, answer):
        log({"round": label, "iteration": k, "prices": answer.prices, "final": answer.final,
             "converged": answer.converged, "residuals": answer.residuals})
        if progress is not None:
            progress(k, answer)
    return step


def _bar(progress, label: str):
    if progress is None:
        return None
    return lambda k, answer: progress(label, k, answer)


def _record(p: Prepared, job, summary, outcomes, plain, timings) -> RunRecord:
    from .protocol.driver import outcome_gas

    main = outcomes[-1]
    setup, transport = main.setup, main.transport
    addresses = transport.addresses
    names = [q.name for q in setup.participants]
    by_name = {s.name: s for s in summary.parties}
    paid: dict[str, int] = {}
    if main.settlement is not None:
        paid = {**dict(zip(names, main.settlement.amounts)), **main.settlement.payees}
    traded = main.converged or p.options.settle_unconverged
    parties = []
    roles = [(n, "prosumer") for n in names] + [(setup.coordinator_role, setup.coordinator_role)] + \
        [(r, r) for r in setup.payees if r != setup.coordinator_role]
    for name, role in roles:
        s = by_name.get(name)
        parties.append(Party(
            name=name, role=s.role if s else role, address=addresses.get(name) if transport.kind == "chain" else None,
            cost_alone=s.cost_alone if s else None, cost_shared=s.cost_shared if s and traded else None,
            bill=dict(s.bill) if s and traded else {}, payment=Payment.of(paid.get(name, 0)) if main.settled else None))
    iterations = [Iteration(it.iteration, list(it.prices), list(it.sums), dict(it.answer.residuals),
                            transport.gas_of_iteration(it.iteration), it.seconds) for it in main.iterations]
    tree = [x for lab, out in zip(job.labels, outcomes) for x in _with_children(lab, out)]
    transactions = [t for _, out, _ in tree for t in out.transport.transactions]
    gas_kinds: dict[str, list[int]] = {}
    for _, out, _ in tree:
        for kind, values in out.transport.gas.items():
            gas_kinds.setdefault(kind, []).extend(values)
    gas = {"per_kind": {k: {"count": len(v), "total": int(sum(v)), "mean": sum(v) / len(v)} for k, v in gas_kinds.items() if v},
           "main_round": outcome_gas(main), "total": int(sum(sum(v) for v in gas_kinds.values()))}
    if main.transport.gas.get("submit"):
        gas.update(prosumer_costs(main))
    chain = None
    if transport.chain_info is not None:
        info = transport.chain_info
        started = p.chain is not None and p.chain.started_here
        chain = {"kind": "anvil" if started else info.kind, "url": info.url, "chain_id": info.chain_id,
                 "hardfork": info.hardfork, "state": str(p.chain.state_file) if started and p.chain.state_file else None,
                 "contracts": {"market": info.market, "token": info.token, "rule": info.rule},
                 "rounds": [{"label": lab, "round_id": out.transport.chain_info.round_id,
                             "parent_round_id": out.transport.chain_info.parent_round_id} for lab, out, _ in tree]}
    rounds = [_round(lab, out, parent) for lab, out, parent in tree] + \
        [_round(lab, out, parent) for p_lab, p_out in zip(job.labels, plain) for lab, out, parent in _with_children(p_lab, p_out)]
    o = p.options
    parameters = {"mode": o.mode, "key_bits": o.key_bits, "verify_openings": o.verify_openings,
                  "settle_unconverged": o.settle_unconverged, "seed": p.scenario.seed, "drop": o.drop,
                  "drop_at": o.drop_at if o.drop else None, "cheat": o.cheat, "processes": o.processes,
                  "deployment": str(o.deployment) if o.deployment else None, "options": o.mechanism_options,
                  **job.parameters}
    scenario = {**p.scenario.to_dict(), "profiles": job.profiles}
    lines = _lines(chain, main, gas, timings) + list(summary.lines)
    if p.chain is not None and p.chain.stranded:
        lines.append(("stranded transactions", f"{p.chain.stranded} left pending by the node (anvil's automine skips "
                      "transactions that arrive out of nonce order), mined by a block the client asked for"))
    return RunRecord(
        mechanism=p.mechanism.name, title=f"{p.mechanism.title}: {p.scenario.name}",
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), software=software(),
        command=["gridshare", *sys.argv[1:]], scenario=scenario, parameters=parameters, chain=chain,
        iterations=iterations, parties=parties,
        convergence=Convergence(main.converged, main.reason, len(main.iterations)),
        gas=gas, timings={k: round(v, 4) for k, v in timings.items()}, transactions=transactions, rounds=rounds,
        summary=[("headline", summary.headline if traded else NOTHING_TRADED)] + lines, details=summary.details)


NOTHING_TRADED = "no saving: the round did not converge, so nothing was traded (costs alone shown)"
ROUND_KINDS = ("register", "approve", "deposit", "reveal", "withdraw")  # a prosumer's transactions once per round


def prosumer_costs(outcome) -> dict[str, float]:
    """What a prosumer pays, from every transaction it sent: per iteration (its submissions and, in
    a dispute, its openings and accusations, plus its share of the aggregation) and per round."""
    t = outcome.transport
    names = {p.name for p in outcome.setup.participants}
    n, iterations = len(names), max(len(outcome.iterations), 1)
    mine = [x for x in t.transactions if x.party in names and x.iteration is not None]
    aggregate = sum(x.gas for x in t.transactions if x.kind == "aggregate")
    once = [x for x in t.transactions if x.kind in ROUND_KINDS and x.party in names]
    submits = t.gas.get("submit", [])
    return {"submission_mean": sum(submits) / len(submits),
            "transactions_per_prosumer_per_iteration": len(mine) / (n * iterations),
            "per_prosumer_per_iteration": (sum(x.gas for x in mine) + aggregate) / (n * iterations),
            "per_prosumer_per_round": sum(x.gas for x in once) / n}


def _with_children(label: str, out, parent: str | None = None) -> list[tuple[str, Any, str | None]]:
    """The round and, depth first, the child rounds its operators ran: (label, outcome, parent's label)."""
    rows = [(label, out, parent)]
    for c in out.children:
        rows += _with_children(f"{label} / {c.operator}, iteration {c.iteration}", c.outcome, label)
    return rows


def _round(label: str, out, parent: str | None = None) -> Round:
    t = out.transport
    payments = {}
    matches = None
    if out.settlement is not None:
        names = [q.name for q in out.setup.participants]
        payments = {n: str(a) for n, a in zip(names, out.settlement.amounts)}
        payments.update({r: str(a) for r, a in out.settlement.payees.items()})
        if t.kind == "chain":
            m = t.mirror(out.final_prices)
            matches = m.amounts == out.settlement.amounts and m.payees == out.settlement.payees
    names = [q.name for q in out.setup.participants]
    return Round(label, t.kind, t.chain_info.round_id if t.chain_info else None, out.converged, out.reason,
                 len(out.iterations), out.settled, payments, matches,
                 {names[i]: k for i, k in sorted(t.dropped_at.items())},
                 {str(k): n for k, n in sorted(t.attempts.items()) if n > 1},
                 {who: {"fault": fault, "forfeited": str(v)} for who, (v, fault) in t.blamed.items()}, parent)


def _lines(chain, main, gas, timings) -> list[tuple[str, str]]:
    rows = []
    if chain is not None:
        rows += [("market contract", chain["contracts"]["market"]),
                 ("chain", f"{chain['kind']} {chain['url'] or ''} (chain id {chain['chain_id']}, {chain['hardfork']})"),
                 ("round", ", ".join(str(r["round_id"]) for r in chain["rounds"]))]
    rows.append(("converged", f"{main.converged} after {len(main.iterations)} iterations ({main.reason})"))
    if "submission_mean" in gas:
        rows += [("gas per submission", f"{gas['submission_mean']:,.0f}"),
                 ("per prosumer per iteration", f"{gas['transactions_per_prosumer_per_iteration']:.2f} transactions, "
                  f"{gas['per_prosumer_per_iteration']:,.0f} gas (every transaction it sends + its aggregation share)"),
                 ("per prosumer per round, besides", f"{gas['per_prosumer_per_round']:,.0f} gas (register, approve, "
                  "deposit, reveal, withdraw)")]
    if gas["total"]:
        rows.append(("gas total", f"{gas['total']:,}"))
    rows.append(("wall time (s)", wall_line(timings)))
    return rows


def wall_line(timings: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in timings.items())


def exit_code(record: RunRecord) -> int:
    return 0 if record.convergence.converged else NOT_CONVERGED_EXIT


def not_converged_line(record: RunRecord) -> str:
    settled = record.parameters.get("settle_unconverged")
    what = ("settled anyway at the last prices (--settle-unconverged)" if settled else
            "nothing was traded and every deposit was returned (--settle-unconverged settles anyway)")
    return f"NOT CONVERGED: {record.convergence.reason}; {what}"
