"""Traces across the queue on real processes: a gateway and a worker export OTLP to a receiver in the
test, and one job's trace holds the request, the enqueue, the worker's batch (linked) and its spans."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from cli.processes import wait_until
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, wait_terminal
from tests.support.otlp_receiver import ReceivedSpan, otlp_receiver, render_tree

pytestmark = pytest.mark.integration


def only(spans: list[ReceivedSpan], what: str) -> ReceivedSpan:
    assert len(spans) == 1, f"{len(spans)} {what}: {spans}"
    return spans[0]


def test_one_jobs_trace_runs_from_the_clients_span_through_the_queue_to_the_batch(
        make_pipeline: PipelineFactory) -> None:
    client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
    with otlp_receiver() as receiver:
        pipeline = make_pipeline(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="200",
                                 ASYNCINFER_LOG_FORMAT="json")
        with httpx.Client(base_url=pipeline.url, timeout=30) as client:
            response = post_job(client, images.jpeg(seed=71),
                                headers={"traceparent": f"00-{client_trace}-{client_span}-01"})
            assert response.status_code == 202, response.text
            job_id, request_id = response.json()["id"], response.headers["X-Request-ID"]
            finished = wait_terminal(client, job_id)
            assert finished["status"] == "succeeded" and finished["trace_id"] == client_trace
            # Exemplars, for a scraper that asks for OpenMetrics: the samples name the job's trace.
            openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
            plain = client.get("/metrics").text
            malformed = post_job(client, images.jpeg(seed=72), headers={"traceparent": "00-not-a-trace-01"})
            assert malformed.status_code == 202, malformed.text

        def complete(spans: list[ReceivedSpan]) -> bool:
            enqueues = [span.span_id for span in spans if span.name == "enqueue" and span.trace_id == client_trace]
            batches = [span for span in spans if span.name == "batch"
                       and any(link == (client_trace, enqueue) for enqueue in enqueues for link in span.links)]
            return bool(batches) and any(span.name.startswith("store.succeed") and span.parent_span_id == batches[0].span_id
                                         for span in spans)

        spans = receiver.wait_for(complete)
        # A malformed traceparent is ignored: that request begins a trace of its own.
        receiver.wait_for(lambda spans: any(span.name == "POST /v1/jobs" and span.kind == "server"
                                            and span.trace_id != client_trace and span.parent_span_id is None
                                            for span in spans))

    in_trace = [span for span in spans if span.trace_id == client_trace]
    # The HTTP request's server span: the client's span is its parent.
    request = only([span for span in in_trace if span.kind == "server"], "server spans in the job's trace")
    assert request.service == "asyncinfer-gateway"
    assert request.parent_span_id == client_span
    assert request.attributes.get("http.route") == "/v1/jobs"
    # The publish: a child of the request's span.
    enqueue = only([span for span in in_trace if span.name == "enqueue"], "enqueue spans")
    assert enqueue.service == "asyncinfer-gateway" and enqueue.kind == "producer"
    assert enqueue.parent_span_id == request.span_id
    assert enqueue.attributes["asyncinfer.job_id"] == job_id
    # The worker's batch: a trace of its own, linked to the span the job's message came from.
    batch = only([span for span in spans if span.name == "batch" and (client_trace, enqueue.span_id) in span.links],
                 "batch spans linked to the job")
    assert batch.service == "asyncinfer-worker" and batch.kind == "consumer"
    assert batch.trace_id != client_trace and batch.parent_span_id is None
    children = [span for span in spans if span.parent_span_id == batch.span_id]
    assert all(span.trace_id == batch.trace_id and span.service == "asyncinfer-worker" for span in children)
    # The store's reads and writes of the batch that name this job, in order, and one forward pass.
    store = [span for span in sorted(children, key=lambda span: span.start_ns)
             if span.name.startswith("store.") and job_id in span.attributes["asyncinfer.job_ids"]]
    assert [span.name for span in store] == ["store.begin", "store.read_image", "store.succeed"]
    inference = only([span for span in children if span.name == "inference"], "inference spans")
    assert inference.attributes["asyncinfer.batch_size"] >= 1
    assert store[1].end_ns <= inference.start_ns <= inference.end_ns <= store[2].start_ns

    print("\n" + render_tree(spans, client_trace))  # the README's "trace of one job"

    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    for metric in ("asyncinfer_http_request_seconds_bucket", "asyncinfer_job_queued_seconds_bucket",
                   "asyncinfer_job_seconds_bucket"):
        assert any(line.startswith(metric) and f'# {{trace_id="{client_trace}"}}' in line
                   for line in openmetrics.text.splitlines()), f"no exemplar of the job's trace on {metric}"
    assert "trace_id" not in plain  # Prometheus' text format has no exemplars

    # Log lines join the trace: the gateway's access line of the POST, and the worker's lines about the job.
    wait_until(lambda: '"path": "/v1/jobs"' in pipeline.logs("gateway"), 10, "the access line")
    gateway = [json.loads(line) for line in pipeline.logs("gateway").splitlines() if line.startswith("{")]
    posted = only([line for line in gateway if line.get("path") == "/v1/jobs" and line["request_id"] == request_id],
                  "access lines of the job's POST")
    assert posted["trace_id"] == client_trace
    worker = [json.loads(line) for line in pipeline.logs("worker0").splitlines() if line.startswith("{")]
    summary = [line for line in worker if line["message"].startswith("batch of ")]
    assert any(line["trace_id"] == batch.trace_id for line in summary)
