"""``gridshare bench registration`` and ``gridshare bench aggregate``: what one participant costs
at the start of a round as rounds grow (SecAgg+'s sparse neighbours), and the chunked aggregation
of a 2,000-participant round against EIP-7825's per-transaction gas cap, on anvil nodes started
here."""
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

from .chain.backends import TX_GAS_CAP
from .errors import OutputError, UsageError

BATCH = 500  # transactions per JSON-RPC batch in the 2,000-participant round
MAX_DATA_BYTES = 24_000  # PrivateRounds.MAX_DATA_BYTES: the most a share (or recovery) post may hold


def _check_json(path: Path | None) -> None:
    if path is not None:
        OutputError.check_parent(path, "--json file")


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
    from .chain.backends import FUND_AMOUNT

    for i in range(offset, offset + n, BATCH):
        chain._rpc_batch([("anvil_setBalance", [_address(chain, j), hex(FUND_AMOUNT)])
                          for j in range(i, min(i + BATCH, offset + n))])


def _address(chain, index: int) -> str:
    """The address of ``chain.accounts``' account ``index`` (its key family: ``account_seed``)."""
    from .chain.backends import dev_account

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
    from .chain.backends import connect, start_anvil
    from .models.scenario import check_key_bits
    from .privacy.secagg import POINT_BYTES, SHARE_BYTES, default_threshold
    from .protocol.transport import ChainTransport
    from .registry import load_scenario

    sizes = _sizes(args.sizes)
    key_bits = check_key_bits(args.key_bits, "--key-bits")
    _check_json(args.json)
    loaded = [load_scenario(args.scenario, prosumers=n) for n in sizes]  # every scenario checked first
    out: dict[str, Any] = {"scenario": loaded[0][1].name, "key_bits": key_bits, "recovery": True, "sizes": {}}
    with start_anvil() as node:
        chain = connect(node.url)
        prefund(chain, max(sizes) + 2)
        out["chain"] = {"kind": "anvil", "hardfork": chain.hardfork}
        market, rules = None, {}
        for n, (mechanism, scenario) in zip(sizes, loaded):
            with console.status(f"{n} participants: preparing the scenario (profiles, stand-alone solves)"):
                job = mechanism.prepare(scenario, {o.flag.lstrip("-"): o.default for o in mechanism.options})
                setup = job.rounds[0]()
            transport = ChainTransport(chain, key_bits=key_bits, market=market, rules=rules, recovery=True)
            block0 = chain.block_number
            try:
                with console.status(f"{n} participants: create the round, register and deposit one by one"):
                    t0 = time.perf_counter()
                    transport.open(setup)
                    t_open = time.perf_counter() - t0
                market, rules = transport.market, transport.rules
                with console.status(f"{n} participants: start, every participant shares its mask secrets"):
                    t0 = time.perf_counter()
                    transport.start(list(setup.coordinator.start()))
                    t_share = time.perf_counter() - t0
                shared = [ev["args"] for ev in market.contract.events.Shared().get_logs(from_block=block0)
                          if ev["args"]["roundId"] == transport.round_id]
                info = market.round_info(transport.round_id)
            finally:
                transport.finish()
            gas = transport.gas
            plan = transport.plan
            material = [len(bytes(a["material"])) for a in shared]
            register, share = _stats(gas["register"]), _stats(gas["share"])
            out["sizes"][str(n)] = {
                "participants": n, "round_id": transport.round_id, "phase_after_sharing": info["phase"],
                "degree": plan.degree, "threshold": transport.threshold, "complete_graph": plan.degree == n - 1,
                "register_gas": register, "share_gas": share,
                "deposit_gas": _stats(gas["deposit"]) if gas.get("deposit") else None,
                "register_plus_share_gas_mean": register["mean"] + share["mean"],
                "share_material_bytes": _stats(material),
                "share_material_bytes_if_complete_graph":
                    POINT_BYTES * (1 + 2 * default_threshold(n - 1)) + SHARE_BYTES * (n - 1),
                "max_share_bytes": MAX_DATA_BYTES,
                "seconds": {"create_register_deposit": round(t_open, 2), "start_share": round(t_share, 2)},
            }
    runs = list(out["sizes"].values())
    if len({r["share_material_bytes"]["mean"] for r in runs}) > 1:  # share gas against its bytes, a line
        slope, base = np.polyfit([r["share_material_bytes"]["mean"] for r in runs], [r["share_gas"]["mean"] for r in runs], 1)
        out["share_gas_per_material_byte"] = float(slope)
        for r in runs:
            r["share_gas_if_complete_graph_estimate"] = float(base + slope * r["share_material_bytes_if_complete_graph"])
    return out


