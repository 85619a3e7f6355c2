"""A worker process: load the model once, then consume the queue in dynamic batches."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery
from opentelemetry.trace import SpanKind

from shared import tracing
from shared.config import Settings
from shared.constants import INFER_TASK
from shared.events import EventPublisher
from shared.lifecycle import JobLifecycle
from shared.log_relay import relay_output_as_json
from shared.logs import configure_logging
from shared.queue import enqueue, make_celery, wait_for_redis
from shared.store import open_store
from workers.faults import injected_faults
from workers.idle_flush import IdleFlushBatches, QueueIsEmpty
from workers.inference import BatchReport, BeforeInference, PassGuard, process_batch
from workers.metrics import WorkerMetrics, serve
from workers.model.classifier import Classifier
from workers.model.loading import load_classifier
from workers.time_limit import InferenceTimeLimit

if TYPE_CHECKING:
    from shared.mesh import MeshRegistration

log = logging.getLogger(__name__)

def register_infer_task(
    app: Celery,
    classifier: Classifier,
    lifecycle: JobLifecycle,
    max_batch_wait_ms: int,
    batch_idle_ms: int = 2,
    metrics: WorkerMetrics | None = None,
    before_inference: BeforeInference | None = None,
    guard: PassGuard | None = None,
    queue_is_empty: Callable[[], bool] | None = None,
) -> Any:
    """The batch task: messages are buffered until `max_batch_size` arrived, `max_batch_wait_ms`
    passed, or none came for `batch_idle_ms` (workers/idle_flush.py), then it runs once with all;
    a batch's first message runs at once when `queue_is_empty()` says nothing else waits.
    Each batch's report goes to `metrics`.

    celery-batches acknowledges every message of a batch once the task returns, even when it
    raised. So the task never raises: a job the batch could not finish goes back on the queue
    first (and if even that fails, recovery in the gateway finds it, api/recovery.py)."""

    @app.task(  # type: ignore[untyped-decorator]
        name=INFER_TASK,
        base=IdleFlushBatches,
        flush_every=classifier.max_batch_size,
        flush_interval=max_batch_wait_ms / 1000,
        flush_idle_s=batch_idle_ms / 1000,
        queue_is_empty=queue_is_empty,
        acks_late=True,
    )
    def infer(requests: list[Any]) -> None:
        if not tracing.on():
            run_batch(requests)
            return
        # One span per batch, a root of its own: a batch serves many traces, so it links to the
        # span each job's message came from (the gateway's enqueue span) instead of having a parent.
        links = {request.args[0]: tracing.link_to(getattr(request, "request_dict", None)) for request in requests}
        with tracing.span("batch", {"asyncinfer.batch_size": len(requests), "asyncinfer.model": classifier.spec.ref,
                                    "messaging.system": "celery", "messaging.operation.type": "process",
                                    "messaging.batch.message_count": len(requests)},
                          kind=SpanKind.CONSUMER, links=[link for link in links.values() if link is not None]):
            run_batch(requests, {job_id: tracing.trace_id_of(link) for job_id, link in links.items()})

    def run_batch(requests: list[Any], trace_ids: dict[str, str | None] | None = None) -> None:
        job_ids = [request.args[0] for request in requests]
        try:
            report = process_batch(job_ids, lifecycle, classifier, before_inference, guard, trace_ids)
        except Exception:
            log.exception("a batch of %d raised; queueing its jobs again", len(job_ids))
            report = BatchReport(len(job_ids), 0, unfinished=job_ids)
        lane_of_job = {request.args[0]: delivered_from(request, classifier.spec.queues[0]) for request in requests}
        for job_id, queue in [*((job_id, lane_of_job[job_id]) for job_id in report.unfinished),
                              *report.misrouted.items()]:
            try:
                enqueue(app, job_id, queue)
            except Exception as e:
                log.warning("could not queue job %s again (%s); recovery will", job_id, e)
        if metrics is not None:
            metrics.record(report)
        log.info(
            "batch of %d: %d inferred in %.1f ms, %d failed, %d skipped, %d queued again",
            report.delivered, report.inferred, report.inference_ms, report.failed, report.skipped,
            len(report.unfinished),
        )

    return infer


def delivered_from(request: Any, fallback: str) -> str:
    """The lane a message came from, to queue its job again in its tenant's turn (the job's
    document, which names the tenant, may be what could not be read)."""
    return str((getattr(request, "delivery_info", None) or {}).get("routing_key") or fallback)


def note_timeouts(lifecycle: JobLifecycle, job_ids: Sequence[str], limit_s: float) -> None:
    for job_id in job_ids:
        try:
            lifecycle.note_timeout(job_id, limit_s)
        except Exception as e:
            log.warning("job %s: could not note its timeout (%s); it ends worker_lost if it keeps failing", job_id, e)


# How a worker stopped by SIGTERM before it consumed exits (128 + SIGTERM, as a shell reports it).
STOPPED_WHILE_STARTING = 143


class StopWhileStarting:
    """The SIGTERM handler until Celery installs its warm shutdown, as it starts consuming.

    Until then the worker holds no message, only its mesh registration, so the handler
    deregisters and exits at once. (It does not raise SystemExit instead: model loading runs
    finalizers, and an exception raised inside one is swallowed: one stop in eight, here.)
    A SIGTERM during the registration itself is handled once `registration` is set, so that
    the agent never keeps one that nothing undoes."""

    def __init__(self, exit_process: Callable[[int], object] = os._exit) -> None:
        self.registration: MeshRegistration | None = None
        self._exit_process = exit_process
        self._registering = False
        self._pending = False

    def __call__(self, signum: int, frame: object) -> None:
        if self._registering:
            self._pending = True
        else:
            self.leave()

    @contextmanager
    def registering(self) -> Iterator[None]:
        self._registering = True
        try:
            yield
        finally:
            self._registering = False
        if self._pending:
            self.leave()

    def leave(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
        log.info("stopped before consuming; exiting")
        if self.registration is not None:
            self.registration.deregister()
        self._exit_process(STOPPED_WHILE_STARTING)


def run_worker(settings: Settings, *, loglevel: str = "INFO", hostname: str | None = None) -> None:
    """Consume until stopped. SIGTERM (a scale-in, a Kubernetes or compose stop) drains: Celery's
    warm shutdown stops consuming after the batch that is running, which finishes and is
    acknowledged; closing the broker connection hands the messages buffered for the next batch
    (never begun) back to the head of the queue at once (kombu's restore at shutdown); the
    presence entry goes with the consumer (workers/presence.py); then the mesh registration, here.
    Nothing the worker held waits a visibility timeout or runs twice."""
    if settings.log_format == "json":
        relay_output_as_json()  # TensorFlow's native lines too: every line of the output is JSON
    configure_logging(loglevel, settings.log_format)
    tracing.configure_tracing(tracing.WORKER_SERVICE)  # off unless OTEL_* variables say otherwise
    # Before Celery's handler (seconds of model loading, waiting for Redis), SIGTERM would kill the
    # process outright and leave the mesh registration behind.
    stop = StopWhileStarting()
    signal.signal(signal.SIGTERM, stop)
    registration = None
    if settings.mesh == "consul":
        from shared.mesh import agent_client, join_as_worker, wait_for_agent

        # Before the model loads (seconds): the sidecar can start meanwhile, and the check stays
        # critical until the consumer reports in. A SIGTERM ends the wait for the agent at once,
        # and one during the registration once it is held.
        wait_for_agent(agent_client(settings.consul_url, token=settings.consul_token.get_secret_value()),
                       settings.consul_url, settings.consul_wait_s)
        with stop.registering():
            registration = stop.registration = join_as_worker(settings)
    try:
        _consume(settings, loglevel, hostname, registration)
    finally:
        if registration is not None:
            registration.deregister()


def _consume(settings: Settings, loglevel: str, hostname: str | None, registration: MeshRegistration | None) -> None:
    spec = settings.catalogue().worker_model(settings.model)
    classifier = load_classifier(settings, spec)  # before consuming: a worker without a model takes nothing
    metrics = WorkerMetrics(classifier.spec)
    metrics.set_model(classifier.info)
    if settings.worker_metrics_port is not None:
        # Once the model is loaded: a worker that serves metrics has a model to report.
        serve(settings.worker_metrics_host, settings.worker_metrics_port)
    # After the model: in the mesh, the sidecar that carries Redis starts meanwhile.
    wait_for_redis(settings.redis_url, settings.redis_wait_s)
    store = open_store(settings)
    redis_client = redis.Redis.from_url(settings.redis_url)
    lifecycle = JobLifecycle(
        store,
        EventPublisher(redis_client),
        max_attempts=settings.max_attempts,
        store_retry_s=settings.store_retry_s,
    )
    app = make_celery(settings)
    time_limit = InferenceTimeLimit(settings.inference_timeout_s, lambda job_ids: note_timeouts(
        lifecycle, job_ids, settings.inference_timeout_s))
    register_infer_task(app, classifier, lifecycle, settings.max_batch_wait_ms, settings.batch_idle_ms, metrics,
                        before_inference=injected_faults(settings), guard=time_limit.guard,
                        queue_is_empty=QueueIsEmpty(redis_client, spec.queues) if settings.batch_start_alone else None)
    from workers.presence import presence_step

    # Gateways count live workers from these entries for the autoscaling signal (shared/scaling.py).
    app.steps["consumer"].add(presence_step(settings.redis_url, settings.worker_presence_ttl_s, spec.ref))
    if registration is not None:
        from workers.heartbeat import consumer_heartbeat_step

        # Three refreshes per TTL: one late or lost refresh does not flap the check.
        app.steps["consumer"].add(consumer_heartbeat_step(registration, settings.consul_worker_ttl_s / 3))
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--queues={','.join(spec.queues)}",  # every lane, taken in turn (shared/queue_names.py)
        # One process runs the batches inline; TensorFlow uses every core inside a batch.
        "--pool=solo",
        # With worker_prefetch_multiplier=1 this is the prefetch count: the worker holds at
        # most one batch of unacknowledged messages, so a crash delays no more than that.
        f"--concurrency={classifier.max_batch_size}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    if settings.log_format == "json":
        argv.insert(0, "--quiet")  # no start-up banner (plain text); the model's ready line says as much
    app.worker_main(argv)
