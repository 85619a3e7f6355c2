"""The per-batch inference time limit.

A forward pass stuck inside TensorFlow or ONNX Runtime cannot be interrupted from Python, and
`--pool=solo` has no child process for Celery to kill. So one watchdog thread times each pass;
past the limit it notes the timeout on the pass's jobs (so the one that keeps hanging ends
`timeout`, not `worker_lost`), dumps every thread's stack to the log, and exits the process.
The messages stay unacknowledged: Redis hands them out again, and redelivered jobs run each
alone (workers/inference.py), so only the image that hangs is charged for it.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

log = logging.getLogger(__name__)

# EX_TEMPFAIL: the worker gave up on a pass; a supervisor restarts it (cli/processes.py, compose).
TIMED_OUT_EXIT_CODE = 75
# Noting the timeout goes to the store; if that hangs too, the process exits anyway after this.
NOTE_GRACE_S = 10.0
# The process's real stderr: under Celery, sys.stderr is a logging proxy with no file descriptor.
STDERR_FD = 2


class InferenceTimeLimit:
    """`with limit.guard(job_ids):` around a forward pass; `note_timeout(job_ids)` runs past the limit."""

    def __init__(self, limit_s: float, note_timeout: Callable[[Sequence[str]], None],
                 exit_process: Callable[[int], None] = os._exit) -> None:
        self.limit_s = limit_s
        self._note_timeout = note_timeout
        self._exit_process = exit_process
        self._armed: tuple[float, Sequence[str]] | None = None  # (deadline on the monotonic clock, job ids)
        self._changed = threading.Condition()
        threading.Thread(target=self._watch, name="inference-time-limit", daemon=True).start()

    @contextmanager
    def guard(self, job_ids: Sequence[str]) -> Iterator[None]:
        with self._changed:
            self._armed = (time.monotonic() + self.limit_s, list(job_ids))
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._armed = None
                self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while True:
                if self._armed is None:
                    self._changed.wait()
                    continue
                deadline, job_ids = self._armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                break
        self._expire(job_ids)

    def _expire(self, job_ids: Sequence[str]) -> None:
        log.error("a forward pass over %d jobs ran past its limit of %g s; noting the timeout and exiting "
                  "(its jobs come back, each alone). Every thread's stack:", len(job_ids), self.limit_s)
        try:
            faulthandler.dump_traceback(STDERR_FD, all_threads=True)
            faulthandler.dump_traceback_later(NOTE_GRACE_S, exit=True, file=STDERR_FD)  # a store that hangs too
            self._note_timeout(job_ids)
        except Exception:
            log.exception("could not note the timeout on every job; those end worker_lost instead")
        finally:
            faulthandler.cancel_dump_traceback_later()
            self._exit_process(TIMED_OUT_EXIT_CODE)
