"""Pure market math (no chain, no crypto): the tariff iteration of paper C, the shared-storage
+ P2P ADMM market of paper A, and their references."""
from .admm import (
    AdmmProsumer,
    AdmmResult,
    AdmmSettings,
    Allocation,
    CaseResult,
    CaseTable,
    Exchange,
    P2PCentre,
    PlainSumChannel,
    PrivacyResult,
    PrivateSumChannel,
    QPResult,
    StorageBroadcast,
    StorageOperator,
    SumChannel,
    centralized_qp,
    plaintext_exchange,
    privacy_experiment,
    private_exchange,
    run_admm,
    run_cases,
    solve_case,
)
from .tariff import (
    Decision,
    PlaintextResult,
    ReferenceResult,
    TariffIteration,
    TariffRule,
    aggregate,
    centralized_reference,
    quantise,
    run_plaintext,
)

__all__ = ["AdmmProsumer", "AdmmResult", "AdmmSettings", "Allocation", "CaseResult", "CaseTable",
           "Decision", "Exchange", "P2PCentre", "PlainSumChannel", "PlaintextResult", "PrivacyResult",
           "PrivateSumChannel", "QPResult", "ReferenceResult", "StorageBroadcast", "StorageOperator",
           "SumChannel", "TariffIteration", "TariffRule", "aggregate", "centralized_qp",
           "centralized_reference", "plaintext_exchange", "privacy_experiment", "private_exchange",
           "quantise", "run_admm", "run_cases", "run_plaintext", "solve_case"]
