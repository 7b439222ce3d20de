"""On-chain side of gridshare: compiler, chain backends, and the typed market wrapper.

``compile_contracts`` is imported eagerly (cheap); the web3-based names load on first use.
"""
from .compiler import Artifact, CompileError, compile_contracts

_LAZY = {
    "connect": "backends", "Chain": "backends", "ChainError": "backends", "ContractRevert": "backends",
    "start_anvil": "backends", "AnvilProcess": "backends",
    "Market": "market", "RoundParams": "market", "Reveal": "market", "commitment": "market",
}

__all__ = ["Artifact", "CompileError", "compile_contracts", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
