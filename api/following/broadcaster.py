"""One Redis subscription per gateway process, fanned out in memory to every subscriber."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis

from shared.constants import EVENTS_CHANNEL

log = logging.getLogger(__name__)

# Put to every subscription after the subscription was re-established: events may have been
# missed while it was down, so subscribers re-read the store.
RESYNC: dict[str, Any] = {"resync": True}
# What Subscription.next returns when the stream's keep-alive comment is due (compared by identity).
KEEPALIVE: dict[str, Any] = {"keepalive": True}


class Subscription:
    """The events of one stream or long poll, in the order heard.

    Thousands of streams each wait here once a second (for their queue position) and most waits
    time out: a future and a timer per wait, not asyncio.wait_for's task and cancellation.

    With `keepalive_s`, a wait also ends with KEEPALIVE once that long has passed since the last
    one: the stream sends its keep-alive comment from its own loop, so sse-starlette needs no ping
    task (and its lock) beside every stream."""

    def __init__(self, keepalive_s: float | None = None) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._keepalive_s = keepalive_s
        self._keepalive_at: float | None = None

    def put(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The next event; None after `timeout_s`; KEEPALIVE when a keep-alive comes due first."""
        if not self._events:
            loop = asyncio.get_running_loop()
            wait_s, keepalive = timeout_s, False
            if self._keepalive_s is not None:
                if self._keepalive_at is None:
                    self._keepalive_at = loop.time() + self._keepalive_s
                until_keepalive_s = max(0.0, self._keepalive_at - loop.time())
                if wait_s is None or until_keepalive_s < wait_s:
                    wait_s, keepalive = until_keepalive_s, True
            waiter = self._waiter = loop.create_future()
            timer = None if wait_s is None else loop.call_later(wait_s, _wake, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if keepalive and not self._events and self._keepalive_s is not None:
                self._keepalive_at = loop.time() + self._keepalive_s
                return KEEPALIVE
        return self._events.popleft() if self._events else None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Broadcaster:
    def __init__(self, redis_url: str, on_event: Callable[[dict[str, Any]], None] = lambda event: None) -> None:
        """`on_event` is called with every event this process hears, before its subscribers get it
        (terminal ones feed the admission's drain rate; the metrics by model read several statuses)."""
        self._redis_url = redis_url
        self._on_event = on_event
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broadcaster")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def subscribe(self, *keys: str, keepalive_s: float | None = None) -> AsyncIterator[Subscription]:
        """Events whose job id, batch id or session id is one of `keys`, from now until exit; with
        `keepalive_s`, a KEEPALIVE from `next` that often when nothing else came."""
        subscription = Subscription(keepalive_s)
        for key in keys:
            self._subscribers[key].add(subscription)
        try:
            yield subscription
        finally:
            for key in keys:
                subscribers = self._subscribers.get(key)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._subscribers[key]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def _dispatch(self, event: dict[str, Any]) -> None:
        self._on_event(event)
        targets: set[Subscription] = set()
        for key in (event.get("job_id"), event.get("batch_id"), event.get("session_id")):
            if key:
                targets |= self._subscribers.get(key, set())
        for subscription in targets:
            subscription.put(event)

    async def _run(self) -> None:
        delay_s = 0.1
        while True:
            client = aioredis.from_url(self._redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL)
                    if delay_s > 0.1:  # a reconnect: tell everyone to re-read the store
                        for subscription in {s for subs in self._subscribers.values() for s in subs}:
                            subscription.put(RESYNC)
                    self.connected.set()
                    delay_s = 0.1
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._dispatch(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis gone: keep serving, retry with backoff
                self.connected.clear()
                log.warning("event subscription lost (%s); retrying in %.1fs", e, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
            finally:
                await client.aclose()
