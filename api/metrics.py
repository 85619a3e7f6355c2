"""Prometheus metrics of the gateway. What an autoscaler reads is the scaling signal below
(shared/scaling.py, docs/contract.md): it counts the work workers hold, not only the queue's list."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

import redis
from prometheus_client import Counter, Gauge, Histogram

from api.process_metrics import EVENT_COUNTER
from shared.jobs import parse_rfc3339
from shared.scaling import ScalingPolicy, scaling_signal
from shared.tracing import exemplar
from shared.work_in_redis import count_work_by_model, total_work

if TYPE_CHECKING:
    from api.services import Services

# With several gateway processes (api/process_metrics.py), a gauge read from Redis (or from events every
# process hears) is the same in each: their samples are combined by taking the one set last.
LATEST: Final = "livemostrecent"

JOBS_SUBMITTED = Counter("asyncinfer_jobs_submitted_total", "Jobs accepted (202), by model and version",
                         ["model", "version"])
# From the terminal events every gateway hears: each gateway counts every job (read one gateway's, or max).
JOBS_FINISHED = Counter("asyncinfer_jobs_finished_total", "Jobs that reached a terminal status, by model, version, "
                        "status and error code", ["model", "version", "status", "error_code"])
JOB_SECONDS = Histogram("asyncinfer_job_seconds", "From acceptance to a terminal status, by model and version",
                        ["model", "version"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800))
# From the first `running` event every gateway hears (a redelivery's running → running is not counted again).
JOB_QUEUED_SECONDS = Histogram("asyncinfer_job_queued_seconds", "From acceptance to the first start on a worker, "
                               "by model and version", ["model", "version"],
                               buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800))
REQUESTS_REJECTED = Counter(
    "asyncinfer_requests_rejected_total", "Requests answered with an error", ["status"]
)
QUEUE_BACKLOG = Gauge("asyncinfer_queue_backlog", "Messages waiting in the inference queue's list (not yet delivered)",
                      multiprocess_mode=LATEST)
SSE_STREAMS = Gauge("asyncinfer_sse_streams_open", "Open event streams on this gateway", multiprocess_mode="livesum")
JOBS_RECOVERED = Counter(
    "asyncinfer_jobs_recovered_total",
    "Stranded jobs this gateway queued again, by cause: queued or running without a message in Redis",
    ["cause"],
)
RECOVERY_LEASE_HELD = Gauge("asyncinfer_recovery_lease_held", "1 while this gateway holds the recoverer's lease",
                            multiprocess_mode="livemax")
for _cause in ("queued_without_message", "running_without_message"):
    JOBS_RECOVERED.labels(_cause)

# --- the autoscaling signal: the same on every gateway (read from Redis), so take max(), not sum() ---
JOBS_OUTSTANDING = Gauge(
    "asyncinfer_jobs_outstanding",
    "Jobs not finished: waiting in the queue + delivered to workers and unacknowledged + being admitted",
    multiprocess_mode=LATEST,
)
JOBS_UNACKNOWLEDGED = Gauge(
    "asyncinfer_jobs_unacknowledged",
    "Messages delivered to workers and not acknowledged yet: running, or buffered in a worker's batch",
    multiprocess_mode=LATEST,
)
WORKERS_LIVE = Gauge("asyncinfer_workers_live", "Workers whose presence entry in Redis is current",
                     multiprocess_mode=LATEST)
WORKERS_DESIRED = Gauge(
    "asyncinfer_workers_desired",
    "Workers the outstanding work needs: ceil(outstanding / ASYNCINFER_SCALE_TARGET_JOBS_PER_WORKER), "
    "within ASYNCINFER_SCALE_MIN_WORKERS..ASYNCINFER_SCALE_MAX_WORKERS",
    multiprocess_mode=LATEST,
)
# The same signal for each model version's own pool (`model` = name@version): scale each pool on these.
MODEL_JOBS_OUTSTANDING = Gauge("asyncinfer_model_jobs_outstanding",
                               "Jobs of this model version not finished (waiting, held by its workers, being admitted)",
                               ["model"], multiprocess_mode=LATEST)
MODEL_WORKERS_LIVE = Gauge("asyncinfer_model_workers_live", "Live workers of this model version", ["model"],
                           multiprocess_mode=LATEST)
MODEL_WORKERS_DESIRED = Gauge("asyncinfer_model_workers_desired",
                              "Workers this model version's outstanding work needs, as asyncinfer_workers_desired",
                              ["model"], multiprocess_mode=LATEST)
QUEUE_WAIT_PREDICTED = Gauge(
    "asyncinfer_queue_wait_predicted_seconds",
    "Outstanding jobs / drain rate: about how long a job submitted now waits; "
    "+Inf with work and no live worker, NaN while no rate is measured",
    multiprocess_mode=LATEST,
)
BACKLOG_WITHOUT_CAPACITY = Gauge(
    "asyncinfer_backlog_without_capacity", "1 while jobs are outstanding and no worker is live",
    multiprocess_mode=LATEST,
)
# --- webhooks (api/delivery/) ---
WEBHOOK_ATTEMPTS = Counter(
    "asyncinfer_webhook_attempts_total",
    "Webhook POSTs this gateway made, by result: delivered (2xx), rejected (the receiver answered another "
    "status) or unanswered (timeout, connection error, an address refused at send time)",
    ["result"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram("asyncinfer_webhook_attempt_seconds", "One webhook POST, until its status or "
                                    "its failure", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WEBHOOKS_GIVEN_UP = Counter("asyncinfer_webhooks_given_up_total",
                            "Deliveries this gateway put in the dead letters after their last attempt")
# In Redis, the same on every gateway: take max().
WEBHOOKS_PENDING = Gauge("asyncinfer_webhooks_pending", "Deliveries waiting for their next attempt or being attempted",
                         multiprocess_mode=LATEST)
WEBHOOKS_DEAD = Gauge("asyncinfer_webhook_dead_letters",
                      "Deliveries given up, waiting for an operator (asyncinfer webhooks dead-letters, replay)",
                      multiprocess_mode=LATEST)
for _result in ("delivered", "rejected", "unanswered"):
    WEBHOOK_ATTEMPTS.labels(_result)

DRAIN_RATE = Gauge(
    "asyncinfer_drain_rate_jobs_per_second",
    "Jobs finished per second, measured from terminal events; 0 while too few finished lately to measure",
    multiprocess_mode=LATEST,
)


def job_exemplar(doc: dict[str, Any]) -> dict[str, str] | None:
    """The trace of the request that submitted the job, when it was traced."""
    return exemplar(doc.get("trace_id"))


def _model_of(doc: dict[str, Any]) -> tuple[str, str]:
    model = doc.get("model") or {}
    return str(model.get("name")), str(model.get("version"))


def record_started(event: dict[str, Any]) -> None:
    """A job's `running` event: its time queued, once per job (its first attempt's event only)."""
    doc = event.get("doc") or {}
    first_start = doc.get("attempts") == 1 and doc.get("created_at") and doc.get("started_at")
    if not first_start or not EVENT_COUNTER.counts_here():
        return
    seconds = (parse_rfc3339(doc["started_at"]) - parse_rfc3339(doc["created_at"])).total_seconds()
    JOB_QUEUED_SECONDS.labels(*_model_of(doc)).observe(max(seconds, 0.0), exemplar=job_exemplar(doc))


def record_finished(event: dict[str, Any]) -> None:
    """One job's terminal event, by its model version: the figures a canary is judged by."""
    if not EVENT_COUNTER.counts_here():
        return
    doc = event.get("doc") or {}
    name, version = _model_of(doc)
    error_code = (doc.get("error") or {}).get("code") or ""
    JOBS_FINISHED.labels(name, version, str(event.get("status")), error_code).inc()
    if doc.get("created_at") and doc.get("finished_at"):
        seconds = (parse_rfc3339(doc["finished_at"]) - parse_rfc3339(doc["created_at"])).total_seconds()
        JOB_SECONDS.labels(name, version).observe(max(seconds, 0.0), exemplar=job_exemplar(doc))


