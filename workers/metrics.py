"""Prometheus metrics of one worker process, recorded from each batch's report (workers/inference.py)
and served at http://ASYNCINFER_WORKER_METRICS_HOST:ASYNCINFER_WORKER_METRICS_PORT/metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from shared.errors import StartupError
from shared.jobs import ErrorCode
from shared.models import ModelSpec
from shared.tracing import current_trace_id, exemplar
from workers.inference import BatchReport

log = logging.getLogger(__name__)

# Batches hold 16 jobs on CPU and 64 on GPU by default; larger configured batches land in +Inf.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# One forward pass: milliseconds for one image on a GPU, seconds for 64 on a slow CPU.
INFERENCE_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

class WorkerMetrics:
    """The worker's metrics in one registry (the process-wide default one in the worker, a fresh
    one in tests). `model` is the served model's spec: a worker serves one model version, whose
    name and version label its inference time (the gateway's job histograms carry the same labels)."""

    def __init__(self, model: ModelSpec, registry: CollectorRegistry = REGISTRY) -> None:
        self.batch_size = Histogram(
            "asyncinfer_worker_batch_size",
            "Jobs in one batch the worker took from the queue",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "asyncinfer_worker_inference_seconds",
            "Seconds of one batch's forward passes (batches whose pass ran and returned), by model and version",
            ["model", "version"],
            buckets=INFERENCE_SECONDS_BUCKETS,
            registry=registry,
        ).labels(model.name, model.version)
        self.jobs = Counter(
            "asyncinfer_worker_jobs_total",
            "Jobs this worker took from the queue, by outcome: succeeded, failed (with its error_code) "
            "or skipped (finished or cancelled before, or given up as worker_lost)",
            ["outcome", "error_code"],
            registry=registry,
        )
        self.model = Gauge(
            "asyncinfer_worker_model_info",
            "The loaded model, as the job document's model field; always 1",
            ["name", "version", "weights", "weights_sha256", "backend", "device"],
            registry=registry,
        )
        # Every series from the start at 0, so that rates work from the first scrape.
        self.jobs.labels("succeeded", "")
        self.jobs.labels("skipped", "")
        for code in ErrorCode:
            self.jobs.labels("failed", code.value)

    def set_model(self, info: Mapping[str, str]) -> None:
        self.model.labels(**{label: info[label] for label in self.model._labelnames}).set(1)

    def record(self, report: BatchReport) -> None:
        self.batch_size.observe(report.delivered)
        if report.inferred:
            # The batch span's trace: this runs inside it (workers/worker.py).
            self.inference_seconds.observe(report.inference_ms / 1000, exemplar=exemplar(current_trace_id()))
            self.jobs.labels("succeeded", "").inc(report.inferred)
        if report.skipped:
            self.jobs.labels("skipped", "").inc(report.skipped)
        for code, count in report.failures.items():
            self.jobs.labels("failed", code.value).inc(count)


class MetricsUnavailable(StartupError):
    """The metrics port cannot be listened on (in use, or a bad address)."""


def serve(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> WSGIServer:
    """Serve `registry` at http://host:port/metrics from a daemon thread, for the life of the
    process; returns the server (tests shut it down)."""
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise MetricsUnavailable(
            f"ASYNCINFER_WORKER_METRICS_PORT={port}: cannot listen on {host}:{port}: {e}; "
            "give each worker on a host its own port"
        ) from e
    log.info("metrics at http://%s:%d/metrics", host, port)
    return server
