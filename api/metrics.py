"""Prometheus metrics of the gateway; the backlog gauge is what autoscaling reads."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge

from api.services import Services

JOBS_SUBMITTED = Counter("asyncinfer_jobs_submitted_total", "Jobs accepted (202)")
REQUESTS_REJECTED = Counter(
    "asyncinfer_requests_rejected_total", "Requests answered with an error", ["status"]
)
QUEUE_BACKLOG = Gauge("asyncinfer_queue_backlog", "Messages waiting in the inference queue")
SSE_STREAMS = Gauge("asyncinfer_sse_streams_open", "Open event streams on this gateway")


def refresh_gauges(services: Services) -> None:
    SSE_STREAMS.set(services.open_streams)
    with contextlib.suppress(Exception):  # Redis down: /readyz says so; keep the last value
        QUEUE_BACKLOG.set(services.submitter.backlog())

