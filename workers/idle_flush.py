"""Dynamic batching that does not make a lone job wait: celery-batches' `Batches`, flushed also
when the queue has gone quiet.

`Batches` flushes when `flush_every` messages are buffered or on a repeating `flush_interval`
timer. With the interval alone, a job arriving at an idle worker waits the whole interval for
company that is not coming (20 ms on a ~5 ms inference). Here every message also (re)arms a short
idle timer: when no further message arrives within `flush_idle_s`, the buffer is flushed. Under
load, messages stream in faster than that (one Redis round trip apart), so batches still fill up
to `flush_every` or the interval; at light load a job runs `flush_idle_s` after it arrived.
"""

from __future__ import annotations

from typing import Any

from celery_batches import Batches


class IdleFlushBatches(Batches):  # type: ignore[misc]
    flush_idle_s = 0.002
    _idle_tref: Any = None

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:  # Celery calls it by this name
        handle = super().Strategy(task, app, consumer)
        timer = consumer.timer

        def handle_and_rearm(*args: Any, **kwargs: Any) -> None:
            handle(*args, **kwargs)  # buffers the message, or flushes a full batch inline
            if self._idle_tref is not None:
                self._idle_tref.cancel()
            self._idle_tref = timer.call_after(self.flush_idle_s, self._flush_when_idle)

        return handle_and_rearm

    def _flush_when_idle(self) -> None:
        self._idle_tref = None
        if not self._buffer.empty():
            self._do_flush()
