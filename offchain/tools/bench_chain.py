"""``gridshare bench registration``, ``aggregate`` and ``blame``: what one participant costs at the
start of a round as rounds grow (SecAgg+'s sparse neighbours), the chunked aggregation of a
2,000-participant round against EIP-7825's per-transaction gas cap, and what a hostile participant
costs the others (the blame step after a cheat, the dispute after garbled masks), on anvil nodes
started here."""
from __future__ import annotations

import contextlib
import json
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ..chain.backends import TX_GAS_CAP
from ..errors import OutputError, UsageError
from ..terminal import printer

BATCH = 500  # calls per JSON-RPC batch
# Transactions sent at once in the 2,000-participant round: all must fit one block (60M gas at
# ~260k gas reserved per register), because anvil's automine mines a block per transaction that
# arrives, and a burst's overflow beyond the last of those blocks stays pending until the next one.
TX_BATCH = 200


def _check_json(path: Path | None) -> None:
    if path is not None:
        OutputError.check_file(path, "--json file")


def _write(path: Path | None, data: dict, out: Console) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2))
        out.print(f"written: {path}")


def _stats(values: list[int]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": int(min(values)), "max": int(max(values)), "count": len(values)}


def prefund(chain, n: int, offset: int = 0) -> None:
    """Gives dev accounts ``offset .. offset + n - 1`` their ether on an anvil node started here
    (anvil_setBalance, no transactions). ``Chain.accounts`` funds them by transactions from one node
    account, all in one JSON-RPC batch, and anvil may take a batch's calls out of order and leave
    a transaction whose nonce came early unmined: with hundreds of accounts it then waits out its
    timeout."""
    from ..chain.backends import FUND_AMOUNT

    for i in range(offset, offset + n, BATCH):
        chain._rpc_batch([("anvil_setBalance", [_address(chain, j), hex(FUND_AMOUNT)])
                          for j in range(i, min(i + BATCH, offset + n))])


def _address(chain, index: int) -> str:
    """The address of ``chain.accounts``' account ``index`` (its key family: ``account_seed``)."""
    from ..chain.backends import dev_account

    seed = getattr(chain, "account_seed", None)
    return (dev_account(index, seed) if seed is not None else dev_account(index)).address


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--sizes: expected comma-separated integers, got {text!r}") from None
    if not sizes or any(n < 3 for n in sizes):
        raise UsageError(f"--sizes: every round needs at least 3 participants, got {text!r}")
    return sizes


# ----------------------------------------------------------------------------- registration
def registration(args, console: Console) -> dict[str, Any]:
    from ..chain.backends import connect, start_anvil
    from ..models.scenario import check_key_bits
    from ..protocol.transport import ChainTransport
    from ..registry import load_scenario

    sizes = _sizes(args.sizes)
    key_bits = check_key_bits(args.key_bits, "--key-bits")
    _check_json(args.json)
    loaded = [load_scenario(args.scenario, prosumers=n) for n in sizes]  # every scenario checked first
    out: dict[str, Any] = {"scenario": loaded[0][1].name, "key_bits": key_bits, "sizes": {}}
    with start_anvil() as node:
        chain = connect(node.url)
        prefund(chain, max(sizes) + 2)
        out["chain"] = {"kind": "anvil", "hardfork": chain.hardfork}
        market, rules = None, {}
        for n, (mechanism, scenario) in zip(sizes, loaded):
            with console.status(f"{n} participants: preparing the scenario (profiles, stand-alone solves)"):
                job = mechanism.prepare(scenario, {o.flag.lstrip("-"): o.default for o in mechanism.options})
                setup = job.rounds[0]()
            transport = ChainTransport(chain, key_bits=key_bits, market=market, rules=rules)
            try:
                with console.status(f"{n} participants: create the round, register and deposit one by one"):
                    t0 = time.perf_counter()
                    transport.open(setup)
                    t_open = time.perf_counter() - t0
                market, rules = transport.market, transport.rules
                keys = [len(k) for _, k in market.registered(transport.round_id)]
                with console.status(f"{n} participants: start"):
                    t0 = time.perf_counter()
                    transport.start(list(setup.coordinator.start()))
                    t_start = time.perf_counter() - t0
                info = market.round_info(transport.round_id)
            finally:
                transport.finish()
            names, degree = {p.name for p in setup.participants}, transport.plan.degree
            deposits = [t.gas for t in transport.transactions if t.kind == "deposit" and t.party in names]
            out["sizes"][str(n)] = {
                "participants": n, "round_id": transport.round_id, "phase_after_start": info["phase"],
                "active_after_start": int(info["active"]), "degree": degree, "complete_graph": degree == n - 1,
                # registerSigned: the creator's admission signature is checked too
                "register_call": "registerSigned" if info["signed_members"] else "register",
                "keys_bytes": _stats(keys), "register_gas": _stats(transport.gas["register"]),
                "deposit_gas": _stats(deposits) if deposits else None,  # the participants' (not the grid's, the bond)
                "start_gas": transport.gas["start"][0],
                "seconds": {"create_register_deposit": round(t_open, 2), "start": round(t_start, 2)},
            }
    return out


def registration_command(args, console: Console) -> int:
    result = registration(args, console)
    runs = result["sizes"]
    table = Table(title=f"bench registration: {result['scenario']} tariff rounds, {result['key_bits']}-bit key, "
                        f"anvil ({result['chain']['hardfork']}), per participant")
    table.add_column("figure")
    for n in runs:
        table.add_column(f"{n} participants", justify="right")
    rows = [("neighbours (SecAgg+ degree)", lambda r: f"{r['degree']}" + (" (all)" if r["complete_graph"] else "")),
            ("keys registered (bytes: A || Y(0))", lambda r: f"{r['keys_bytes']['mean']:,.0f}"),
            ("register gas, mean", lambda r: f"{r['register_gas']['mean']:,.0f} ({r['register_call']})"),
            ("register gas, min .. max", lambda r: f"{r['register_gas']['min']:,} .. {r['register_gas']['max']:,}"),
            ("deposit gas, mean", lambda r: f"{r['deposit_gas']['mean']:,.0f}" if r["deposit_gas"] else "-"),
            ("start gas (the coordinator, once)", lambda r: f"{r['start_gas']:,}"),
            ("phase after start, active", lambda r: f"{r['phase_after_start']}, {r['active_after_start']}"),
            ("create + register + deposit (s)", lambda r: f"{r['seconds']['create_register_deposit']:.1f}"),
            ("start (s)", lambda r: f"{r['seconds']['start']:.1f}")]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in runs.values()))
    out = printer()
    out.print(table)
    _write(args.json, result, out)
    return 0


