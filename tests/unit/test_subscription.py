"""A stream's subscription (api/following/broadcaster.py): events in the order heard, a wait that
ends with the next event or its timeout, never losing an event that came meanwhile; with a keep-alive
interval, a KEEPALIVE when one is due."""

from __future__ import annotations

import asyncio
import time

from api.following.broadcaster import KEEPALIVE, Subscription


def test_events_put_before_a_wait_come_out_at_once_in_order() -> None:
    subscription = Subscription()
    subscription.put({"seq": 1})
    subscription.put({"seq": 2})

    async def two() -> list[object]:
        return [await subscription.next(timeout_s=5), await subscription.next(timeout_s=5)]

    started = time.monotonic()
    assert asyncio.run(two()) == [{"seq": 1}, {"seq": 2}]
    assert time.monotonic() - started < 1


def test_a_wait_with_nothing_heard_ends_with_none_after_its_timeout() -> None:
    subscription = Subscription()
    started = time.monotonic()

    assert asyncio.run(subscription.next(timeout_s=0.2)) is None
    assert 0.18 <= time.monotonic() - started < 2


def test_an_event_put_during_a_wait_wakes_it_and_a_later_wait_still_times_out() -> None:
    subscription = Subscription()

    async def wait_and_put() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, subscription.put, {"seq": 3})
        woken = await subscription.next(timeout_s=30)
        return woken, await subscription.next(timeout_s=0.1)

    started = time.monotonic()
    assert asyncio.run(wait_and_put()) == ({"seq": 3}, None)
    assert time.monotonic() - started < 5


def test_a_wait_cancelled_by_its_stream_closing_keeps_later_events_for_the_next_wait() -> None:
    subscription = Subscription()

    async def cancel_then_wait() -> object:
        waiting = asyncio.create_task(subscription.next(timeout_s=30))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        subscription.put({"seq": 4})
        return await subscription.next(timeout_s=5)

    assert asyncio.run(cancel_then_wait()) == {"seq": 4}


def test_with_a_keepalive_a_quiet_wait_ends_with_keepalive_each_interval_and_events_still_come_first() -> None:
    subscription = Subscription(keepalive_s=0.1)

    async def waits() -> tuple[list[object], float, object]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        two = [await subscription.next(timeout_s=30), await subscription.next(timeout_s=30)]
        took_s = loop.time() - started
        subscription.put({"seq": 5})
        return two, took_s, await subscription.next(timeout_s=30)

    two, took_s, event = asyncio.run(waits())
    assert two == [KEEPALIVE, KEEPALIVE]
    assert 0.18 <= took_s < 2  # one interval after the other, not both at once
    assert event == {"seq": 5}


def test_a_timeout_shorter_than_the_keepalive_still_ends_with_none_and_does_not_push_the_keepalive_back() -> None:
    subscription = Subscription(keepalive_s=0.3)

    async def waits() -> list[object]:
        return [await subscription.next(timeout_s=0.1), await subscription.next(timeout_s=0.1),
                await subscription.next(timeout_s=30)]

    started = time.monotonic()
    assert asyncio.run(waits()) == [None, None, KEEPALIVE]
    assert time.monotonic() - started < 0.3 + 1  # due 0.3 s after the first wait, not after the last


def test_without_a_keepalive_a_wait_never_ends_with_one() -> None:
    assert asyncio.run(Subscription().next(timeout_s=0.2)) is None
