"""gridshare's one error hierarchy.

Every failure a user can cause or meet is a :class:`GridshareError`; the command line prints it
as one line ``gridshare: error: <message>`` and exits with its ``exit_code`` (2), never with a
traceback. A run that ends without meeting its own stop rule is not an error but a result with
exit status 3 (:data:`NOT_CONVERGED_EXIT`).
"""
from __future__ import annotations

NOT_CONVERGED_EXIT = 3


class GridshareError(Exception):
    """A user-facing failure: reported in one line, exit status 2."""

    exit_code = 2


class UsageError(GridshareError, ValueError):
    """A bad command-line argument (e.g. a key size, an option that does not apply)."""


class ScenarioError(GridshareError, ValueError):
    """A scenario file or argument is invalid; the message starts with the offending field."""


class OutputError(GridshareError, ValueError):
    """The output folder (or file) cannot take this run."""

    @classmethod
    def check_file(cls, path, what: str) -> None:
        """A file may be written at ``path`` (checked before any work)."""
        import os
        from pathlib import Path

        path = Path(path)
        if path.is_dir():
            raise cls(f"{what} {path} is a folder")
        if path.exists() and not os.access(path, os.W_OK):
            raise cls(f"{what} {path}: cannot write it")
        cls.check_parent(path, what)

    @classmethod
    def check_parent(cls, path, what: str) -> None:
        """``path``'s nearest existing ancestor is a folder we may write in (checked before any work)."""
        import os
        from pathlib import Path

        parent = Path(path).parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise cls(f"{what} {path}: {parent} is a file, not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise cls(f"{what} {path}: cannot write in {parent}")


class ChainError(GridshareError, RuntimeError):
    """The chain is unreachable, not an Ethereum node, or cannot run the contracts."""


class CompileError(GridshareError, RuntimeError):
    """The compiler reported errors; the message lists ``contracts/X.sol:LINE:COL: message``."""


class SolverError(GridshareError, RuntimeError):
    """An optimisation problem could not be solved (infeasible, or the solver failed)."""


class ProtocolViolation(GridshareError, RuntimeError):
    """A party (or the chain) did something the protocol forbids, detected during a run."""


class MechanismError(GridshareError, LookupError):
    """An unknown mechanism name, or a mechanism package that does not load."""
