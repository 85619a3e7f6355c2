"""Admission against the backlog: how many jobs wait, how fast they drain, and whether more fit.

The check and the reservation are one Redis script, so concurrent submits on any number of
gateways cannot overshoot the limit: each reserves its jobs before it stores and queues them, and
releases the reservation once they are on the queue (where the queue's length counts them). A
reservation that a crashed gateway never released stops counting after RESERVATION_TTL_S.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import redis

from api.drain_rate import DrainRate, seconds_to_drain
from shared.constants import ADMISSION_RESERVATIONS_KEY, RESERVATION_TTL_S
from shared.errors import BacklogFull, DeadlineUnreachable, DependencyUnavailable

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


class Backlog:
    """One limit over every model's queue: it bounds what Redis holds, whichever model it is for."""

    def __init__(self, client: redis.Redis, limit: int, drain_rate: DrainRate, queues: Callable[[], list[str]]) -> None:
        self.client = client
        self.limit = limit
        self.drain_rate = drain_rate
        self.queues = queues
        self._reserve = client.register_script(_RESERVE)

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
            waiting = int(self._reserve(keys=[ADMISSION_RESERVATIONS_KEY, *self.queues()],
                                        args=[now, now - RESERVATION_TTL_S, member, count, self.limit]))
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
