"""A consumer bootstep that keeps the worker's Consul TTL check passing while the consumer runs.

The refresh runs on the consumer's own timer, i.e. inside the event loop that fetches messages
and (with the solo pool) runs the batches. So the check turns critical when consuming stops for
longer than the TTL, for whatever reason: the process stopped or frozen (SIGSTOP), a batch stuck,
the consumer lost its broker and is reconnecting, not only when the process is gone.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from shared.mesh import MeshRegistration

log = logging.getLogger(__name__)


def consumer_heartbeat_step(registration: MeshRegistration, interval_s: float) -> type[bootsteps.StartStopStep]:
    """A bootstep class (Celery instantiates steps itself) bound to this registration."""

    class ConsumerHeartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
        # After the Tasks step: the queue is being consumed when the first refresh goes out.
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self._timer_entry: Any = None

        def start(self, consumer: Any) -> None:
            refresh()
            self._timer_entry = consumer.timer.call_repeatedly(interval_s, refresh)

        def stop(self, consumer: Any) -> None:
            # Also called when the consumer restarts after a broker connection loss: the
            # check then lapses until consuming resumes and start() runs again.
            if self._timer_entry is not None:
                self._timer_entry.cancel()
                self._timer_entry = None

        shutdown = stop

    def refresh() -> None:
        try:
            registration.report_consuming()
        except Exception as e:  # the agent being away must never break consuming
            log.warning("could not refresh the Consul check %s: %s", registration.check_id, e)

    return ConsumerHeartbeat
