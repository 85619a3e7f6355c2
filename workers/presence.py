"""A consumer bootstep that keeps this worker's entry in the presence set (shared/presence.py), so
that gateways count it among the live workers of the autoscaling signal.

The entry appears once the consumer consumes (a worker still loading its model or connecting is not
capacity) and goes when it stops; in between, a thread refreshes it every third of its time to live,
so one late or lost refresh does not drop it. A thread rather than the consumer's timer: with the
solo pool a batch runs inside the consumer's event loop, and a worker busy with a long batch is
alive and working, which is exactly when it must keep counting. A worker killed or frozen stops
refreshing and stops counting once its entry lapses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from typing import Any

import redis
from celery import bootsteps

from shared.presence import announce, withdraw

log = logging.getLogger(__name__)


class PresenceBeacon:
    """Refreshes one worker's entry from a daemon thread between start() and stop()."""

    def __init__(self, client: redis.Redis, worker_id: str, ttl_s: float) -> None:
        self.client = client
        self.worker_id = worker_id
        self.ttl_s = ttl_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="asyncinfer-presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing and remove the entry (after the thread ended, so no refresh follows)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout=5)
        self._thread = None
        with contextlib.suppress(redis.RedisError):  # unreachable: the entry lapses by itself
            withdraw(self.client, self.worker_id)

    def _run(self) -> None:
        failing = False
        while True:
            try:
                announce(self.client, self.worker_id, self.ttl_s)
                if failing:
                    log.info("presence refreshed again as %s", self.worker_id)
                failing = False
            except redis.RedisError as e:  # Redis being away must never break consuming
                if not failing:
                    log.warning("could not refresh this worker's presence (%s); retrying", e)
                failing = True
            if self._stopping.wait(self.ttl_s / 3):
                return


def presence_step(redis_url: str, ttl_s: float, model_ref: str) -> type[bootsteps.StartStopStep]:
    """A consumer bootstep class (Celery instantiates steps itself) that announces this worker of
    the model version `model_ref` (name@version)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    class WorkerPresence(bootsteps.StartStopStep):  # type: ignore[misc]
        # After the Tasks step: the queue is being consumed when the entry first appears.
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            # The model first, so that a gateway counts each model's workers (shared/work_in_redis.py);
            # the node name (worker0@host) for people reading the set; the pid and a random part
            # so that two workers never share an entry, even with the same node name.
            worker_id = f"{model_ref}/{parent.hostname}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
            self.beacon = PresenceBeacon(client, worker_id, ttl_s)

        def start(self, consumer: Any) -> None:
            self.beacon.start()

        def stop(self, consumer: Any) -> None:
            # Also called when the consumer restarts after losing its broker: the worker then
            # stops counting until consuming resumes and start() runs again.
            self.beacon.stop()

        shutdown = stop

    return WorkerPresence
