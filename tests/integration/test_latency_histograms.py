"""The histograms that say why a job or a request was slow, on a real gateway and worker: time queued,
end to end and inference by model and version, HTTP requests by route template and status; and the
Grafana dashboard (deploy/grafana/) queries only metrics that a real scrape has."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from cli.processes import REPO_ROOT, free_port, wait_until
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import Samples, scrape_metrics, stream_events, submit, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

JOBS = 4
MODEL = (("model", "mobilenet_v2"), ("version", "1"))
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "asyncinfer-dashboard.json"
HISTOGRAM_SUFFIXES = re.compile(r"_(bucket|sum|count)$")


@dataclass
class Served:
    """What the module's one pipeline did: its metrics before and after, and the requests the test sent."""

    gateway_before: Samples
    gateway_after: Samples
    worker_after: Samples
    responses: Counter[tuple[str, str, str]]  # (method, route template, status) → how many


def template_of(path: str) -> str:
    """The route template of a path this test requests (the few it sends)."""
    parts = path.strip("/").split("/")
    if parts[:2] != ["v1", "jobs"]:
        return "unmatched"
    return {2: "/v1/jobs", 3: "/v1/jobs/{job_id}", 4: "/v1/jobs/{job_id}/events"}[len(parts)]


@pytest.fixture(scope="module")
def served(make_module_pipeline: PipelineFactory) -> Served:
    worker_port = free_port()
    pipeline = make_module_pipeline(workers=1, ASYNCINFER_WORKER_METRICS_PORT=str(worker_port))
    gateway_metrics, worker_metrics = f"{pipeline.url}/metrics", f"http://127.0.0.1:{worker_port}/metrics"
    before = scrape_metrics(gateway_metrics)
    responses: Counter[tuple[str, str, str]] = Counter()

    def count(response: httpx.Response) -> None:
        responses[(response.request.method, template_of(response.request.url.path), str(response.status_code))] += 1

    with httpx.Client(base_url=pipeline.url, timeout=60, event_hooks={"response": [count]}) as client:
        job_ids = [submit(client, images.jpeg(seed=90 + i))["id"] for i in range(JOBS)]
        assert [wait_terminal(client, job_id)["status"] for job_id in job_ids] == ["succeeded"] * JOBS
        stream_events(client, f"/v1/jobs/{job_ids[0]}/events")  # ends after the terminal status
        assert client.get("/v1/jobs/no-such-job").status_code == 404
        assert client.get("/no/such/path").status_code == 404

    def every_job_heard() -> Samples:
        samples = scrape_metrics(gateway_metrics)
        return samples if samples.get(("asyncinfer_job_seconds_count", MODEL)) == JOBS else {}

    # The terminal events reach the gateway's subscription a moment after the store has them.
    after = wait_until(every_job_heard, 10, "the gateway to hear every job's end")
    def every_batch_recorded() -> Samples:
        samples = scrape_metrics(worker_metrics)
        return samples if samples.get(("asyncinfer_worker_batch_size_sum", ())) == JOBS else {}

    # A job is written succeeded before its batch's report is recorded.
    worker = wait_until(every_batch_recorded, 10, "the worker to record every batch")
    return Served(before, after, worker, responses)


def test_queued_and_end_to_end_time_count_each_job_once_by_model_and_version(served: Served) -> None:
    after = served.gateway_after
    assert ("asyncinfer_job_queued_seconds_count", MODEL) not in served.gateway_before
    assert after[("asyncinfer_job_queued_seconds_count", MODEL)] == JOBS
    assert after[("asyncinfer_job_seconds_count", MODEL)] == JOBS
    assert after[("asyncinfer_job_queued_seconds_bucket", (("le", "+Inf"), *MODEL))] == JOBS  # labels sorted
    # Each job waited before it ran, and ran before it ended.
    assert 0 <= after[("asyncinfer_job_queued_seconds_sum", MODEL)] < after[("asyncinfer_job_seconds_sum", MODEL)]


def test_the_workers_inference_time_is_labelled_with_its_model(served: Served) -> None:
    worker = served.worker_after
    batches = worker[("asyncinfer_worker_batch_size_count", ())]
    assert 1 <= batches <= JOBS
    assert worker[("asyncinfer_worker_inference_seconds_count", MODEL)] == batches
    # A batch's forward pass lies within each of its jobs' time from acceptance to the end.
    assert 0 < worker[("asyncinfer_worker_inference_seconds_sum", MODEL)] < (
        served.gateway_after[("asyncinfer_job_seconds_sum", MODEL)])


def test_http_requests_are_counted_by_method_route_template_and_status(served: Served) -> None:
    def requests_made(method: str, route: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        key = ("asyncinfer_http_request_seconds_count", labels)
        return served.gateway_after.get(key, 0) - served.gateway_before.get(key, 0)

    assert served.responses[("POST", "/v1/jobs", "202")] == JOBS
    assert served.responses[("GET", "/v1/jobs/{job_id}/events", "200")] == 1
    for (method, route, status), sent in served.responses.items():
        assert requests_made(method, route, status) == sent, (method, route, status)
    routes = {dict(labels)["route"] for name, labels in served.gateway_after
              if name == "asyncinfer_http_request_seconds_count"}
    assert not [route for route in routes if "no-such-job" in route or "/no/such" in route]  # never a raw path
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/metrics", "unmatched"} <= routes


def test_every_metric_the_dashboard_queries_is_in_a_real_scrape(served: Served) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queried = {HISTOGRAM_SUFFIXES.sub("", name) for expr in expressions for name in re.findall(r"asyncinfer_[a-z_]+", expr)}
    scraped = {HISTOGRAM_SUFFIXES.sub("", name) for samples in (served.gateway_after, served.worker_after)
               for name, _ in samples}

    assert {"asyncinfer_job_queued_seconds", "asyncinfer_http_request_seconds",
            "asyncinfer_worker_inference_seconds"} <= queried
    assert queried - scraped == set()
