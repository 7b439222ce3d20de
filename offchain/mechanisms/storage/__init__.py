"""Shared-storage capacity renting with P2P trading (registry name ``storage-p2p``): a generalized
Nash game whose variational equilibrium is one convex QP, solved by a two-block ADMM whose
messages are Paillier-encrypted sums for the storage operator and pad-sealed pair messages (Sun,
Chen, Chen, Tang, Mei, "A capacity renting framework for shared energy storage considering
peer-to-peer energy trading of prosumers with privacy protection", arXiv:2411.06107).

Layers: ``scenario.py`` (its tables), ``market.py`` (pure math and the parties' logic),
``settlement.py`` (the Python mirror of the rule), ``audit.py``, ``figures.py``,
``experiment.py`` (the operator's inference experiment), ``contracts/rules/StorageRule.sol``.
Its own ``gridshare run`` options: ``--case 1|2|3|4|all`` (1 grid only, 2 P2P, 3 shared storage,
4 both; default 4) and ``--privacy``.
"""
from __future__ import annotations

from typing import Any

from ...framework import Job, Mechanism, MirrorSettlement, Option, PartySummary, RoundSetup, Summary
from ...units import tokens
from .settlement import ITEMS

SLOT_BITS = 48
RENT_CAP = 100.0  # the price band of the rents (token per kWh or kW per day): a sanity bound
COLLATERAL_TOKENS = 10_000  # deposited by every prosumer and the grid account; withdrawn after settlement
CASES = ("1", "2", "3", "4", "all")


def admm_setup(models, data, settings, label: str = "", proximal: bool = True) -> RoundSetup:
    """One case of the market as a round: fresh parties, public parameters, terms, mirror."""
    import numpy as np

    from ...units import price_to_fixed
    from .market import AdmmProsumer, StorageOperatorAgent, consensus_entries, operator_slots
    from .settlement import TERMS_ABI, market_terms, settlement_amounts

    n, T = data.n, data.T
    st = data.storage
    # the revealed capacities may exceed the store by the consensus residual (4x the stop tolerance)
    slack = 4 * float(np.sqrt(n * consensus_entries(data))) * settings.primal_tol
    public_rule = {
        "mechanism": "storage-p2p", "case": data.case.number, "label": label,
        "settings": {k: v for k, v in settings.to_dict().items() if k != "seed"},
        "operator": {"energy_slope": st.energy_slope, "energy_price_empty": st.energy_price_empty,
                     "power_price": st.power_price, "energy_kwh": st.energy_kwh, "power_kw": st.power_kw,
                     "has_storage": data.has_storage},
        "consensus_entries": consensus_entries(data),
        "stop": "after iteration k >= 2 when the RMS residuals of k-1 (sqrt(slot / 1e3 / consensus_entries), "
                "slots 2 and 3) are at most primal_tol and dual_tol; then one closing iteration"}

    def terms(addresses: dict[str, str]) -> bytes:
        from eth_utils import to_checksum_address

        from ...chain.market import encode_abi

        t = market_terms(data, to_checksum_address(addresses["operator"]), to_checksum_address(addresses["centre"]),
                         slack)
        return encode_abi(TERMS_ABI, t.as_tuple())

    def mirror(values: list[list[int]], prices: list[int], addresses: dict[str, str],
               standing: list[int]) -> MirrorSettlement:
        s = settlement_amounts(market_terms(data, "operator", "centre", slack), prices, values, bool(data.pairs),
                               standing=standing)
        return MirrorSettlement(s.amounts, s.payees, [[it[k] for k in ITEMS] for it in s.items])

    names = set(data.names)
    return RoundSetup(
        label=label, participants=[AdmmProsumer(m, settings, i, proximal) for i, m in enumerate(models)],
        coordinator=StorageOperatorAgent(data, settings), slots=operator_slots(T), slot_bits=SLOT_BITS,
        price_floor=[0, 0], price_cap=price_to_fixed([RENT_CAP] * 2), max_iterations=settings.max_iterations + 1,
        public_rule=public_rule, settlement=mirror,
        collateral=lambda name: COLLATERAL_TOKENS * 10**18 if name == "grid" or name in names else 0,
        payees=["centre", "grid"], coordinator_role="operator", pair_lanes=T if data.pairs else 0, terms=terms,
        allow_list=True, details={"data": data, "settings": settings})


