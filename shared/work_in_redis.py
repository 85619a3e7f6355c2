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
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

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


def count_work_by_model(client: redis.Redis, queues: Mapping[str, Sequence[str]]) -> dict[str, WorkCounts]:
    """The work of each model version `queues` names (`name@version` → its lanes), from one reading:
    what waits in its lanes, is held by its workers, and its live workers; with admission
    reservations, which are not told apart by model (each version's counts hold all of them).
    Raises RedisError when Redis does not answer."""
    # Reservations are scored on the gateways' clocks, as admission's own script reads them.
    stale_before = time.time() - RESERVATION_TTL_S
    pipe = client.pipeline(transaction=True)
    pipe.time()
    pipe.hvals(UNACKED_KEY)
    pipe.zrangebyscore(ADMISSION_RESERVATIONS_KEY, f"({stale_before}", "+inf")
    pipe.zrange(WORKERS_PRESENT_KEY, 0, -1, withscores=True)
    for lanes in queues.values():
        for queue in lanes:
            pipe.llen(queue)
    now, held, reservations, workers, *lengths = pipe.execute()
    held_from = Counter(_routing_key(raw) for raw in held)
    admitting = _reserved_jobs(reservations)
    now_s = redis_time_s(now)
    counts: dict[str, WorkCounts] = {}
    for ref, lanes in queues.items():
        waiting, lengths = lengths[:len(lanes)], lengths[len(lanes):]
        counts[ref] = WorkCounts(
            waiting=sum(int(n) for n in waiting),
            unacknowledged=sum(held_from[queue] for queue in lanes),
            admitting=admitting,
            live_workers=count_live(_of_models(workers, [ref]), now_s),
        )
    return counts


def count_work(client: redis.Redis, queues: Mapping[str, Sequence[str]]) -> WorkCounts:
    """The work of the model versions `queues` names, together (one pool's, or the whole system's)."""
    return total_work(count_work_by_model(client, queues).values())


def total_work(by_model: Collection[WorkCounts]) -> WorkCounts:
    """Model versions' counts of one reading, together."""
    return WorkCounts(
        waiting=sum(c.waiting for c in by_model),
        unacknowledged=sum(c.unacknowledged for c in by_model),
        admitting=max((c.admitting for c in by_model), default=0),  # the same reservations in each
        live_workers=sum(c.live_workers for c in by_model),
    )
