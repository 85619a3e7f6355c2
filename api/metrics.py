"""Prometheus metrics of the gateway; the backlog gauge is what autoscaling reads."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from api.services import Services

JOBS_SUBMITTED = Counter("asyncinfer_jobs_submitted_total", "Jobs accepted (202)")
REQUESTS_REJECTED = Counter(
    "asyncinfer_requests_rejected_total", "Requests answered with an error", ["status"]
)
QUEUE_BACKLOG = Gauge("asyncinfer_queue_backlog", "Messages waiting in the inference queue")
SSE_STREAMS = Gauge("asyncinfer_sse_streams_open", "Open event streams on this gateway")
JOBS_RECOVERED = Counter(
    "asyncinfer_jobs_recovered_total",
    "Stranded jobs this gateway queued again, by cause: queued or running without a message in Redis",
    ["cause"],
)
RECOVERY_LEASE_HELD = Gauge("asyncinfer_recovery_lease_held", "1 while this gateway holds the recoverer's lease")
for _cause in ("queued_without_message", "running_without_message"):
    JOBS_RECOVERED.labels(_cause)


def refresh_gauges(services: Services) -> None:
    SSE_STREAMS.set(services.open_streams)
    with contextlib.suppress(Exception):  # Redis down: /readyz says so; keep the last value
        QUEUE_BACKLOG.set(services.submitter.backlog.waiting())

