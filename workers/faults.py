"""Fault injection for tests: off unless a test sets ASYNCINFER_FAULT_* (refused in production)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from shared.config import Settings
from shared.jobs import JobDoc
from workers.inference import BeforeInference

log = logging.getLogger(__name__)

# What a worker killed by the kernel (SIGKILL) reports.
CRASH_EXIT_CODE = 137
HANG_S = 3600.0


def injected_faults(settings: Settings) -> BeforeInference | None:
    """The hook process_batch calls before each forward pass, or None when no fault is set."""
    crash_on, hang_on = settings.fault_crash_on_sha256, settings.fault_hang_on_sha256
    delay_s = settings.fault_inference_delay_s
    if not crash_on and not hang_on and not delay_s:
        return None
    log.warning("FAULT INJECTION ON: crash on image %s, hang on image %s, %.1f s before each forward pass",
                crash_on or "-", hang_on or "-", delay_s)

    def before_inference(docs: Sequence[JobDoc]) -> None:
        if delay_s:
            time.sleep(delay_s)
        images = {doc["input"]["sha256"] for doc in docs}
        if crash_on in images:
            log.warning("FAULT INJECTION: crashing on image %s", crash_on)
            os._exit(CRASH_EXIT_CODE)  # no clean-up, no ack: as a segfault or the OOM killer would
        if hang_on in images:
            log.warning("FAULT INJECTION: hanging on image %s", hang_on)
            time.sleep(HANG_S)  # as a runtime stuck in native code: only the time limit ends it

    return before_inference
