"""A real worker serves its Prometheus metrics on ASYNCINFER_WORKER_METRICS_PORT, and they count
the jobs sent through the real gateway."""

from __future__ import annotations

import httpx
import pytest

from cli.processes import free_port, wait_until
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import Samples, scrape_metrics, submit, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

JOBS = 3


def scrape(port: int) -> Samples:
    """Every sample of the worker's /metrics."""
    return scrape_metrics(f"http://127.0.0.1:{port}/metrics")


def test_worker_metrics_count_the_jobs_it_ran(make_pipeline: PipelineFactory) -> None:
    port = free_port()
    pipeline = make_pipeline(workers=1, ASYNCINFER_WORKER_METRICS_PORT=str(port))
    before = scrape(port)  # served once the model is loaded, before the first batch
    assert before[("asyncinfer_worker_batch_size_count", ())] == 0
    (model_info,) = [(dict(labels), value) for (name, labels), value in before.items()
                     if name == "asyncinfer_worker_model_info"]
    labels, value = model_info
    assert value == 1 and len(labels.pop("weights_sha256")) == 64
    assert labels == {"backend": "tensorflow", "device": "cpu", "name": "mobilenet_v2", "version": "1",
                      "weights": "random"}

    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        job_ids = [submit(client, images.jpeg(seed=60 + i))["id"] for i in range(JOBS)]
        assert [wait_terminal(client, job_id)["status"] for job_id in job_ids] == ["succeeded"] * JOBS

    succeeded = ("asyncinfer_worker_jobs_total", (("error_code", ""), ("outcome", "succeeded")))

    def all_recorded() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape(port)
        return samples if samples[succeeded] >= JOBS else None

    # A job is written succeeded before its batch's report is recorded: wait for the last one.
    after = wait_until(all_recorded, 10, "the worker's metrics to count every job")
    assert after[succeeded] == JOBS
    batches = after[("asyncinfer_worker_batch_size_count", ())]
    assert 1 <= batches <= JOBS
    assert after[("asyncinfer_worker_batch_size_sum", ())] == JOBS
    model = (("model", "mobilenet_v2"), ("version", "1"))  # the served model labels its inference time
    assert after[("asyncinfer_worker_inference_seconds_count", model)] == batches
    assert after[("asyncinfer_worker_inference_seconds_sum", model)] > 0
    assert after[("asyncinfer_worker_jobs_total", (("error_code", ""), ("outcome", "skipped")))] == 0
    assert sum(value for (name, labels), value in after.items()
               if name == "asyncinfer_worker_jobs_total" and ("outcome", "failed") in labels) == 0
