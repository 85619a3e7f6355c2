"""Request ids, JSON logs, the access log and CORS, on a real gateway and worker."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cli.processes import wait_until
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, wait_terminal

pytestmark = pytest.mark.integration

PORTAL = "https://portal.example.com"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_requests_id_is_answered_stored_in_its_job_and_in_every_log_line_about_it(
        make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(ASYNCINFER_LOG_FORMAT="json")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        response = post_job(client, images.jpeg(seed=61), headers={"X-Request-ID": "portal-req-0001"})
        assert response.status_code == 202
        assert response.headers["X-Request-ID"] == "portal-req-0001"
        job = wait_terminal(client, response.json()["id"])
        assert job["request_id"] == "portal-req-0001"

        generated = post_job(client, images.jpeg(seed=62), headers={"X-Request-ID": "not a valid id!"})
        kept = generated.headers["X-Request-ID"]
        assert kept != "not a valid id!" and len(kept) == 32  # ours, since the client's was malformed
        assert generated.json()["request_id"] == kept
        assert client.get("/v1/jobs/nope").status_code == 404

    # An access line is written once its answer has gone: wait for the last request's.
    wait_until(lambda: '"path": "/v1/jobs/nope"' in pipeline.logs("gateway"), 10, "the access lines")
    gateway_log = pipeline.logs("gateway")
    lines = json_lines(gateway_log)
    assert len(lines) == len([line for line in gateway_log.splitlines() if line.strip()]), "a line that is not JSON"
    assert all({"time", "level", "logger", "message", "request_id", "job_id", "trace_id"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "asyncinfer.access"]
    posted = [line for line in access if line["request_id"] == "portal-req-0001"]
    assert [(line["method"], line["path"], line["status"]) for line in posted] == [("POST", "/v1/jobs", 202)]
    assert posted[0]["duration_ms"] > 0
    assert any(line["path"] == "/v1/jobs/nope" and line["status"] == 404 for line in access)
    assert not any(line["path"] in ("/healthz", "/metrics") for line in access)  # probes at DEBUG only

    worker_log = pipeline.logs("worker0")
    worker_lines = json_lines(worker_log)
    # Every line, Celery's start-up included: one JSON object each.
    assert len(worker_lines) == len([line for line in worker_log.splitlines() if line.strip()]), worker_log[:3000]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in worker_lines)
    assert any(line["message"].endswith(" ready.") for line in worker_lines)  # the line `up` waits for
    assert not any("[config]" in line["message"] for line in worker_lines)  # no banner, wrapped or not


def test_cors_admits_exactly_the_configured_origins(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_CORS_ORIGINS=f"{PORTAL},http://localhost:3000")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        preflight = client.options("/v1/jobs", headers={
            "Origin": PORTAL, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Idempotency-Key, traceparent"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PORTAL
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "idempotency-key" in allowed and "traceparent" in allowed and "tracestate" in allowed
        assert preflight.headers["X-Request-ID"]

        submitted = post_job(client, images.jpeg(seed=63), headers={"Origin": PORTAL})
        assert submitted.headers["access-control-allow-origin"] == PORTAL
        assert "X-Request-ID" in submitted.headers["access-control-expose-headers"]

        elsewhere = client.options("/v1/jobs", headers={"Origin": "https://evil.example",
                                                        "Access-Control-Request-Method": "POST"})
        assert elsewhere.status_code == 400 and "access-control-allow-origin" not in elsewhere.headers
        assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://evil.example"}).headers


def test_without_configured_origins_no_cross_origin_request_is_admitted(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0)
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        response = client.get("/healthz", headers={"Origin": PORTAL})
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options("/v1/jobs", headers={"Origin": PORTAL, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers
