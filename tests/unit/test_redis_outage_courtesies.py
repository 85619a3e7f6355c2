"""Request rates and queue positions are courtesies: when Redis does not answer, requests pass and
positions are left out, and Redis is asked again only after a pause, not on every request."""

from __future__ import annotations

import time
from unittest import mock

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.drain_rate import DrainRates
from api.following.queue_position import REDIS_RETRY_S, QueuePositions
from api.rate_limit import RETRY_REDIS_AFTER_S, RateLimiter
from cli.processes import free_port


def unreachable_redis() -> redis.Redis:
    return redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def test_without_redis_requests_pass_and_redis_is_not_asked_again_at_once() -> None:
    limiter = RateLimiter(unreachable_redis(), per_s=1, burst=1)
    limiter.admit("key:a")  # refused connection: passes
    with mock.patch.object(limiter, "_take", side_effect=AssertionError("asked Redis again")):
        limiter.admit("key:a")
    assert RETRY_REDIS_AFTER_S >= 1


def test_without_redis_a_queued_job_has_no_position_and_redis_is_not_asked_again_at_once() -> None:
    catalogue = mock.Mock()
    catalogue.queues.return_value = {"m@1": ["asyncinfer.infer.m.1.00"]}
    positions = QueuePositions(unreachable_redis(), catalogue, DrainRates())
    doc = {"id": "j1", "status": "queued", "tenant": "t", "model": {"name": "m", "version": "1"}}
    assert positions.position(doc) is None
    started = time.monotonic()
    with mock.patch.object(positions, "reading", side_effect=AssertionError("asked Redis again")):
        assert positions.position(doc) is None
    assert time.monotonic() - started < 0.1 and REDIS_RETRY_S >= 1
