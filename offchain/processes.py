"""Child processes that do not outlive their parent."""
from __future__ import annotations

import signal


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """In the child (an initializer or ``preexec_fn``): the kernel sends it ``signum`` when its
    parent dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG); elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