def registration_command(args, console: Console) -> int:
    result = registration(args, console)
    runs = result["sizes"]
    table = Table(title=f"bench registration: {result['scenario']} tariff rounds with dropout recovery, "
                        f"{result['key_bits']}-bit key, anvil ({result['chain']['hardfork']}), per participant")
    table.add_column("figure")
    for n in runs:
        table.add_column(f"{n} participants", justify="right")
    rows = [("neighbours (SecAgg+ degree)", lambda r: f"{r['degree']}" + (" (all)" if r["complete_graph"] else "")),
            ("Shamir threshold", lambda r: f"{r['threshold']}"),
            ("register gas, mean", lambda r: f"{r['register_gas']['mean']:,.0f}"),
            ("share gas, mean", lambda r: f"{r['share_gas']['mean']:,.0f}"),
            ("share gas, min .. max", lambda r: f"{r['share_gas']['min']:,} .. {r['share_gas']['max']:,}"),
            ("register + share gas", lambda r: f"{r['register_plus_share_gas_mean']:,.0f}"),
            ("deposit gas, mean", lambda r: f"{r['deposit_gas']['mean']:,.0f}" if r["deposit_gas"] else "-"),
            ("share material (bytes)", lambda r: f"{r['share_material_bytes']['mean']:,.0f}"),
            ("  with every other participant a neighbour", lambda r: f"{r['share_material_bytes_if_complete_graph']:,}"),
            ("  its share gas (linear estimate)", lambda r: f"{r['share_gas_if_complete_graph_estimate']:,.0f}"
             if "share_gas_if_complete_graph_estimate" in r else "-"),
            ("create + register + deposit (s)", lambda r: f"{r['seconds']['create_register_deposit']:.1f}"),
            ("start + share (s)", lambda r: f"{r['seconds']['start_share']:.1f}")]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in runs.values()))
    out = Console(highlight=False)
    out.print(table)
    _write(args.json, result, out)
    return 0


# ----------------------------------------------------------------------------- aggregation
def _nodes(stack: contextlib.ExitStack, hardforks: list[str]) -> dict[str, Any]:
    """An anvil node per hardfork, all started before any work (a bad name fails at once)."""
    from .chain.backends import start_anvil
    from .errors import ChainError

    nodes = {}
    for name in hardforks:
        try:
            nodes[name] = stack.enter_context(start_anvil(hardfork=None if name == "default" else name))
        except ChainError as exc:
            raise UsageError(f"--hardfork {name}: anvil does not start with it ({exc})") from None
    return nodes


