"""The worker's metrics (workers/metrics.py): what a batch report records, and the reports
process_batch gives for skipped and failed jobs."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from cli.processes import free_port
from shared import tracing
from shared.config import Settings
from shared.jobs import ErrorCode
from shared.lifecycle import JobLifecycle
from shared.store.base import image_key
from shared.store.sqlite import SqliteStore
from tests.support.models import blank_pixels, builtin, queued_job
from tests.support.publishers import RecordingPublisher
from workers.inference import BatchReport, process_batch
from workers.metrics import MetricsUnavailable, WorkerMetrics, serve

# The served model's name and version label its inference time (builtin() is mobilenet_v2@1).
MOBILENET_V2_LABELS = {"model": "mobilenet_v2", "version": "1"}
MODEL_INFO = {"name": "mobilenet_v2", "version": "1", "weights": "random", "weights_sha256": "0" * 64,
              "backend": "onnxruntime", "device": "cpu"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def jobs(registry: CollectorRegistry, outcome: str, error_code: str = "") -> float | None:
    return registry.get_sample_value("asyncinfer_worker_jobs_total", {"outcome": outcome, "error_code": error_code})


def test_a_report_records_batch_size_inference_time_and_outcomes(registry: CollectorRegistry) -> None:
    metrics = WorkerMetrics(builtin(), registry)

    metrics.record(BatchReport(delivered=5, inferred=3, skipped=1, failures={ErrorCode.DECODE_ERROR: 1},
                               inference_ms=40.0))
    metrics.record(BatchReport(delivered=12, inferred=12, inference_ms=300.0))

    assert registry.get_sample_value("asyncinfer_worker_batch_size_count") == 2
    assert registry.get_sample_value("asyncinfer_worker_batch_size_sum") == 17
    assert registry.get_sample_value("asyncinfer_worker_batch_size_bucket", {"le": "4.0"}) == 0
    assert registry.get_sample_value("asyncinfer_worker_batch_size_bucket", {"le": "8.0"}) == 1
    assert registry.get_sample_value("asyncinfer_worker_batch_size_bucket", {"le": "16.0"}) == 2
    assert registry.get_sample_value("asyncinfer_worker_inference_seconds_count", MOBILENET_V2_LABELS) == 2
    assert registry.get_sample_value("asyncinfer_worker_inference_seconds_sum",
                                     MOBILENET_V2_LABELS) == pytest.approx(0.34)
    assert registry.get_sample_value("asyncinfer_worker_inference_seconds_bucket",
                                     {**MOBILENET_V2_LABELS, "le": "0.05"}) == 1
    assert jobs(registry, "succeeded") == 15
    assert jobs(registry, "skipped") == 1
    assert jobs(registry, "failed", "decode_error") == 1
    assert jobs(registry, "failed", "internal") == 0


def test_a_batch_without_a_forward_pass_records_no_inference_time(registry: CollectorRegistry) -> None:
    metrics = WorkerMetrics(builtin(), registry)

    metrics.record(BatchReport(delivered=2, inferred=0, skipped=2))
    metrics.record(BatchReport(delivered=3, inferred=0, failures={ErrorCode.INTERNAL: 3}))

    assert registry.get_sample_value("asyncinfer_worker_batch_size_count") == 2
    assert registry.get_sample_value("asyncinfer_worker_inference_seconds_count", MOBILENET_V2_LABELS) == 0
    assert jobs(registry, "succeeded") == 0
    assert jobs(registry, "skipped") == 2
    assert jobs(registry, "failed", "internal") == 3


def test_every_outcome_is_exported_at_zero_before_the_first_batch(registry: CollectorRegistry) -> None:
    WorkerMetrics(builtin(), registry)

    assert jobs(registry, "succeeded") == 0 and jobs(registry, "skipped") == 0
    assert all(jobs(registry, "failed", code.value) == 0 for code in ErrorCode)


def test_model_info_is_a_gauge_of_one_labelled_with_the_model(registry: CollectorRegistry) -> None:
    WorkerMetrics(builtin(), registry).set_model(MODEL_INFO)

    assert registry.get_sample_value("asyncinfer_worker_model_info", MODEL_INFO) == 1


class FakeClassifier:
    spec = builtin()
    max_batch_size = 8
    info = MODEL_INFO

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        if self.fails:
            raise RuntimeError("out of memory")
        return np.full((len(inputs), 1000), 1 / 1000, dtype="float32")


PIXELS = blank_pixels()



@pytest.fixture
def lifecycle(tmp_path: Path) -> JobLifecycle:
    return JobLifecycle(SqliteStore(str(tmp_path / "jobs.db"), ttl_s=3600), RecordingPublisher(), max_attempts=3)  # type: ignore[arg-type]


def finished_job(lifecycle: JobLifecycle) -> str:
    job_id = queued_job(lifecycle.store)
    lifecycle.begin(job_id)
    lifecycle.succeed(job_id, result={"predictions": [], "batch_size": 1, "inference_ms": 1.0}, model=MODEL_INFO)
    return job_id


def test_process_batch_reports_skipped_jobs_and_failures_by_code(lifecycle: JobLifecycle) -> None:
    store = lifecycle.store
    ok1, done, gone, bad, ok2 = (queued_job(store), finished_job(lifecycle), queued_job(store),
                                 queued_job(store, image=b"not an image"), queued_job(store))
    store._remove(image_key(gone))

    report = process_batch([ok1, done, gone, bad, ok2], lifecycle, FakeClassifier())  # type: ignore[arg-type]

    assert (report.delivered, report.inferred, report.skipped, report.failed) == (5, 2, 1, 2)
    assert report.failures == {ErrorCode.INTERNAL: 1, ErrorCode.DECODE_ERROR: 1}
    assert report.inference_ms > 0
    assert [store.get_job(job_id)["status"] for job_id in (ok1, ok2)] == ["succeeded"] * 2
    assert {job_id: store.get_job(job_id)["error"]["code"] for job_id in (gone, bad)} == {
        gone: "internal", bad: "decode_error"}


def test_process_batch_reports_a_failed_forward_pass_as_internal_failures(lifecycle: JobLifecycle) -> None:
    jobs = [queued_job(lifecycle.store), queued_job(lifecycle.store), finished_job(lifecycle)]

    report = process_batch(jobs, lifecycle, FakeClassifier(fails=True))  # type: ignore[arg-type]

    assert (report.delivered, report.inferred, report.skipped, report.inference_ms) == (3, 0, 1, 0.0)
    assert report.failures == {ErrorCode.INTERNAL: 2}


def test_serve_answers_metrics_and_a_taken_port_is_one_clear_error(registry: CollectorRegistry) -> None:
    WorkerMetrics(builtin(), registry).set_model(MODEL_INFO)
    port = free_port()

    server = serve("127.0.0.1", port, registry)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'asyncinfer_worker_jobs_total{error_code="",outcome="succeeded"} 0.0' in text
        assert "asyncinfer_worker_model_info{" in text
        with pytest.raises(MetricsUnavailable, match=f"ASYNCINFER_WORKER_METRICS_PORT={port}"):
            serve("127.0.0.1", port, registry)
    finally:
        server.shutdown()
        server.server_close()


def test_the_metrics_port_is_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCINFER_WORKER_METRICS_PORT", raising=False)
    monkeypatch.delenv("ASYNCINFER_WORKER_METRICS_HOST", raising=False)
    assert Settings().worker_metrics_port is None
    assert Settings().worker_metrics_host == "127.0.0.1"
    monkeypatch.setenv("ASYNCINFER_WORKER_METRICS_PORT", "9101")
    monkeypatch.setenv("ASYNCINFER_WORKER_METRICS_HOST", "0.0.0.0")
    assert (Settings().worker_metrics_port, Settings().worker_metrics_host) == (9101, "0.0.0.0")


def test_inference_time_carries_the_batch_spans_trace_as_an_exemplar_in_openmetrics(
        registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = TracerProvider()  # an SDK provider standing in for the installed one (tracing on)
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    metrics = WorkerMetrics(builtin(), registry)

    metrics.record(BatchReport(delivered=1, inferred=1, inference_ms=40.0))  # outside a span: no exemplar
    assert "trace_id" not in openmetrics_latest(registry).decode()
    with tracing.span("batch") as span:
        metrics.record(BatchReport(delivered=2, inferred=2, inference_ms=30.0))
    trace_id = format(span.get_span_context().trace_id, "032x")  # type: ignore[attr-defined]

    lines = openmetrics_latest(registry).decode().splitlines()
    (bucket,) = [line for line in lines if line.startswith("asyncinfer_worker_inference_seconds_bucket")
                 and 'le="0.05"' in line]
    assert f'# {{trace_id="{trace_id}"}} 0.03' in bucket