def record_webhook_attempt(result: str, duration_ms: float) -> None:
    """result: delivered, rejected or unanswered (api/delivery/record.py, Outcome.result)."""
    WEBHOOK_ATTEMPTS.labels(result).inc()
    WEBHOOK_ATTEMPT_SECONDS.observe(duration_ms / 1000)


def refresh_gauges(services: Services) -> None:
    SSE_STREAMS.set(services.open_streams)
    rate = services.submitter.backlog.drain_rate.per_s()
    DRAIN_RATE.set(rate or 0.0)
    with contextlib.suppress(redis.RedisError):  # Redis down: /readyz says so; keep the last values
        # One reading for the whole system's signal and each model version's.
        by_model = count_work_by_model(services.redis, services.catalogue.queues())
        counts = total_work(by_model.values())
        policy = ScalingPolicy.from_settings(services.settings)
        signal = scaling_signal(counts, rate, policy)
        WEBHOOKS_PENDING.set(services.deliveries.pending_count())
        WEBHOOKS_DEAD.set(services.deliveries.dead_count())
        QUEUE_BACKLOG.set(counts.waiting)
        JOBS_UNACKNOWLEDGED.set(counts.unacknowledged)
        JOBS_OUTSTANDING.set(signal.outstanding)
        WORKERS_LIVE.set(signal.live_workers)
        WORKERS_DESIRED.set(signal.desired_workers)
        QUEUE_WAIT_PREDICTED.set(signal.predicted_wait_s)
        BACKLOG_WITHOUT_CAPACITY.set(int(signal.without_capacity))
        for ref, model_counts in by_model.items():
            pool = scaling_signal(model_counts, rate, policy)
            MODEL_JOBS_OUTSTANDING.labels(ref).set(pool.outstanding)
            MODEL_WORKERS_LIVE.labels(ref).set(pool.live_workers)
            MODEL_WORKERS_DESIRED.labels(ref).set(pool.desired_workers)
