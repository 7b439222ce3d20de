"""The mechanisms gridshare knows, by name.

One line per mechanism: its registry name (published on chain in every round it runs) and the
package that holds its ``MECHANISM`` (:class:`offchain.framework.Mechanism`). Packages load on
first use, so listing the names costs no import of any mechanism's math.
"""
from __future__ import annotations

import importlib

from .errors import MechanismError
from .framework import Mechanism

MECHANISMS: dict[str, str] = {
    "tariff": "offchain.mechanisms.tariff",
    "storage-p2p": "offchain.mechanisms.storage",
}

_loaded: dict[str, Mechanism] = {}


def register(name: str, package: str) -> None:
    """Adds a mechanism (e.g. one that lives outside this package) under ``name``."""
    MECHANISMS[name] = package
    _loaded.pop(name, None)


def unregister(name: str) -> None:
    """Removes a mechanism added with :func:`register` (and its Solidity folders from the compile)."""
    mechanism = _loaded.pop(name, None)
    MECHANISMS.pop(name, None)
    if mechanism is not None and mechanism.rule_sources:
        from .chain.compiler import remove_sources

        for folder in mechanism.rule_sources:
            remove_sources(folder)


def names() -> list[str]:
    return sorted(MECHANISMS)


def get(name: str) -> Mechanism:
    """The mechanism registered as ``name``; :class:`MechanismError` if there is none."""
    if name in _loaded:
        return _loaded[name]
    if name not in MECHANISMS:
        raise MechanismError(f"unknown mechanism {name!r} (known: {', '.join(names())})")
    try:
        mechanism = importlib.import_module(MECHANISMS[name]).MECHANISM
    except (ImportError, AttributeError) as exc:
        raise MechanismError(f"mechanism {name!r}: {MECHANISMS[name]} does not load ({exc})") from exc
    if mechanism.name != name:
        raise MechanismError(f"mechanism {name!r}: {MECHANISMS[name]} defines {mechanism.name!r}")
    if mechanism.rule_sources:
        from .chain.compiler import add_sources

        for folder in mechanism.rule_sources:
            add_sources(folder)
    _loaded[name] = mechanism
    return mechanism


def all_mechanisms() -> list[Mechanism]:
    return [get(n) for n in names()]


def load_scenario(path, prosumers: int | None = None, seed: int | None = None):
    """(mechanism, scenario) of a scenario file: the file names its ``mechanism``, whose ``parse``
    validates the rest. Cheap: no solver is imported, no profile generated."""
    from .errors import ScenarioError
    from .models.scenario import read_toml

    data = read_toml(path)
    name = data.get("mechanism")
    if name is None:
        raise ScenarioError(f"mechanism: missing (the scenario must name its mechanism, one of {', '.join(names())})")
    if not isinstance(name, str):
        raise ScenarioError(f"mechanism: must be a string, got {type(name).__name__} {name!r}")
    try:
        mechanism = get(name)
    except MechanismError as exc:
        raise ScenarioError(f"mechanism: {exc}") from None
    return mechanism, mechanism.parse(data, str(path), prosumers=prosumers, seed=seed)
