"""A child process that ends when its parent does, even when the parent is killed (Linux)."""

from __future__ import annotations

import ctypes
import os
import signal

# Loaded at import, in the parent: a subprocess's preexec_fn runs after fork, where dlopen may deadlock.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def end_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies; exit at once when it has died already."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the call above
        os._exit(1)