# ----------------------------------------------------------------------------- aggregation
def _nodes(stack: contextlib.ExitStack, hardforks: list[str]) -> dict[str, Any]:
    """An anvil node per hardfork, all started before any work (a bad name fails at once)."""
    from ..chain.backends import start_anvil
    from ..errors import ChainError

    nodes = {}
    for name in hardforks:
        try:
            nodes[name] = stack.enter_context(start_anvil(hardfork=None if name == "default" else name))
        except ChainError as exc:
            raise UsageError(f"--hardfork {name}: anvil does not start with it ({exc})") from None
    return nodes


def _submissions(n: int, key_bits: int, console: Console) -> dict[str, Any]:
    """A key, every participant's values (a day of 24 signed slots) and their ciphertexts, packed
    without masks (what aggregation costs does not depend on them; the check slot sums to zero)."""
    from ..privacy.packing import SlotLayout
    from ..privacy.paillier import generate_keypair
    from ..report import progress_bar

    slots = 24
    with console.status(f"generating a {key_bits}-bit Paillier key"):
        pub, priv = generate_keypair(key_bits)
    layout = SlotLayout.for_round(slots, n, key_bits, slot_bits=64)
    rng = np.random.default_rng(20260101)
    values = rng.integers(-50_000_000, 50_000_000, size=(n, slots)).tolist()  # +-50 kWh in 1e-6 kWh
    ciphertexts = []
    with progress_bar(console) as bar:
        task = bar.add_task(f"encrypting {n} submissions", total=n)
        t0 = time.perf_counter()
        for v in values:
            ciphertexts.append(pub.to_bytes(pub.encrypt(layout.pack(v))))
            bar.advance(task)
    return {"pub": pub, "priv": priv, "layout": layout, "values": values, "ciphertexts": ciphertexts,
            "encrypt_seconds": time.perf_counter() - t0}


