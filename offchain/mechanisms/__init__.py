"""Market math: the tariff iteration of paper C, the shared-storage + P2P ADMM market of paper A
(with its message exchanges: plaintext, or Paillier-encrypted and masked in process), their
centralized references, and the settlement rules the contracts implement, in Python."""
from .admm import (
    AdmmProsumer,
    AdmmResult,
    AdmmSettings,
    Allocation,
    CaseResult,
    CaseTable,
    Bill,
    InProcessExchange,
    PlainSumChannel,
    PrivacyResult,
    PrivateSumChannel,
    QPResult,
    StorageBroadcast,
    Step,
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
           "Bill", "Decision", "InProcessExchange", "PlainSumChannel", "PlaintextResult", "PrivacyResult",
           "PrivateSumChannel", "QPResult", "ReferenceResult", "StorageBroadcast", "Step", "StorageOperator",
           "SumChannel", "TariffIteration", "TariffRule", "aggregate", "centralized_qp",
           "centralized_reference", "plaintext_exchange", "privacy_experiment", "private_exchange",
           "quantise", "run_admm", "run_cases", "run_plaintext", "solve_case"]
