"""Everything the autoscaling signal counts, read from Redis in one transaction (shared/scaling.py
computes the signal from it).

One MULTI/EXEC, so the counts are of one moment: a message moving from the queue's list into the
`unacked` hash as a worker takes it is counted once, not twice or not at all. What can still be
counted twice, for a moment: a job that a worker puts back on the queue before it acknowledges the
delivery it could not finish, and a batch's jobs between being queued and the release of their
admission reservation (milliseconds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from shared.constants import (
    ADMISSION_RESERVATIONS_KEY,
    RESERVATION_TTL_S,
    UNACKED_KEY,
    WORKERS_PRESENT_KEY,
)
from shared.presence import count_live, redis_time_s
from shared.scaling import WorkCounts


def _reserved_jobs(members: list[bytes | str]) -> int:
    """Admission reservations are "<id>:<count>" (api/admission/backlog.py)."""
    return sum(int((m.decode() if isinstance(m, bytes) else m).rsplit(":", 1)[1]) for m in members)


def _routing_key(raw: bytes | str) -> str:
    """kombu keeps each unacknowledged delivery as [message, exchange, routing key] (the queue's name)."""
    return str(json.loads(raw)[2])


def _of_models(workers: list[tuple[bytes | str, float]], refs: Iterable[str]) -> list[tuple[str, float]]:
    """The presence entries of workers of these model versions: each entry starts with its model's
    `name@version/` (workers/presence.py)."""
    prefixes = tuple(f"{ref}/" for ref in refs)
    entries = [((m.decode() if isinstance(m, bytes) else m), lapses_at) for m, lapses_at in workers]
    return [entry for entry in entries if entry[0].startswith(prefixes)]


def count_work(client: redis.Redis, queues: dict[str, str]) -> WorkCounts:
    """The work of the model versions `queues` names (`name@version` → its queue): what waits in
    their queues, is held by their workers, and their live workers; with admission reservations,
    which are not told apart by model. Raises RedisError when Redis does not answer."""
    # Reservations are scored on the gateways' clocks, as admission's own script reads them.
    stale_before = time.time() - RESERVATION_TTL_S
    pipe = client.pipeline(transaction=True)
    pipe.time()
    pipe.hvals(UNACKED_KEY)
    pipe.zrangebyscore(ADMISSION_RESERVATIONS_KEY, f"({stale_before}", "+inf")
    pipe.zrange(WORKERS_PRESENT_KEY, 0, -1, withscores=True)
    for queue in queues.values():
        pipe.llen(queue)
    now, held, reservations, workers, *waiting = pipe.execute()
    wanted = set(queues.values())
    return WorkCounts(
        waiting=sum(int(n) for n in waiting),
        unacknowledged=sum(1 for raw in held if _routing_key(raw) in wanted),
        admitting=_reserved_jobs(reservations),
        live_workers=count_live(_of_models(workers, queues), redis_time_s(now)),
    )


@dataclass(frozen=True)
class ModelWork:
    waiting: int  # messages in the model version's queue
    live_workers: int  # its workers whose presence entry is current


def work_by_model(client: redis.Redis, queues: dict[str, str]) -> dict[str, ModelWork]:
    """For each model version (`name@version` → its queue), what waits and who serves it."""
    pipe = client.pipeline(transaction=True)
    pipe.time()
    pipe.zrange(WORKERS_PRESENT_KEY, 0, -1, withscores=True)
    for queue in queues.values():
        pipe.llen(queue)
    now, workers, *waiting = pipe.execute()
    now_s = redis_time_s(now)
    return {
        ref: ModelWork(int(length), count_live(_of_models(workers, [ref]), now_s))
        for ref, length in zip(queues, waiting, strict=True)
    }
