"""The Celery application on Redis, configured so that an accepted job is never lost."""

from __future__ import annotations

from celery import Celery

from shared.config import Settings
from shared.constants import INFER_QUEUE, INFER_TASK


def make_celery(settings: Settings) -> Celery:
    app = Celery("asyncinfer", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        # Acknowledge a message only after its batch has run: a worker that dies mid-batch
        # leaves the message unacknowledged and Redis hands it out again.
        task_acks_late=True,
        # Celery otherwise acknowledges a task whose pool child was killed (OOM, SIGKILL).
        task_reject_on_worker_lost=True,
        # Each prefetched message waits a whole visibility timeout after a crash, so a worker
        # holds no more than it is working on: one slot per batch member (see workers/run.py).
        worker_prefetch_multiplier=1,
        broker_transport_options={
            # Longer than the slowest batch, short enough that a crashed worker's jobs come
            # back within a minute or two. Redis restores unacked messages after this.
            "visibility_timeout": settings.visibility_timeout_s,
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=INFER_QUEUE,
        task_serializer="json",
        accept_content=["json"],
        # Results live in the job document, never in a Celery result backend.
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def enqueue(app: Celery, job_id: str) -> None:
    """Queue one job: the message carries only the id, the image stays in the store."""
    app.send_task(INFER_TASK, args=[job_id], queue=INFER_QUEUE)
