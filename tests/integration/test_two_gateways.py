"""Horizontal on one host, for real: two gateways and two workers on one Redis and one store. A job
submitted to one gateway is followed to its end over SSE on the other, and both gateways' admission
and metrics see one backlog."""

from __future__ import annotations

import httpx
import pytest

from cli.pipeline import LocalPipeline
from cli.processes import free_port
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, scrape_metrics, stream_events, submit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BACKLOG_LIMIT = 6


def second_gateway(first: LocalPipeline) -> LocalPipeline:
    """Another gateway on the same Redis and store (same environment), on a port of its own."""
    other = LocalPipeline(env=first.env, port=free_port(), workdir=first.workdir / "second" if first.workdir else None)
    other.start(workers=0, gateway=True)
    return other


def test_a_job_submitted_to_one_gateway_is_followed_on_the_other(make_pipeline: PipelineFactory) -> None:
    first = make_pipeline(workers=2)
    second = second_gateway(first)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as one, httpx.Client(base_url=second.url, timeout=60) as two:
            job = submit(one, images.jpeg(seed=32_000), top_k=2)
            events = stream_events(two, f"/v1/jobs/{job['id']}/events")
            replayed = two.get(f"/v1/jobs/{job['id']}").json()
    finally:
        second.stop()

    assert [data["status"] for _, _, data in events][-1] == "succeeded"
    assert len(events[-1][2]["result"]["predictions"]) == 2
    assert replayed["status"] == "succeeded"


def test_both_gateways_admit_against_one_backlog_and_report_it(make_pipeline: PipelineFactory) -> None:
    first = make_pipeline(workers=0, ASYNCINFER_BACKLOG_LIMIT=str(BACKLOG_LIMIT))  # nothing drains
    second = second_gateway(first)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as one, httpx.Client(base_url=second.url, timeout=60) as two:
            answers = [post_job(client, images.jpeg(seed=32_100 + i)).status_code
                       for i, client in enumerate([one, two] * BACKLOG_LIMIT)]
            outstanding = [scrape_metrics(f"{pipeline.url}/metrics")[("asyncinfer_jobs_outstanding", ())]
                           for pipeline in (first, second)]
    finally:
        second.stop()

    assert answers == [202] * BACKLOG_LIMIT + [429] * BACKLOG_LIMIT  # half to each gateway, one limit
    assert outstanding == [BACKLOG_LIMIT, BACKLOG_LIMIT]
