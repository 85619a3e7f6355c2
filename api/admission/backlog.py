"""Admission against the backlog: how many jobs wait, how fast they drain, and whether more fit.

The check and the reservation are one Redis script, so concurrent submits on any number of
gateways cannot overshoot the limit: each reserves its jobs before it stores and queues them, and
releases the reservation once they are on the queue (where the queue's length counts them). A
reservation that a crashed gateway never released stops counting after RESERVATION_TTL_S.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import redis

from shared.constants import ADMISSION_RESERVATIONS_KEY, RESERVATION_TTL_S
from shared.errors import BacklogFull, DeadlineUnreachable, DependencyUnavailable

# Without a measured drain rate (nothing finished lately), a client is asked to retry after this.
DEFAULT_RETRY_AFTER_S = 5
MAX_RETRY_AFTER_S = 300

# KEYS: the reservations (a sorted set of "<id>:<count>" scored by time), then every model's queue.
# ARGV: now, stale before, this reservation's member, its count, the limit.
# Returns -1 when reserved, else how many jobs wait (queued and reserved).
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local waiting = 0
for i = 2, #KEYS do
    waiting = waiting + redis.call('LLEN', KEYS[i])
end
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    waiting = waiting + tonumber(string.match(member, ':(%d+)$'))
end
if waiting + tonumber(ARGV[4]) > tonumber(ARGV[5]) then
    return waiting
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
return -1
"""


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


class Backlog:
    """One limit over every model's queue: it bounds what Redis holds, whichever model it is for."""

    def __init__(self, client: redis.Redis, limit: int, drain_rate: DrainRate, queues: Callable[[], list[str]]) -> None:
        self.client = client
        self.limit = limit
        self.drain_rate = drain_rate
        self.queues = queues

    def waiting(self) -> int:
        try:
            pipe = self.client.pipeline(transaction=False)
            for queue in self.queues():
                pipe.llen(queue)
            return sum(int(n) for n in pipe.execute())
        except redis.RedisError as e:
            raise DependencyUnavailable(f"Redis does not answer: {e}") from e

    @contextmanager
    def admit(self, count: int, deadline_s: float | None = None) -> Iterator[None]:
        """Reserve room for `count` jobs while they are stored and queued; BacklogFull (429) when
        the backlog has none, DeadlineUnreachable (429) when at the measured drain rate they could
        not start within `deadline_s`. Both say, in Retry-After, when to come back."""
        now = time.time()
        member = f"{uuid.uuid4().hex}:{count}"
        try:
            queues = self.queues()
            waiting = int(self.client.eval(_RESERVE, 1 + len(queues), ADMISSION_RESERVATIONS_KEY, *queues,
                                           now, now - RESERVATION_TTL_S, member, count, self.limit))
        except redis.RedisError as e:
            raise DependencyUnavailable(f"Redis does not answer: {e}") from e
        rate = self.drain_rate.per_s()
        if waiting >= 0:
            raise BacklogFull(
                f"{waiting:,} jobs are waiting (limit {self.limit:,}); retry later",
                retry_after_s=seconds_to_drain(waiting + count - self.limit, rate),
            )
        try:
            if deadline_s is not None and rate is not None:
                ahead = self.waiting()
                predicted_start_s = ahead / rate
                if predicted_start_s > deadline_s:
                    raise DeadlineUnreachable(
                        f"{ahead:,} jobs are ahead, draining at {rate:.1f} jobs/s: this one would start in about "
                        f"{predicted_start_s:.0f} s, after its deadline of {deadline_s:g} s",
                        retry_after_s=seconds_to_drain(ahead - rate * deadline_s, rate),
                    )
            yield
        finally:
            with suppress(redis.RedisError):  # a reservation left behind expires by itself
                self.client.zrem(ADMISSION_RESERVATIONS_KEY, member)