def admm_result(outcome):
    """The :class:`~offchain.mechanisms.storage.market.AdmmResult` of a finished round."""
    from .market import admm_result as assemble

    setup = outcome.setup
    closing = outcome.iterations[-1].sums
    return assemble(setup.participants, setup.coordinator, setup.details["data"],
                    [it.answer.residuals for it in outcome.iterations], closing, outcome.seconds["total"],
                    {"mode": outcome.transport.kind})


def solve_admm(models, data, settings, transport=None, executor=None, proximal: bool = True, progress=None):
    """Runs one case through the round driver (default: plaintext in process): (AdmmResult, outcome)."""
    from ...protocol.driver import run_round
    from ...protocol.transport import PlainTransport

    out = run_round(admm_setup(models, data, settings, proximal=proximal), transport or PlainTransport(),
                    executor=executor, progress=progress)
    return admm_result(out), out


class StorageMechanism(Mechanism):
    name = "storage-p2p"
    title = "shared-storage capacity renting with P2P trading"
    rule_contract = "StorageRule"
    bill_items = ITEMS
    processes_unsupported = ("its operator's closing announcement (Answer.closing) is not yet published on chain, "
                             "and a prosumer's process would not learn it")
    options = (
        Option("--case", "storage-p2p: 1 grid only, 2 P2P, 3 shared storage, 4 both, or all (default 4; case 1 is "
               "always solved centrally as every prosumer's cost alone)", choices=CASES, default="4"),
        Option("--privacy", "storage-p2p: also run the paper's inference experiment: the storage operator estimates a "
               "prosumer's Lagrangian gradient from what it sees, in plain ADMM and in the private protocol",
               action="store_true", default=False),
    )

    def parse(self, data: dict, source: str = "", prosumers: int | None = None, seed: int | None = None):
        from .scenario import parse

        return parse(data, source, prosumers=prosumers, seed=seed)

    def layout(self, scenario) -> tuple[int, int, int]:
        from .market import operator_slots

        return (operator_slots(scenario.hours), SLOT_BITS, len(scenario.prosumers))

    def iteration_cap(self, scenario) -> int:
        return scenario.admm.max_iterations + 1  # the ADMM iterations and the closing one

    def check_options(self, scenario, options: dict) -> None:
        from ...errors import UsageError

        if str(options.get("case", "4")) not in CASES:
            raise UsageError(f"--case must be one of {', '.join(CASES)}, got {options.get('case')!r}")

    def prepare(self, scenario, options: dict) -> Job:
        from ...models.profiles import build_profiles
        from ...models.storage_p2p import CASES as LABELS
        from ...models.storage_p2p import build_market
        from .market import AdmmSettings, centralized_qp

        case = str(options.get("case") or "4")
        cases = [1, 2, 3, 4] if case == "all" else [int(case)]
        profiles = build_profiles(scenario)
        settings = AdmmSettings.from_scenario(scenario)
        markets: dict[int, tuple] = {}

        def market(c: int):
            if c not in markets:
                markets[c] = build_market(scenario, c, profiles=profiles)
            return markets[c]

        def round_of(c: int):
            return lambda: admm_setup(*market(c), settings, label=f"case {c}: {LABELS[c].label}")

        return Job(scenario=scenario, rounds=[round_of(c) for c in cases],
                   labels=[f"case {c}: {LABELS[c].label}" for c in cases],
                   reference=lambda: {c: centralized_qp(*market(c)) for c in sorted({1, *cases})},
                   profiles=profiles.to_dict([p.name for p in scenario.prosumers]),
                   parameters={"prosumers": len(scenario.prosumers), "cases": cases, "admm": settings.to_dict()},
                   state={"cases": cases, "market": market, "settings": settings, "privacy": bool(options.get("privacy"))})

    def summarise(self, job: Job, outcomes: list, plain: list, reference: Any) -> Summary:
        import numpy as np

        from ...models.storage_p2p import CASES as LABELS
        from .market import CaseResult, CaseTable

        cases, names = job.state["cases"], [p.name for p in job.scenario.prosumers]
        results = {}
        for c, out in zip(cases, outcomes):
            r = admm_result(out)
            results[c] = CaseResult(c, LABELS[c].label, r.allocation, r.objective, out.transport.kind, admm=r)
        qp = reference or {}
        table = CaseTable(names, {**({1: CaseResult(1, LABELS[1].label, qp[1].allocation, qp[1].objective, "qp", qp=qp[1])}
                                     if 1 in qp and 1 not in results else {}), **results})
        main_case, main = cases[-1], outcomes[-1]
        alone = qp[1].allocation.cost if 1 in qp else None
        shared = results[main_case].allocation.cost
        bills = main.settlement.bills if main.settlement is not None else []
        parties = [PartySummary(n, "prosumer", cost_alone=float(alone[i]) if alone is not None else None,
                                cost_shared=float(shared[i]),
                                bill={k: tokens(v) for k, v in zip(ITEMS, bills[i])} if bills else {})
                   for i, n in enumerate(names)]
        parties += [PartySummary("operator", "operator"), PartySummary("centre", "centre"), PartySummary("grid", "grid")]
        details: dict[str, Any] = {
            "bill_items": list(ITEMS), "names": names, **table.to_dict(),
            "reference": {str(c): q.to_dict() for c, q in qp.items()},
            "reference_gap_pct": {str(c): 100 * (results[c].objective - qp[c].objective) / abs(qp[c].objective)
                                  for c in results if c in qp},
            # energy held in each prosumer's rented capacity, hour by hour (kWh)
            "rented_energy": {str(c): [np.asarray(s.get("shared_energy", np.zeros(job.scenario.hours))).tolist()
                                       for s in r.admm.schedules] for c, r in results.items()},
        }
        lines = []
        for c in sorted(table.results):
            r = table.results[c]
            lines.append((f"case {c} total (CNY/day)", f"{r.allocation.total:.1f} ({r.method}"
                          + (f", {r.admm.iterations} ADMM iterations, {details['reference_gap_pct'][str(c)]:+.4f}% "
                             "objective vs the centralized QP)" if r.admm is not None and str(c) in details["reference_gap_pct"]
                             else ")")))
        for v in details["violations"]:
            lines.append(("expected ordering does not hold", v))
        if job.state["privacy"]:
            details["privacy_experiment"] = self._privacy(job, cases)
            pe = details["privacy_experiment"]
            lines.append(("privacy experiment", f"case {pe['case']}, prosumer {pe['target'] + 1}: the operator's estimate "
                          f"of its Lagrangian gradient is off by a median {100 * pe['plain']['median']:.2g}% per "
                          f"iteration in plain ADMM and {100 * pe['private']['median']:.3g}% in the private protocol"))
        total_alone = float(sum(alone)) if alone is not None else None
        if 1 in table.results and main_case != 1:
            saving = table.savings()[main_case]
            headline = (f"case {main_case} market total {table.results[main_case].allocation.total:.1f} CNY/day, "
                        f"{saving:.2f}% below grid only ({table.results[1].allocation.total:.1f})")
        else:
            headline = f"case {main_case} market total {table.results[main_case].allocation.total:.1f} CNY/day"
        details["cost_alone_total"] = total_alone
        return Summary(parties, details, lines, headline)

    def _privacy(self, job: Job, cases: list[int]) -> dict:
        from .experiment import privacy_experiment

        case = max((c for c in cases if c in (3, 4)), default=4)
        models, data = job.state["market"](case)
        return {"case": case, **privacy_experiment(models, data, job.state["settings"], target=1).to_dict()}

    def audit_rules(self, published: dict, params: dict, participants: list[str]):
        from .audit import StorageRules

        return StorageRules(published, params, participants)

    def figures(self, record: dict) -> dict:
        from .figures import figures

        return figures(record)


MECHANISM = StorageMechanism()
