"""One /metrics for several gateway processes on one port (api/processes.py).

Each process writes its samples to files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode, chosen by that variable when prometheus_client is imported) and a scrape, on
whichever process it lands, reads them all: counters and histograms add up, each gauge is combined
as its definition in api/metrics.py says. Every process hears every job's events, so the metrics
counted from events are counted by one of them only: the holder of a lock file in that directory.
Exemplars are not kept in this mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path
from typing import IO

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

SHARED_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# How often a process that does not count events tries to take over from one that has died.
TAKEOVER_INTERVAL_S = 1.0
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db")


def shared_dir() -> Path | None:
    directory = os.environ.get(SHARED_DIR_VARIABLE)
    return Path(directory) if directory else None


def registry_to_expose() -> CollectorRegistry:
    """This process's registry alone, or with several processes, every process's samples together."""
    directory = shared_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


def forget_dead_processes(directory: Path) -> None:
    """Drop the live gauges (open streams, the lease) of processes that have died: a process started
    in place of one that died calls this, so that the dead one's streams are not counted."""
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), path=str(directory))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, as another user
        pass
    return True


class EventCounter:
    """Whether this process counts the metrics derived from events: always when it is alone; with
    several, while it holds `event-metrics.lock`, which the kernel releases when its holder dies."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._lock: IO[str] | None = None
        self._next_try = 0.0

    def counts_here(self) -> bool:
        if self.directory is None or self._lock is not None:
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + TAKEOVER_INTERVAL_S
        lock = (self.directory / "event-metrics.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            return False
        self._lock = lock
        return True

    def close(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None


EVENT_COUNTER = EventCounter(shared_dir())
