"""shared/redis_transport.py on a real Redis: Celery's channels use it, a channel hands out one Redis
client for all its commands, and a channel whose pool was replaced gets a client of the new pool."""

from __future__ import annotations

import redis

from shared.config import Settings
from shared.queue import enqueue, make_celery
from shared.redis_transport import Channel
from tests.support.pipeline import fresh_redis_database


def test_a_channel_reuses_one_client_for_its_commands(redis_url: str) -> None:
    url = fresh_redis_database(redis_url)
    app = make_celery(Settings(redis_url=url))
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
        channel._disconnect_pools()  # as kombu does when it drops a channel's connections
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
            assert third.ping()
    for index in range(3):
        enqueue(app, f"job-{index}", "asyncinfer.infer.transport-test.1.00")
    assert redis.Redis.from_url(url).llen("asyncinfer.infer.transport-test.1.00") == 3