def _submissions(n: int, key_bits: int, console: Console) -> dict[str, Any]:
    """A key, every participant's values (a day of 24 signed slots) and their ciphertexts."""
    from .privacy.packing import SlotLayout
    from .privacy.paillier import generate_keypair
    from .report import progress_bar

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

    from .chain.backends import connect
    from .chain.market import Market, RoundParams, Windows, commitment, deploy_rule
    from .privacy.masks import MaskKey
    from .units import price_to_fixed

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
        for i in range(0, n, BATCH):
            market.register_many([(p, rid, MaskKey().public_bytes) for p in parts[i:i + BATCH]])
        market.start(coordinator, rid, floor)
    t_register = time.perf_counter() - t0
    # a batch of registrations is mined in any order: aggregation takes registration order
    position = {a.lower(): i for i, (a, _) in enumerate(market.participants(rid))}
    order = sorted(range(n), key=lambda i: position[parts[i].address.lower()])
    parts, values, cts = [parts[i] for i in order], [values[i] for i in order], [cts[i] for i in order]
    salts = [secrets.token_bytes(32) for _ in parts]
    cms = [commitment(rid, 0, p.address, v, s) for p, v, s in zip(parts, values, salts)]
    t0 = time.perf_counter()
    with console.status(f"{label}: {n} submissions"):
        submits = []
        for i in range(0, n, BATCH):
            submits += market.submit_many([(p, rid, 0, c, cm) for p, c, cm in zip(parts[i:i + BATCH], cts[i:i + BATCH],
                                                                                     cms[i:i + BATCH])])
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
    from .models.scenario import check_key_bits

    key_bits = check_key_bits(args.key_bits, "--key-bits")
    hardforks = list(dict.fromkeys(h.strip().lower() for h in (args.hardfork or ["default", "prague"])))
    _check_json(args.json)
    from .privacy.packing import SlotLayout

    SlotLayout.for_round(24, args.participants, key_bits)  # the day's 24 slots must fit the key
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
    out = Console(highlight=False)
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
def blame(args, console: Console) -> dict[str, Any]:
    """One round of the demo scenario with ``--cheat 1`` on an anvil node at its default hardfork
    and on the embedded chain (Prague): the gas of the blame step's transactions."""
    from .chain.backends import start_anvil
    from .runner import RunOptions, execute, prepare

    _check_json(args.json)
    out: dict[str, Any] = {"scenario": str(args.scenario), "key_bits": 2048, "cheats": 1, "chains": {}}

    def one(label: str, url: str | None) -> None:
        t0 = time.perf_counter()
        with console.status(f"a round with one cheat on {label}"):
            p = prepare(args.scenario, RunOptions(mode="chain", key_bits=2048, chain_url=url, settle_unconverged=True,
                                                  cheat=1))
            record = execute(p).to_dict()
        main = [r for r in record["rounds"] if r["transport"] == "chain"][-1]
        gas: dict[str, list[int]] = {}
        for t in record["transactions"]:
            gas.setdefault(t["kind"], []).append(int(t["gas"]))
        settles = gas.get("settle", [])
        out["chains"][label] = {
            "hardfork": record["chain"]["hardfork"], "participants": len(main["payments"]) - 1,
            "settled": main["settled"], "matches_mirror": main["matches_mirror"], "blamed": main["blamed"],
            "open_blame_gas": _stats(gas.get("open blame", [])),
            "settle_starting_blame_gas": settles[0] if len(settles) > 1 else None,
            "settle_after_blame_gas": settles[-1] if settles else None,
            "seconds": round(time.perf_counter() - t0, 1)}

    with start_anvil() as node:
        one("anvil", node.url)
    one("embedded", None)
    return out


def blame_command(args, console: Console) -> int:
    result = blame(args, console)
    table = Table(title="bench blame: one participant encrypts other values than it commits to (2048-bit key)")
    table.add_column("figure")
    runs = result["chains"]
    for label, run in runs.items():
        table.add_column(f"{label} ({run['hardfork']})", justify="right")
    rows = [("blamed (slashed, tokens)", lambda r: ", ".join(f"{k} ({int(v) / 1e18:g})" for k, v in r["blamed"].items())),
            ("settled, as the Python mirror", lambda r: f"{r['settled']}, {r['matches_mirror']}"),
            ("openings", lambda r: str(r["open_blame_gas"]["count"])),
            ("gas per opening, mean", lambda r: f"{r['open_blame_gas']['mean']:,.0f}"),
            ("gas per opening, max", lambda r: f"{r['open_blame_gas']['max']:,}"),
            ("settle that starts the blame step", lambda r: f"{r['settle_starting_blame_gas']:,}"),
            ("settle after it (slashing)", lambda r: f"{r['settle_after_blame_gas']:,}"),
            ("wall time (s)", lambda r: f"{r['seconds']}")]
    for label, fn in rows:
        table.add_row(label, *(fn(run) for run in runs.values()))
    Console().print(table)
    _write(args.json, result, console)
    return 0
