"""The queue: the Celery application on Redis, configured so that an accepted job is never lost,
and the probes that tell whether Redis answers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import redis
from celery import Celery
from kombu.messaging import Producer
from opentelemetry.trace import SpanKind
from redis.backoff import NoBackoff
from redis.retry import Retry
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from shared.config import Settings
from shared.constants import INFER_TASK, UNACKED_KEY
from shared.errors import RedisUnreachable
from shared.jobs import JobDoc
from shared.queue_names import queue_name
from shared.redis_transport import TRANSPORT
from shared.tracing import message_headers, on, span


def make_celery(settings: Settings) -> Celery:
    app = Celery("asyncinfer", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        # kombu's Redis transport, reusing one Redis client per channel (shared/redis_transport.py).
        broker_transport=TRANSPORT,
        # Acknowledge a message only after its batch has run: a worker that dies mid-batch
        # leaves the message unacknowledged and Redis hands it out again.
        task_acks_late=True,
        # Celery otherwise acknowledges a task whose pool child was killed (OOM, SIGKILL).
        task_reject_on_worker_lost=True,
        # Each prefetched message waits a whole visibility timeout after a crash, so a worker
        # holds no more than it is working on: one slot per batch member (see workers/worker.py).
        worker_prefetch_multiplier=1,
        # After a broker reconnect Celery cuts the prefetch count to what is free and restores it
        # as tasks finish; batched tasks never report finishing that way, so the worker stayed at
        # one message at a time (1 job/s, measured) until restarted. Our prefetch is one batch
        # anyway, and a reconnected worker holds nothing unacknowledged (Redis restored it).
        worker_enable_prefetch_count_reduction=False,
        broker_transport_options={
            # Longer than the slowest batch, short enough that a crashed worker's jobs come
            # back within a minute or two. Redis restores unacked messages after this.
            "visibility_timeout": settings.visibility_timeout_s,
        },
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        # Results live in the job document, never in a Celery result backend.
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def queue_of(doc: JobDoc) -> str:
    """The queue of the model version a job was accepted for: its tenant's lane."""
    return queue_name(doc["model"]["name"], doc["model"]["version"], doc["tenant"])


def enqueue(app: Celery, job_id: str, queue: str, producer: Producer | None = None) -> None:
    """Queue one job on its model's queue: the message carries only the id, the image stays in the
    store. The task id is the job id, so that recovery can tell which jobs have a message
    (job_ids_with_a_message).

    With tracing on, the publish is an `enqueue` span (a child of the current one: the request's on the
    gateway), whose context the message carries in its headers for the worker's batch span to link to."""
    if not on():
        app.send_task(INFER_TASK, args=[job_id], queue=queue, task_id=job_id, producer=producer)
        return
    with span("enqueue", {"messaging.system": "celery", "messaging.operation.type": "send",
                          "messaging.destination.name": queue, "messaging.message.id": job_id,
                          "asyncinfer.job_id": job_id}, kind=SpanKind.PRODUCER):
        app.send_task(INFER_TASK, args=[job_id], queue=queue, task_id=job_id, headers=message_headers(),
                      producer=producer)


def enqueue_all(app: Celery, jobs: Sequence[tuple[str, str]]) -> None:
    """Queue every (job id, queue) of `jobs` in one Redis round trip: kombu's publish batch buffers
    the messages in one pipeline and sends it as the block ends. If this raises, any of the messages
    may be on the queue (kombu's BatchPublishError: delivery uncertain)."""
    # Room for an LPUSH per message and a PEXPIRE per priority level (kombu has at most 10) on a
    # queue that expires, so that the batch never flushes part-way.
    with app.producer_or_acquire() as producer, producer.batch(max_size=11 * len(jobs)):
        for job_id, queue in jobs:
            enqueue(app, job_id, queue, producer)


def job_ids_with_a_message(client: redis.Redis, job_ids: Iterable[str], queues: Sequence[str]) -> set[str]:
    """Which of `job_ids` have a message in Redis: waiting in one of `queues`, or delivered to a
    worker that has not acknowledged it (kombu keeps those in the `unacked` hash until the ack, and
    puts them back after the visibility timeout). All are read in one transaction, so a message
    moving from one to the other is seen in exactly one of them."""
    pipe = client.pipeline(transaction=True)
    for queue in queues:
        pipe.lrange(queue, 0, -1)
    pipe.hvals(UNACKED_KEY)
    *lists, held = pipe.execute()
    present = {json.loads(raw)["headers"]["id"] for waiting in lists for raw in waiting}
    present |= {json.loads(raw)[0]["headers"]["id"] for raw in held}
    return present & set(job_ids)


def ping_on_a_new_connection(url: str, timeout_s: float) -> None:
    """PING Redis over a connection opened for this alone, one attempt; raises RedisError."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    finally:
        client.close()


def redis_answers(url: str, timeout_s: float = 0.5) -> bool:
    try:
        ping_on_a_new_connection(url, timeout_s)
        return True
    except redis.RedisError:
        return False


def wait_for_redis(url: str, wait_s: float) -> None:
    """Return once Redis answers; RedisUnreachable (a start-up error) after `wait_s` seconds."""
    retrying = Retrying(retry=retry_if_exception_type(redis.RedisError), stop=stop_after_delay(wait_s),
                        wait=wait_fixed(0.5), reraise=True)
    try:
        retrying(ping_on_a_new_connection, url, timeout_s=1.0)
    except redis.RedisError as e:
        raise RedisUnreachable(
            f"no Redis answered at ASYNCINFER_REDIS_URL={url} within {wait_s:g} s ({type(e).__name__}); "
            "start it (asyncinfer up starts one) or fix the URL"
        ) from e
