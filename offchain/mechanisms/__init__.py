"""Pure market math (no chain, no crypto): the tariff iteration of paper C and its references."""
from .tariff import (
    Decision,
    PlaintextResult,
    ReferenceResult,
    TariffIteration,
    TariffRule,
    aggregate,
    centralized_reference,
    energy_fixed,
    quantise,
    run_plaintext,
    to_fixed,
)

__all__ = ["Decision", "PlaintextResult", "ReferenceResult", "TariffIteration", "TariffRule",
           "aggregate", "centralized_reference", "energy_fixed", "quantise", "run_plaintext",
           "to_fixed"]
