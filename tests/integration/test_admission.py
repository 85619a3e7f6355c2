"""Limits and access: open streams, keep-alive, backlog, API keys, large images, readiness."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from cli.pipeline import LocalPipeline
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, submit, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_open_streams_are_bounded_and_kept_alive(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_MAX_SSE_STREAMS="1", ASYNCINFER_SSE_PING_S="0.5")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        job = submit(client, images.jpeg())
        with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
            lines = stream.iter_lines()
            seen = [next(lines) for _ in range(4)]
            while not any(line.startswith(":") for line in seen):  # keep-alive comments
                seen.append(next(lines))
            second = client.get(f"/v1/jobs/{job['id']}/events")
            assert second.status_code == 503
            assert second.headers["retry-after"] and "event streams are open" in second.json()["detail"]
        assert any(line.startswith("event: status") for line in seen)


def test_backlog_over_its_limit_is_refused_with_retry_after(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_BACKLOG_LIMIT="2")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        submit(client, images.jpeg(seed=1))
        submit(client, images.jpeg(seed=2))

        third = post_job(client, images.jpeg(seed=3))

        assert third.status_code == 429
        assert int(third.headers["retry-after"]) > 0
        assert "limit 2" in third.json()["detail"]


def test_api_keys_separate_tenants(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_API_KEYS="key-a:alice,key-b:bob")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        missing = post_job(client, images.jpeg())
        assert missing.status_code == 401
        wrong = client.get("/v1/jobs/x", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        job = post_job(client, images.jpeg(), headers={"X-API-Key": "key-a"}).json()
        assert job["tenant"] == "alice"
        assert client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": "Bearer key-a"}).status_code == 200
        for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/events"):
            other = client.get(path, headers={"X-API-Key": "key-b"})
            assert other.status_code == 404  # never reveal that another tenant's job exists
        assert client.delete(f"/v1/jobs/{job['id']}", headers={"X-API-Key": "key-b"}).status_code == 404


def test_a_ten_mebibyte_image_goes_through(pipeline: LocalPipeline) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (1800, 1900, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    data = buffer.getvalue()
    assert 9 * 1024 * 1024 < len(data) <= 10 * 1024 * 1024
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        job = client.post("/v1/jobs", files={"file": ("noise.png", data, "image/png")}).json()
        assert wait_terminal(client, job["id"])["status"] == "succeeded"


def test_readiness_names_the_dependency_that_is_down(make_pipeline: PipelineFactory) -> None:
    from cli.processes import free_port

    pipeline = make_pipeline(workers=0, ASYNCINFER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        assert ready.headers["x-failing-dependencies"] == "redis"
        assert "redis unreachable" in ready.json()["detail"]
        refused = post_job(client, images.jpeg())
        assert refused.status_code == 503 and refused.headers["retry-after"]
