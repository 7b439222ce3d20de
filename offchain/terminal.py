"""Where results are printed: standard output, at full width.

Rich cuts tables to 80 columns when standard output is not a terminal (a pipe, ``| tee``, a CI
log); a table cut there loses columns, so a pipe gets lines as wide as their content instead."""
from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 10_000  # wider than any table gridshare prints


def printer() -> Console:
    """The console results go to: the terminal's width, or unbounded width on a pipe."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)
