"""A chain round with every party as its own OS process (``gridshare run --processes``).

The run's process is the host of a simulated community: it holds the scenario (everyone's data)
and so builds each party's agent, but it takes no part in the round. For each party it writes a
folder (mode 0700) with what that party alone holds: ``party.json`` (its name, role, collateral
and the public roster), ``secrets.jsonl`` (its account key, then the secrets it makes) and
``agent.pkl`` (its mechanism logic and private data; the coordinator's public round plan in
``round.json``). It then starts ``gridshare party`` once per party: the coordinator first (it
creates the round), then every participant and payee with the round's id. The parties coordinate
through the chain only (:mod:`offchain.protocol.parties`). When every process has ended, the host
reads what happened from the chain and from each party's own record of the transactions it sent.
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from ..errors import ProtocolViolation
from ..framework import Answer, RoundSetup
from ..record import Transaction
from .driver import IterationRecord, RoundOutcome
from .parties import PartyConfig, json_lines, party_folder, write_private
from .transport import ChainInfo, Transport, settlement_by_role

COORDINATOR = "coordinator"


class ProcessRound(Transport):
    """What the host knows of a round its parties ran in their own processes (read from the chain
    and from their records): the same fields a :class:`ChainTransport` leaves, for the run record."""

    kind = "chain"

    def open(self, setup, parent=None):
        raise ProtocolViolation("a round run in processes is not driven from this process")

    def exchange(self, k, contributions):
        raise ProtocolViolation("a round run in processes is not driven from this process")

    def settle(self, prices):
        raise ProtocolViolation("a round run in processes is not driven from this process")

    def mirror(self, prices: list[int]):
        length = len(next(r for r in self.reveals if r is not None))
        return self._mirror(self.setup, [r or [0] * length for r in self.reveals], prices)


class Parties:
    """The OS processes of one round's parties."""

    def __init__(self, chain_url: str, market: str, root: Path, patience: float) -> None:
        self.chain_url, self.market, self.root, self.patience = chain_url, market, root, patience
        self.procs: dict[str, subprocess.Popen] = {}
        self.round_id: int | None = None

    def command(self, name: str) -> list[str]:
        cmd = [sys.executable, "-m", "offchain.cli", "party", "--chain", self.chain_url, "--market", self.market,
               "--name", name, "--keys", str(self.root / name), "--patience", str(self.patience)]
        return cmd + (["--round", str(self.round_id)] if self.round_id is not None else [])

    def spawn(self, name: str) -> None:
        from ..processes import die_with_parent

        log = open(self.root / name / "party.log", "a")
        self.procs[name] = subprocess.Popen(self.command(name), stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=die_with_parent)

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait()

    def running(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def failed(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.returncode not in (None, 0)}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def prepare(setup: RoundSetup, chain, market, rule: str, root: Path, *, key_bits: int, verify_openings: bool,
            windows: dict, settle_unconverged: bool, account_offset: int = 0) -> dict[str, str]:
    """Writes every party's folder under ``root``; {party name: address}."""
    from ..chain.market import Windows

    n = len(setup.participants)
    accounts = chain.accounts(n + 1 + len(setup.payees), offset=account_offset)
    coordinator, payees, parts = accounts[0], accounts[1:1 + len(setup.payees)], accounts[1 + len(setup.payees):]
    names = [p.name for p in setup.participants]
    by_name = {COORDINATOR: coordinator, **dict(zip(setup.payees, payees)), **dict(zip(names, parts))}
    addresses = {name: a.address for name, a in by_name.items()}
    addresses[setup.coordinator_role] = coordinator.address
    roster = [addresses[n] for n in names]
    win = Windows.for_round(n, **windows)
    if not setup.encrypted or not verify_openings:
        win = Windows(win.registration, win.submission, win.coordinator, 0)
    collateral = {name: setup.collateral(name) for name in [*setup.payees, *names]}
    bond = setup.bond if setup.bond is not None else max((collateral[n] for n in names), default=0)
    plan = {"label": setup.label, "key_bits": key_bits, "encrypted": setup.encrypted, "rule": rule,
            "slots": setup.slots, "slot_bits": setup.slot_bits, "max_iterations": setup.max_iterations,
            "price_floor": list(setup.price_floor), "price_cap": list(setup.price_cap),
            "grid_account": addresses[setup.balancing_role], "mechanism": json.dumps(setup.public_rule, sort_keys=True),
            "pair_lanes": setup.pair_lanes, "terms": (setup.terms(addresses) if setup.terms else b"").hex(),
            "members": roster, "collateral": min((collateral[n] for n in names), default=0), "bond": bond,
            "windows": win.__dict__, "settle_unconverged": settle_unconverged,
            "mint": [[addresses[name], v] for name, v in collateral.items()] + [[coordinator.address, bond]],
            "payee_collateral": [[addresses[r], collateral[r]] for r in setup.payees]}
    agents = {COORDINATOR: setup.coordinator, **dict(zip(names, setup.participants))}
    for name, account in by_name.items():
        folder = party_folder(root / name)
        role = "prosumer" if name in names else name
        PartyConfig(role, name, collateral.get(name, bond if name == COORDINATOR else 0), roster).write(folder)
        write_private(folder / "secrets.jsonl", (json.dumps({"k": "account", "v": account.key.hex()}) + "\n").encode())
        if name in agents:
            write_private(folder / "agent.pkl", pickle.dumps(agents[name]))
    write_private(root / COORDINATOR / "round.json", json.dumps(plan, indent=1).encode())
    return addresses


def run(setup: RoundSetup, chain, market, rule: str, root: Path, *, key_bits: int, verify_openings: bool,
        windows: dict, settle_unconverged: bool, patience: float = 30.0,
        watch: Callable[[Parties, dict], None] | None = None,
        progress: Callable[[int, Answer], None] | None = None) -> RoundOutcome:
    """Runs ``setup`` with each party in its own process; the outcome as read back."""
    if any(hasattr(p, "child") for p in setup.participants):
        raise ProtocolViolation(f"{setup.label}: its operators run child rounds, which do not run as processes yet")
    t0 = time.perf_counter()
    resumed = (root / COORDINATOR / "round.json").exists()
    if resumed:  # a resumed run: every party goes on from its folder
        addresses = _addresses(root, setup)
    else:
        addresses = prepare(setup, chain, market, rule, party_folder(root), key_bits=key_bits,
                            verify_openings=verify_openings, windows=windows, settle_unconverged=settle_unconverged)
    parties = Parties(chain.url, market.address, root, patience)
    try:
        first = chain.block_number
        parties.spawn(COORDINATOR)
        while parties.round_id is None:  # the round its coordinator creates, as the chain shows it
            if parties.failed():
                raise ProtocolViolation(f"the coordinator's process failed: {_last_line(root / COORDINATOR)}")
            created = market.contract.events.RoundCreated.get_logs(
                argument_filters={"coordinator": addresses[COORDINATOR]}, from_block=0 if resumed else first)
            if created:
                parties.round_id = int(created[-1]["args"]["roundId"])
            time.sleep(0.2)
        for name in [*setup.payees, *(p.name for p in setup.participants)]:
            parties.spawn(name)
        seen = 0
        while parties.running():
            if watch is not None:
                watch(parties, market.round_info(parties.round_id))
            seen = _progress(root, seen, progress)
            time.sleep(0.2)
        _progress(root, seen, progress)
        phase = market.round_info(parties.round_id)["phase"]
        failed = parties.failed()
        if phase not in ("Settled", "Closed") or COORDINATOR in failed:  # a participant that died was dropped
            said = ", ".join(f"{n} ({_last_line(root / n)})" for n in failed)
            raise ProtocolViolation(f"the round ended {phase}; party processes failed: {said or 'none'}")
    finally:
        parties.stop()
    return _outcome(setup, chain, market, rule, root, parties.round_id, addresses, time.perf_counter() - t0)


def _addresses(root: Path, setup: RoundSetup) -> dict[str, str]:
    """{party name: address} of the parties' folders under ``root`` (and the coordinator's role)."""
    from eth_account import Account

    out = {}
    for folder in root.iterdir():
        if (folder / "party.json").exists():
            key = next(x["v"] for x in json_lines(folder / "secrets.jsonl") if x["k"] == "account")
            out[PartyConfig.read(folder).name] = Account.from_key(bytes.fromhex(key)).address
    out[setup.coordinator_role] = out[COORDINATOR]
    return out


def _last_line(folder: Path) -> str:
    log = folder / "party.log"
    lines = log.read_text().strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no output"


def _iterations(root: Path) -> list[dict]:
    return json_lines(root / COORDINATOR / "iterations.jsonl")


def _progress(root: Path, seen: int, progress) -> int:
    lines = _iterations(root)
    for line in lines[seen:]:
        if progress is not None:
            progress(line["iteration"], Answer(**line["answer"]))
    return len(lines)


def _outcome(setup: RoundSetup, chain, market, rule: str, root: Path, round_id: int, addresses: dict[str, str],
             seconds: float) -> RoundOutcome:
    """The round as its parties left it: iterations (the coordinator's log), transactions (each
    party's record), dropouts, reveals and settlement (the chain), each party's final state."""
    from ..audit.history import MarketHistory
    from ..audit.reader import read_market_transactions
    from ..chain.market import FAULTS

    t = ProcessRound()
    names = [p.name for p in setup.participants]
    for name in [COORDINATOR, *setup.payees, *names]:
        state = root / name / "state.pkl"
        if state.exists() and name != COORDINATOR:
            setup.participants[names.index(name)] = pickle.loads(state.read_bytes())["agent"]
        elif state.exists():
            setup.coordinator = pickle.loads(state.read_bytes())["agent"]
        for line in json_lines(root / name / "transactions.jsonl"):
            x = Transaction(**line)
            if name == COORDINATOR:
                x = Transaction(x.hash, setup.coordinator_role, x.kind, x.iteration, x.gas)
            t.transactions.append(x)
            t.gas[x.kind].append(x.gas)
    t.setup, t.addresses = setup, dict(addresses)
    history = MarketHistory(market.address, read_market_transactions(chain, market.address))
    events = [e for e in history.events if e.args.get("roundId") == round_id]
    t.active = set(range(len(names)))
    index = {addresses[n].lower(): i for i, n in enumerate(names)}
    for e in events:
        if e.name == "Dropped":
            i = index[e.args["participant"].lower()]
            t.active.discard(i)
            t.dropped_at[i] = e.args["iteration"]
        elif e.name == "Blamed":
            who = next((n for n, a in t.addresses.items() if a.lower() == e.args["culprit"].lower()), e.args["culprit"])
            t.blamed[who] = (int(e.args["forfeited"]), FAULTS[e.args["fault"]])
    reveals = {c.tx.sender.lower(): [int(v) for v in c.args["values"]] for c in history.calls
               if c.name == "reveal" and c.tx.status == 1 and c.args["roundId"] == round_id}
    t.reveals = [reveals.get(addresses[n].lower()) if i in t.active else None for i, n in enumerate(names)]
    t.chain_info = ChainInfo(kind=chain.kind, url=chain.url, chain_id=chain.chain_id, hardfork=chain.hardfork,
                             market=market.address, token=market.token.address, rule=rule, round_id=round_id)
    lines = _iterations(root)
    started = [e for e in events if e.name == "RoundStarted"]
    prices = [int(p) for p in started[0].args["prices"]] if started else []
    iterations = []
    for line in lines:
        answer = Answer(**line["answer"])
        iterations.append(IterationRecord(line["iteration"], prices, line["sums"], answer, 0.0))
        t.attempts[line["iteration"]] = line["attempts"]
        if answer.prices is not None:
            prices = list(answer.prices)
    final = iterations[-1].answer if iterations else Answer(final=True, reason="the round never started")
    settled = any(e.name == "Settled" for e in events)
    settlement = settlement_by_role(market.settlement_of(round_id), setup, t.addresses) if settled else None
    t.seconds["total"] = seconds
    return RoundOutcome(setup, t, iterations, final.converged, final.reason,
                        iterations[-1].prices if iterations else [], t.reveals, settlement, {"total": seconds})
