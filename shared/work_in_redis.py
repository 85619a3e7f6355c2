"""Everything the autoscaling signal counts, read from Redis in one transaction (shared/scaling.py
computes the signal from it).

One MULTI/EXEC, so the counts are of one moment: a message moving from the queue's list into the
`unacked` hash as a worker takes it is counted once, not twice or not at all. What can still be
counted twice, for a moment: a job that a worker puts back on the queue before it acknowledges the
delivery it could not finish, and a batch's jobs between being queued and the release of their
admission reservation (milliseconds).
"""

from __future__ import annotations

import time

import redis

from shared.constants import (
    ADMISSION_RESERVATIONS_KEY,
    INFER_QUEUE,
    RESERVATION_TTL_S,
    UNACKED_KEY,
    WORKERS_PRESENT_KEY,
)
from shared.presence import count_live, redis_time_s
from shared.scaling import WorkCounts


def _reserved_jobs(members: list[bytes | str]) -> int:
    """Admission reservations are "<id>:<count>" (api/admission/backlog.py)."""
    return sum(int((m.decode() if isinstance(m, bytes) else m).rsplit(":", 1)[1]) for m in members)


def count_work(client: redis.Redis) -> WorkCounts:
    """Raises RedisError when Redis does not answer."""
    # Reservations are scored on the gateways' clocks, as admission's own script reads them.
    stale_before = time.time() - RESERVATION_TTL_S
    pipe = client.pipeline(transaction=True)
    pipe.time()
    pipe.llen(INFER_QUEUE)
    pipe.hlen(UNACKED_KEY)
    pipe.zrangebyscore(ADMISSION_RESERVATIONS_KEY, f"({stale_before}", "+inf")
    pipe.zrange(WORKERS_PRESENT_KEY, 0, -1, withscores=True)
    now, waiting, unacknowledged, reservations, workers = pipe.execute()
    return WorkCounts(
        waiting=int(waiting),
        unacknowledged=int(unacknowledged),
        admitting=_reserved_jobs(reservations),
        live_workers=count_live(workers, redis_time_s(now)),
    )
