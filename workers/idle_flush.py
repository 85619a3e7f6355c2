"""Dynamic batching that does not make a lone job wait: celery-batches' `Batches`, flushed also
when the queue has gone quiet, or at once when nothing else is waiting.

`Batches` flushes when `flush_every` messages are buffered or on a repeating `flush_interval`
timer. With the interval alone, a job arriving at an idle worker waits the whole interval for
company that is not coming (20 ms on a ~5 ms inference). Here every message also (re)arms a short
idle timer: when no further message arrives within `flush_idle_s`, the buffer is flushed. Under
load, messages stream in faster than that (one Redis round trip apart), so batches still fill up
to `flush_every` or the interval.

The first message of a batch also asks Redis whether anything else waits in the worker's queues
(`queue_is_empty`): if not, it runs at once instead of after the idle time, which measured about
3 ms at light load (kombu's timer fires late by most of a millisecond). When messages do wait (the
batch a client POSTed, the queue a finished batch left), it waits for them as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery_batches import Batches

# KEYS: the queues. Returns how many messages they hold.
_WAITING = """
local waiting = 0
for i = 1, #KEYS do
    waiting = waiting + redis.call('LLEN', KEYS[i])
end
return waiting
"""


class QueueIsEmpty:
    """Whether none of `queues` (a model version's lanes) holds a message: one Redis round trip.
    When Redis does not answer, False: the batch waits for the idle time, as it would without."""

    def __init__(self, client: redis.Redis, queues: Sequence[str]) -> None:
        self.queues = list(queues)
        self._waiting = client.register_script(_WAITING)

    def __call__(self) -> bool:
        try:
            return int(self._waiting(keys=self.queues)) == 0
        except redis.RedisError:
            return False


class IdleFlushBatches(Batches):  # type: ignore[misc]
    flush_idle_s = 0.002
    queue_is_empty: Callable[[], bool] | None = None  # a QueueIsEmpty; None: always the idle time
    _idle_tref: Any = None

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:  # Celery calls it by this name
        handle = super().Strategy(task, app, consumer)
        timer = consumer.timer

        def handle_and_rearm(*args: Any, **kwargs: Any) -> None:
            first = self._buffer.empty()
            handle(*args, **kwargs)  # buffers the message, or flushes a full batch inline
            if self._idle_tref is not None:
                self._idle_tref.cancel()
                self._idle_tref = None
            if self._buffer.empty():
                return
            if first and self.queue_is_empty is not None and self.queue_is_empty():
                self._do_flush()
                return
            self._idle_tref = timer.call_after(self.flush_idle_s, self._flush_when_idle)

        return handle_and_rearm

    def _flush_when_idle(self) -> None:
        self._idle_tref = None
        if not self._buffer.empty():
            self._do_flush()
