"""Which workers are alive: one entry per worker in a Redis sorted set, refreshed while it consumes.

Workers run without Celery's heartbeats and gossip (workers/worker.py), so nothing else tells a
gateway how many there are. Each worker keeps an entry (workers/presence.py) scored with the time
it lapses, `ttl_s` after its last refresh; a worker that stops cleanly removes its entry, one that
dies stops counting once its entry lapses. Scores are on Redis's own clock (TIME, read inside the
same script or transaction), so workers and gateways whose clocks disagree still agree on which
entries are current.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from shared.constants import WORKERS_PRESENT_KEY

# KEYS: the presence set. ARGV: this worker's entry, its time to live in seconds.
# Drops lapsed entries (of workers that died) and lets the whole set expire when no worker is left.
_ANNOUNCE = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1000000
local ttl_s = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_s)
redis.call('ZADD', KEYS[1], now_s + ttl_s, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(ttl_s))
return 1
"""


def announce(client: redis.Redis, worker_id: str, ttl_s: float) -> None:
    """This worker is alive for the next `ttl_s` seconds (Redis's clock)."""
    client.eval(_ANNOUNCE, 1, WORKERS_PRESENT_KEY, worker_id, ttl_s)


def withdraw(client: redis.Redis, worker_id: str) -> None:
    """This worker stopped: it no longer counts, without waiting for its entry to lapse."""
    client.zrem(WORKERS_PRESENT_KEY, worker_id)


def redis_time_s(reply: tuple[int, int]) -> float:
    """Redis's TIME reply (seconds, microseconds) as seconds."""
    seconds, microseconds = reply
    return seconds + microseconds / 1_000_000


def count_live(entries: Iterable[tuple[object, float]], now_s: float) -> int:
    """How many of the presence set's (member, lapses at) entries are current at Redis time `now_s`."""
    return sum(1 for _, lapses_at in entries if lapses_at > now_s)
