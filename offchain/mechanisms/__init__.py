"""Pure market math (no chain, no crypto): the tariff iteration of paper C and its references."""
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

__all__ = ["Decision", "PlaintextResult", "ReferenceResult", "TariffIteration", "TariffRule",
           "aggregate", "centralized_reference", "quantise", "run_plaintext"]
