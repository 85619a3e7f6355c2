"""Cancelling: a queued job can be cancelled and is then never run; a started one cannot."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import stream_events, submit, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_cancel_before_start_and_the_worker_skips_it(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0)  # nothing consumes yet: the job stays queued
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        job = submit(client, images.jpeg(seed=31))

        cancelled = client.delete(f"/v1/jobs/{job['id']}")

        assert cancelled.status_code == 202
        assert cancelled.json()["status"] == "cancelled"
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 409
        pipeline.start_worker()
        after = submit(client, images.jpeg(seed=32))
        assert wait_terminal(client, after["id"])["status"] == "succeeded"
        doc = client.get(f"/v1/jobs/{job['id']}").json()
        assert doc["status"] == "cancelled" and doc["attempts"] == 0
        events = stream_events(client, f"/v1/jobs/{job['id']}/events")
        assert [data["status"] for _, _, data in events] == ["cancelled"]


def test_cancel_of_a_finished_job_is_a_conflict(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline()
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        job = submit(client, images.jpeg(seed=33))
        wait_terminal(client, job["id"])

        response = client.delete(f"/v1/jobs/{job['id']}")

        assert response.status_code == 409
        assert "succeeded" in response.json()["detail"]
        assert client.delete("/v1/jobs/no-such-job").status_code == 404