def _aggregate_on(url: str, data: dict[str, Any], chunk: int | None, console: Console) -> dict[str, Any]:
    from eth_utils import keccak

    from ..chain.backends import connect
    from ..chain.market import Market, RoundParams, Windows, commitment, deploy_rule
    from ..privacy import secagg
    from ..units import price_to_fixed

    chain = connect(url)
    pub, layout, values, cts = data["pub"], data["layout"], data["values"], data["ciphertexts"]
    n = len(values)
    label = chain.hardfork
    t_all = time.perf_counter()
    with console.status(f"{label}: funding {n + 2} accounts, deploying the contracts"):
        prefund(chain, n + 2)
        accounts = chain.accounts(n + 2)
        coordinator, grid, parts = accounts[0], accounts[1], accounts[2:]
        market = Market.deploy(chain, coordinator)
        rule = deploy_rule(chain, "TariffRule", coordinator)
    floor = price_to_fixed(np.full(layout.periods, 0.3))
    cap = price_to_fixed(np.full(layout.periods, 1.0))
    windows = Windows.for_round(n, challenge=0)  # registration 60 + 6n blocks: a block per transaction
    params = RoundParams(rule=rule, slots=layout.periods, max_iterations=1, price_floor=floor, price_cap=cap,
                         grid_account=grid.address, n=pub.n, slot_bits=layout.slot_bits, slot_width=layout.slot_width,
                         mechanism=json.dumps({"mechanism": "tariff", "bench": "aggregate"}), windows=windows)
    t0 = time.perf_counter()
    with console.status(f"{label}: create a round, {n} registrations"):
        rid, _ = market.create_round(coordinator, params)
        context = secagg.round_context(market.address, rid, chain.chain_id)
        h0, h1 = secagg.iteration_point(context, 0), secagg.iteration_point(context, 1)
        scalars = [secagg.random_scalar() for _ in parts]  # each participant's mask secret a
        keys = [secagg.multiply(secagg.GENERATOR, a) + secagg.multiply(h0, a) for a in scalars]  # A || Y(0)
        next_points = [secagg.multiply(h1, a) for a in scalars]  # Y(1), posted with the submission
        for i in range(0, n, TX_BATCH):
            market.register_many([(p, rid, k) for p, k in zip(parts[i:i + TX_BATCH], keys[i:i + TX_BATCH])])
        market.start(coordinator, rid, floor)
    t_register = time.perf_counter() - t0
    # a batch of registrations is mined in any order: aggregation takes registration order
    position = {a.lower(): i for i, a in enumerate(market.participants(rid))}
    order = sorted(range(n), key=lambda i: position[parts[i].address.lower()])
    parts, values, cts = [parts[i] for i in order], [values[i] for i in order], [cts[i] for i in order]
    next_points = [next_points[i] for i in order]
    salts = [secrets.token_bytes(32) for _ in parts]
    cms = [commitment(rid, 0, p.address, v, s) for p, v, s in zip(parts, values, salts)]
    t0 = time.perf_counter()
    with console.status(f"{label}: {n} submissions"):
        submits = []
        for i in range(0, n, TX_BATCH):
            window = slice(i, i + TX_BATCH)
            submits += market.submit_many([(p, rid, 0, c, cm, b"", y) for p, c, cm, y in
                                           zip(parts[window], cts[window], cms[window], next_points[window])])
    t_submit = time.perf_counter() - t0
    info = market.round_info(rid)
    default = chain.aggregate_chunk  # what market.aggregate sends without a chunk size
    f = market.contract.functions

    def first_chunk(size: int) -> dict[str, int]:
        """The first chunk of ``size`` ciphertexts: its gas (eth_estimateGas, no transaction) and
        EIP-7623's calldata floor (Prague on), a transaction's least gas whatever it runs."""
        data = bytes.fromhex(f.aggregate(rid, b"", cts[:size], cms[:size])._encode_transaction_data()[2:])
        zeros = data.count(0)
        gas = int(chain.w3.eth.estimate_gas({"from": coordinator.address, "to": market.address,
                                             "data": "0x" + data.hex()}))
        return {"ciphertexts": size, "gas": gas, "calldata_bytes": len(data),
                "calldata_floor_gas": 21_000 + 10 * (zeros + 4 * (len(data) - zeros))}

    probe = {size: first_chunk(size) for size in sorted({1, min(default, n), min(chunk or default, n)})}
    top = max(probe)
    per_ct = (probe[top]["gas"] - probe[1]["gas"]) / (top - 1) if top > 1 else None
    largest = int((TX_GAS_CAP - (probe[1]["gas"] - per_ct)) // per_ct) if per_ct else None
    fitted = None
    if chunk is None:  # the chain's chunk if it fits the cap, else 95% of the largest that does, in tens
        chunk = default
        if probe[min(default, n)]["gas"] > TX_GAS_CAP and largest:
            chunk = fitted = max(10 * (int(0.95 * largest) // 10), 1)
    timings: list[float] = []
    transact = chain.transact

    def timed(fn, sender):
        t = time.perf_counter()
        try:
            return transact(fn, sender)
        finally:
            timings.append(time.perf_counter() - t)

    chain.transact = timed  # time each chunk transaction (this Chain object only)
    t0 = time.perf_counter()
    error = None
    receipts: list[Any] = []
    try:
        with console.status(f"{label}: aggregating {n} ciphertexts in chunks of {chunk}"):
            agg, receipts = market.aggregate(coordinator, rid, cts, cms, chunk=chunk)
    except Exception as exc:  # noqa: BLE001 - a chunk over the cap is this benchmark's finding
        agg, error = b"", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        chain.transact = transact
    t_aggregate = time.perf_counter() - t0
    d = probe[min(default, n)]
    out: dict[str, Any] = {
        "hardfork": label, "osaka_pricing": chain.osaka_pricing, "participants": n,
        "step_after_submissions": info["step"], "chunk": chunk, "error": error,
        "default_chunk": {"ciphertexts": default, "first_chunk_gas_estimate": d["gas"],
                          "calldata_floor_gas": d["calldata_floor_gas"], "fits_cap": d["gas"] <= TX_GAS_CAP,
                          "note": "Chain.aggregate_chunk, what market.aggregate sends by default; not sent when its "
                                  "estimate exceeds the cap (it would revert out of gas, or, when the calldata floor "
                                  "alone exceeds the cap, be dropped by the node unmined)"},
        "fitted_chunk": fitted}
    gas = [int(r["gasUsed"]) for r in receipts]
    sizes = [min(chunk, n - i) for i in range(0, n, chunk)][:len(gas)]
    out.update({
        "chunks": [{"ciphertexts": s, "gas": g, "seconds": round(t, 3), "gas_per_ciphertext": g / s}
                   for s, g, t in zip(sizes, gas, timings)],
        "transactions": len(gas), "gas_total": sum(gas), "max_gas_per_tx": max(gas) if gas else None,
        "tx_gas_cap": TX_GAS_CAP, "max_over_cap": max(gas) / TX_GAS_CAP if gas else None,
        "fits_cap": bool(gas) and error is None and max(gas) <= TX_GAS_CAP,
        "gas_per_ciphertext": sum(gas) / n if gas and error is None else None,
        "estimate": {"first_chunk": list(probe.values()), "gas_per_ciphertext": per_ct,
                     "largest_chunk_under_cap": largest},
        "submit_gas_mean": float(np.mean([int(r["gasUsed"]) for r in submits])),
        "seconds": {"register_start": round(t_register, 2), "submit": round(t_submit, 2),
                    "aggregate": round(t_aggregate, 2)},
    })
    if error is None:
        m, rho = data["priv"].opening(int.from_bytes(agg, "big"))
        expected = [int(s) for s in np.sum(np.array(values, dtype=object), axis=0)]
        product = 1
        for c in cts:
            product = product * int.from_bytes(c, "big") % pub.n_sq
        t0 = time.perf_counter()
        sums, receipt = market.conclude(coordinator, rid, agg, m, rho)
        out["conclude"] = {"gas": int(receipt["gasUsed"]), "seconds": round(time.perf_counter() - t0, 2),
                           "sums_match": [int(s) for s in sums] == expected,
                           "aggregate_is_product": int.from_bytes(agg, "big") == product,
                           "aggregate_hash": "0x" + keccak(agg).hex()}
    out["seconds"]["total"] = round(time.perf_counter() - t_all, 2)
    return out


def aggregate(args, console: Console) -> dict[str, Any]:
    from ..models.scenario import check_key_bits

    key_bits = check_key_bits(args.key_bits, "--key-bits")
    hardforks = list(dict.fromkeys(h.strip().lower() for h in (args.hardfork or ["default", "prague"])))
    _check_json(args.json)
    from ..privacy.packing import SlotLayout

    SlotLayout.for_round(24, args.participants, key_bits)  # the day's 24 slots and the check slot must fit
    with contextlib.ExitStack() as stack:
        nodes = _nodes(stack, hardforks)
        data = _submissions(args.participants, key_bits, console)
        runs = {name: _aggregate_on(node.url, data, args.chunk, console) for name, node in nodes.items()}
    return {"participants": args.participants, "key_bits": key_bits, "slots": data["layout"].periods,
            "slot_width": data["layout"].slot_width, "encrypt_seconds": round(data["encrypt_seconds"], 2),
            "tx_gas_cap": TX_GAS_CAP, "runs": runs}


def aggregate_command(args, console: Console) -> int:
    result = aggregate(args, console)
    runs = result["runs"]
    table = Table(title=f"bench aggregate: {result['participants']:,} submissions, {result['key_bits']}-bit key, "
                        f"chunked against the {TX_GAS_CAP:,}-gas transaction cap (EIP-7825), anvil")
    table.add_column("figure")
    for name, r in runs.items():
        table.add_column(f"{r['hardfork']}" + (" (anvil's default)" if name == "default" else ""), justify="right")

    def g(v):
        return "-" if v is None else f"{v:,.0f}"

    rows = [("MODEXP pricing", lambda r: "EIP-7883 (Osaka)" if r["osaka_pricing"] else "EIP-2565 (before Osaka)"),
            ("chain's default chunk (Chain.aggregate_chunk)", lambda r: f"{r['default_chunk']['ciphertexts']}"),
            ("  its first transaction's gas (estimate)", lambda r: g(r["default_chunk"]["first_chunk_gas_estimate"])),
            ("  its calldata floor (EIP-7623)", lambda r: g(r["default_chunk"]["calldata_floor_gas"])),
            ("  fits the cap", lambda r: "yes" if r["default_chunk"]["fits_cap"] else "NO"),
            ("ciphertexts per chunk sent", lambda r: f"{r['chunk']}" + (" (fitted)" if r["fitted_chunk"] else "")),
            ("aggregation transactions", lambda r: f"{r['transactions']}"),
            ("gas per chunk", lambda r: ", ".join(f"{c['gas'] / 1e6:.2f}M" for c in r["chunks"]) or "-"),
            ("max gas per transaction", lambda r: g(r["max_gas_per_tx"])),
            ("  of the cap", lambda r: f"{100 * r['max_over_cap']:.1f}%" if r["max_over_cap"] else "-"),
            ("total aggregation gas", lambda r: g(r["gas_total"])),
            ("gas per ciphertext", lambda r: g(r["gas_per_ciphertext"])),
            ("largest chunk under the cap (estimated)", lambda r: g(r["estimate"]["largest_chunk_under_cap"])),
            ("aggregation time (s)", lambda r: f"{r['seconds']['aggregate']:.2f}"),
            ("conclude gas (opening decoded)", lambda r: g(r.get("conclude", {}).get("gas"))),
            ("sums decoded on chain = sums submitted", lambda r: str(r.get("conclude", {}).get("sums_match", "-"))),
            ("submit gas, mean", lambda r: g(r["submit_gas_mean"])),
            ("register + submit time (s)", lambda r: f"{r['seconds']['register_start'] + r['seconds']['submit']:.1f}"),
            ("error", lambda r: r["error"] or "none")]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in runs.values()))
    out = printer()
    out.print(table)
    for r in runs.values():
        if not r["default_chunk"]["fits_cap"]:
            out.print(f"{r['hardfork']}: the chain's default chunk of {r['default_chunk']['ciphertexts']} ciphertexts needs "
                      f"{r['default_chunk']['first_chunk_gas_estimate']:,} gas, over the cap; sent in chunks of "
                      f"{r['chunk']} instead", soft_wrap=True)
    _write(args.json, result, out)
    failed = [r["hardfork"] for r in runs.values() if not r["fits_cap"] or not r.get("conclude", {}).get("sums_match")]
    if failed:
        out.print(f"[bold red]aggregation did not fit the cap or did not decode on {', '.join(failed)}[/bold red]")
        return 1
    return 0


# ----------------------------------------------------------------------------- blame
HOSTILE = 2  # registration position of the hostile participant: H03 of the demo (whom `run --cheat 1` draws)
STEPS = {"blame": "cheat", "dispute": "garble"}  # what each step takes: a participant that ...
# ... encrypts other values than it commits to (found at settlement: the blame step), or masks
# with made-up masks and then claims false check values (found at once: a dispute of the attempt)


def _hostile_round(url: str, job, behaviour: str) -> dict[str, Any]:
    """The scenario's main round with one hostile participant: its outcome and every transaction."""
    from ..chain.backends import connect
    from ..protocol.driver import run_round
    from ..protocol.transport import ChainTransport

    setup = job.rounds[-1]()
    hostile = setup.participants[HOSTILE].name
    transport = ChainTransport(connect(url), behaviours={hostile: behaviour})
    t0 = time.perf_counter()
    outcome, error = None, None
    try:
        outcome = run_round(setup, transport, settle_unconverged=True)
    except Exception as exc:  # noqa: BLE001 - a round that does not settle is this benchmark's finding
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    matches = None
    if outcome is not None and outcome.settled:
        mirror = transport.mirror(outcome.final_prices)
        matches = mirror.amounts == outcome.settlement.amounts and mirror.payees == outcome.settlement.payees
    return {"hostile": hostile, "behaviour": behaviour, "participants": len(setup.participants),
            "settled": bool(outcome and outcome.settled), "matches_mirror": matches, "error": error,
            "blamed": {who: {"fault": fault, "forfeited": str(v)} for who, (v, fault) in transport.blamed.items()},
            "attempts": {str(k): a for k, a in sorted(transport.attempts.items()) if a > 1},
            "seconds": round(time.perf_counter() - t0, 1), "transactions": transport.transactions}


def _gas(txs, kind: str) -> list[int]:
    return [t.gas for t in txs if t.kind == kind]


def _first(txs, kind: str) -> int | None:
    return next(iter(_gas(txs, kind)), None)


def _stats_of(txs, kind: str) -> dict[str, float] | None:
    gas = _gas(txs, kind)
    return _stats(gas) if gas else None


def _blame_figures(run: dict[str, Any]) -> dict[str, Any]:
    """The blame step: the settle that starts it, every participant's openBlame, the settle after it."""
    txs = run.pop("transactions")
    settles = _gas(txs, "settle")
    return {**run, "open_blame_gas": _stats_of(txs, "open blame"),
            "settle_starting_blame_gas": settles[0] if len(settles) > 1 else None,
            "settle_after_blame_gas": settles[-1] if len(settles) > 1 else None}


def _dispute_figures(run: dict[str, Any]) -> dict[str, Any]:
    """The dispute step: the coordinator's dispute, every submitter's openCheck, the accusations,
    the advance that drops the culprit, and the attempt re-run without it (its submissions, its
    aggregation and the decryption published); None where the round had no dispute."""
    txs = run.pop("transactions")
    kinds = [t.kind for t in txs]
    at = kinds.index("dispute") if "dispute" in kinds else len(txs)
    k = txs[at].iteration if at < len(txs) else None
    end = next((i for i in range(at, len(txs)) if kinds[i] == "advance"), len(txs) - 1)
    step, rerun = txs[at:end + 1], [t for t in txs[end + 1:] if t.iteration == k]
    return {**run, "disputed": bool(step), "iteration": k, "dispute_gas": _first(step, "dispute"),
            "open_check_gas": _stats_of(step, "open check"), "accuse_gas": _stats_of(step, "accuse"),
            "advance_gas": _first(step, "advance"), "challenges": len(_gas(step, "challenge")),
            "step_gas_total": sum(t.gas for t in step),
            "rerun": {"submit_gas": _stats_of(rerun, "submit"), "aggregate_gas": sum(_gas(rerun, "aggregate")),
                      "publish_gas": sum(_gas(rerun, "publish") + _gas(rerun, "conclude")),
                      "gas_total": sum(t.gas for t in rerun)}}


def blame(args, console: Console) -> dict[str, Any]:
    """The demo scenario's round with one hostile participant per step asked, on an anvil node at
    its default hardfork and one at Prague: the gas of the step's transactions."""
    from ..chain.backends import connect
    from ..registry import load_scenario

    _check_json(args.json)
    steps = list(STEPS) if args.what == "both" else [args.what]
    mechanism, scenario = load_scenario(args.scenario)
    if not mechanism.layout(scenario)[0]:
        raise UsageError(f"{args.scenario}: its rounds carry no encrypted sums, so they have neither disputes nor "
                         "a blame step")
    job = mechanism.prepare(scenario, {o.flag.lstrip("-"): o.default for o in mechanism.options})
    out: dict[str, Any] = {"scenario": str(args.scenario), "key_bits": 2048, "steps": steps, "chains": {}}
    figures = {"blame": _blame_figures, "dispute": _dispute_figures}
    with contextlib.ExitStack() as stack:
        for name, node in _nodes(stack, ["default", "prague"]).items():
            chain = connect(node.url)
            runs: dict[str, Any] = {"hardfork": chain.hardfork, "osaka_pricing": chain.osaka_pricing}
            for step in steps:
                with console.status(f"{name}: a round with a participant that does `{STEPS[step]}` ({step} step)"):
                    runs[step] = figures[step](_hostile_round(node.url, job, STEPS[step]))
            out["chains"][name] = runs
    return out


def blame_command(args, console: Console) -> int:
    result = blame(args, console)
    runs = result["chains"]
    out = printer()

    def g(v):
        return "-" if v is None else f"{v:,.0f}"

    def stat(stats, key):
        return g(stats[key]) if stats else "-"

    def blamed(r):
        named = [f"{k} {v['fault']} ({int(v['forfeited']) / 1e18:g})" for k, v in r["blamed"].items()]
        return ", ".join(named) or "nobody"

    tables = {
        "blame": ("one participant encrypts other values than it commits to: the blame step at settlement", [
            ("blamed (fault, tokens forfeited)", blamed),
            ("settled, as the Python mirror", lambda r: f"{r['settled']}, {r['matches_mirror']}"),
            ("openings (openBlame)", lambda r: stat(r["open_blame_gas"], "count")),
            ("gas per openBlame, mean", lambda r: stat(r["open_blame_gas"], "mean")),
            ("gas per openBlame, max", lambda r: stat(r["open_blame_gas"], "max")),
            ("settle that starts the blame step", lambda r: g(r["settle_starting_blame_gas"])),
            ("settle after it (slashing)", lambda r: g(r["settle_after_blame_gas"])),
            ("wall time (s)", lambda r: f"{r['seconds']}")]),
        "dispute": ("one participant masks with made-up masks and claims false check values: the dispute step", [
            ("blamed (fault, tokens forfeited)", blamed),
            ("attempts of the disputed iteration", lambda r: str(r["attempts"].get(str(r["iteration"]), 1))),
            ("dispute (coordinator)", lambda r: g(r["dispute_gas"])),
            ("openings (openCheck)", lambda r: stat(r["open_check_gas"], "count")),
            ("gas per openCheck, mean", lambda r: stat(r["open_check_gas"], "mean")),
            ("gas per openCheck, max", lambda r: stat(r["open_check_gas"], "max")),
            ("accusations", lambda r: stat(r["accuse_gas"], "count")),
            ("gas per accusation", lambda r: stat(r["accuse_gas"], "mean")),
            ("advance (drops the culprit)", lambda r: g(r["advance_gas"])),
            ("the dispute step in all", lambda r: g(r["step_gas_total"])),
            ("re-run attempt: submissions", lambda r: stat(r["rerun"]["submit_gas"], "count")),
            ("  gas per submission, mean", lambda r: stat(r["rerun"]["submit_gas"], "mean")),
            ("  aggregation", lambda r: g(r["rerun"]["aggregate_gas"])),
            ("  decryption published", lambda r: g(r["rerun"]["publish_gas"])),
            ("settled, as the Python mirror", lambda r: f"{r['settled']}, {r['matches_mirror']}"),
            ("wall time (s)", lambda r: f"{r['seconds']}")])}
    for step in result["steps"]:
        title, rows = tables[step]
        table = Table(title=f"bench blame ({step}): {title} (2048-bit key)")
        table.add_column("figure")
        for name, run in runs.items():
            default = " (anvil's default)" if name == "default" else ""
            table.add_column(f"{run['hardfork']}{default}", justify="right")
        for label, cell in rows:
            table.add_row(label, *(cell(run[step]) for run in runs.values()))
        out.print(table)
    _write(args.json, result, out)
    failed = [(name, step, run[step]) for name, run in runs.items() for step in result["steps"]
              if not run[step]["settled"] or (step == "dispute" and not run[step]["disputed"])]
    for name, step, r in failed:
        out.print(f"[bold red]{step} on {runs[name]['hardfork']}: the round "
                  f"{'did not settle: ' + (r['error'] or '') if not r['settled'] else 'was not disputed'}[/bold red]",
                  soft_wrap=True)
    return 1 if failed else 0
