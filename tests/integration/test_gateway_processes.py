"""Two gateway processes on one port (ASYNCINFER_GATEWAY_PROCESSES=2), for real: every job is
followed to its end whichever process takes the connection, /metrics answers for both at once (events
counted once, streams added up), and a process killed is started again without losing a job."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.pipeline import LocalPipeline
from cli.processes import child_pids, http_ok, wait_until
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import scrape_metrics, stream_events, submit, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROCESSES = 2


def serving_processes(pipeline: LocalPipeline) -> list[int]:
    """The gateway's processes that serve (uvicorn's multiprocessing children, not its resource tracker)."""
    assert pipeline.gateway is not None
    return [pid for pid in child_pids(pipeline.gateway.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def sample(pipeline: LocalPipeline, name: str, **labels: str) -> float:
    return scrape_metrics(f"{pipeline.url}/metrics").get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_job_is_followed_and_counted_once_whichever_process_serves(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=1, ASYNCINFER_GATEWAY_PROCESSES=str(PROCESSES))
    assert len(serving_processes(pipeline)) == PROCESSES
    jobs = 6
    finals = []
    for index in range(jobs):  # a connection each: the processes take them as they come
        with httpx.Client(base_url=pipeline.url, timeout=60) as client:
            job = submit(client, images.jpeg(seed=41_000 + index))
        with httpx.Client(base_url=pipeline.url, timeout=60) as client:
            finals.append(stream_events(client, f"/v1/jobs/{job['id']}/events")[-1][2]["status"])
    assert finals == ["succeeded"] * jobs

    model = {"model": "mobilenet_v2", "version": "1"}
    # Each scrape may land on either process; each answers for both, and counts each event once.
    for _ in range(6):
        assert sample(pipeline, "asyncinfer_jobs_submitted_total", **model) == jobs
        assert sample(pipeline, "asyncinfer_jobs_finished_total", **model, status="succeeded", error_code="") == jobs
        assert sample(pipeline, "asyncinfer_job_seconds_count", **model) == jobs


@contextlib.contextmanager
def open_streams(pipeline: LocalPipeline, job_ids: list[str]) -> Iterator[list[httpx.Response]]:
    """One event stream per job, each on its own connection, held open."""
    with contextlib.ExitStack() as stack:
        responses = []
        for job_id in job_ids:
            client = stack.enter_context(httpx.Client(base_url=pipeline.url, timeout=30))
            response = stack.enter_context(client.stream("GET", f"/v1/jobs/{job_id}/events"))
            assert response.status_code == 200
            responses.append(response)
        yield responses


def test_streams_add_up_and_a_killed_process_is_replaced_without_losing_a_job(
        make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_GATEWAY_PROCESSES=str(PROCESSES))  # nothing drains: jobs wait
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        job_ids = [submit(client, images.jpeg(seed=41_100 + index))["id"] for index in range(8)]

    with open_streams(pipeline, job_ids):
        wait_until(lambda: sample(pipeline, "asyncinfer_sse_streams_open") == len(job_ids), 10,
                   "every open stream counted, whichever process holds it")
        before = serving_processes(pipeline)
        for pid in before:  # both: the streams of the dead must stop counting
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: len(set(serving_processes(pipeline)) - set(before)) == PROCESSES, 60,
                   "both processes started again")
    wait_until(lambda: http_ok(f"{pipeline.url}/readyz"), 30, "the new processes to serve")

    assert sample(pipeline, "asyncinfer_sse_streams_open") == 0
    # Counters keep what the dead processes counted.
    assert sample(pipeline, "asyncinfer_jobs_submitted_total", model="mobilenet_v2", version="1") == len(job_ids)
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        assert {client.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in job_ids} == {"queued"}
        # A worker now: every job accepted before the processes died ends.
        pipeline.start_worker()
        assert {wait_terminal(client, job_id)["status"] for job_id in job_ids} == {"succeeded"}
