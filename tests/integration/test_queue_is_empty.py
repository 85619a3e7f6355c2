"""workers/idle_flush.py's QueueIsEmpty on a real Redis: every lane counts, and a Redis that does
not answer means "wait for the idle time", never "run now"."""

from __future__ import annotations

import redis

from cli.processes import free_port
from shared.queue_names import model_queues
from workers.idle_flush import QueueIsEmpty


def test_a_message_in_any_lane_is_something_waiting(own_redis: redis.Redis) -> None:
    lanes = model_queues("mobilenet_v2", "1")
    is_empty = QueueIsEmpty(own_redis, lanes)
    assert is_empty()
    own_redis.lpush(lanes[-1], b"a message")
    assert not is_empty()
    own_redis.delete(lanes[-1])
    assert is_empty()


def test_a_redis_that_does_not_answer_is_not_an_empty_queue() -> None:
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    assert not QueueIsEmpty(unreachable, model_queues("mobilenet_v2", "1"))()
