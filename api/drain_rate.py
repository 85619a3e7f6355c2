"""How fast jobs leave: jobs finished per second, measured from the terminal events a gateway hears,
and the Retry-After it gives for a backlog to drain. Admission (api/admission/) and the queue
position's estimates (api/following/queue_position.py) both divide by it."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

# Without a measured drain rate (nothing finished lately), a client is asked to retry after this.
DEFAULT_RETRY_AFTER_S = 5
MAX_RETRY_AFTER_S = 300


class DrainRate:
    """Jobs finished per second, from the terminal events this gateway hears (every gateway hears
    every job's, so all of them measure the same rate)."""

    def __init__(self, window_s: float = 30.0, min_events: int = 5) -> None:
        self.window_s = window_s
        self.min_events = min_events
        self._finished_at: deque[float] = deque()
        self._lock = threading.Lock()  # the event loop records, the submit threads read

    def record(self, at_s: float | None = None) -> None:
        with self._lock:
            self._finished_at.append(time.monotonic() if at_s is None else at_s)

    def per_s(self, now_s: float | None = None) -> float | None:
        """The rate over the last window, or None with too few jobs finished to tell."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            while self._finished_at and self._finished_at[0] < now - self.window_s:
                self._finished_at.popleft()
            if len(self._finished_at) < self.min_events:
                return None
            # Since the oldest finish in the window, not over the window's length: the rate is
            # right from the first jobs, and falls as soon as finishing stops.
            return len(self._finished_at) / max(now - self._finished_at[0], 1.0)


class DrainRates:
    """A DrainRate for each key (a tenant, a model version), made when first used."""

    def __init__(self) -> None:
        self._rates: dict[str, DrainRate] = {}
        self._lock = threading.Lock()

    def of(self, key: str) -> DrainRate:
        with self._lock:
            return self._rates.setdefault(key, DrainRate())


def seconds_to_drain(jobs: float, rate_per_s: float | None) -> int:
    """A Retry-After for `jobs` to leave the queue at `rate_per_s`."""
    if rate_per_s is None:
        return DEFAULT_RETRY_AFTER_S
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(jobs / rate_per_s)))
