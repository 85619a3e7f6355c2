"""A batch never takes innocent jobs down with it, on a real worker: a message whose job is gone
does not fail its batch-mates, and an image that kills the worker, or hangs its forward pass
past the time limit, fails alone."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from cli.pipeline import LocalPipeline
from shared.jobs import JobDoc, JobStatus
from shared.queue import enqueue, make_celery
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import wait_terminal
from tests.support.models import builtin
from tests.support.pipeline import settings_of
from workers.faults import CRASH_EXIT_CODE
from workers.time_limit import TIMED_OUT_EXIT_CODE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

# Every job is queued before the worker starts; a batch that waits for company (not the default 2 ms of
# quiet, which a busy machine can exceed between two deliveries) takes them all in its first pass.
ONE_FIRST_BATCH = {"ASYNCINFER_BATCH_IDLE_MS": "400"}


def batch_of(client: httpx.Client, payloads: list[bytes]) -> list[str]:
    files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(payloads)]
    response = client.post("/v1/batches", files=files)
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]


def test_a_message_whose_job_is_gone_does_not_strand_its_batch_mates(make_pipeline: PipelineFactory,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis took an enqueue whose reply was lost, so the gateway answered 503 and discarded the
    job: its message is queued with the real jobs and lands in their batch."""
    pipeline = make_pipeline(workers=0, ASYNCINFER_MAX_BATCH_WAIT_MS="500", **ONE_FIRST_BATCH)
    app = make_celery(settings_of(pipeline.env, monkeypatch))
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        jobs = batch_of(client, [images.jpeg(seed=1200 + i) for i in range(3)])
        enqueue(app, "a-job-that-was-never-stored", builtin().queue_for("public"))
        jobs += batch_of(client, [images.jpeg(seed=1210 + i) for i in range(3)])
        pipeline.start_worker()
        docs = [wait_terminal(client, job_id, timeout_s=60) for job_id in jobs]

    assert [(doc["status"], doc["attempts"]) for doc in docs] == [("succeeded", 1)] * 6
    assert "a-job-that-was-never-stored: no such job" in pipeline.logs("worker0")


def run_to_the_end(pipeline: LocalPipeline, client: httpx.Client, jobs: list[str]) -> tuple[list[JobDoc], list[int]]:
    """Start a worker, and another each time one exits, as a supervisor would (cli/processes.py),
    until every job is terminal; the jobs' documents and the exit codes of the workers that died."""
    exits: list[int] = []
    worker = pipeline.start_worker()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        docs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in jobs]
        if all(JobStatus(doc["status"]).terminal for doc in docs):
            return docs, exits
        if worker.poll() is not None:
            exits.append(worker.returncode)
            worker = pipeline.start_worker()
        time.sleep(0.2)
    pytest.fail(f"not every job ended within 300 s: {[doc['status'] for doc in docs]}")


def assert_it_failed_alone(docs: list[JobDoc], exits: list[int], code: str, attempts: int, exit_code: int) -> JobDoc:
    """The second job (the bad image) failed with `code` after `attempts`, each ending its worker
    with `exit_code`; every other job succeeded, charged one attempt for the first pass, which
    it shared with the bad image, and then ran alone."""
    bad, mates = docs[1], [docs[0], *docs[2:]]
    assert (bad["status"], bad["error"]["code"], bad["attempts"]) == ("failed", code, attempts)
    assert exits == [exit_code] * attempts, [doc["history"] for doc in docs]
    for doc in mates:
        assert (doc["status"], doc["attempts"]) == ("succeeded", 2), doc["history"]
        assert doc["result"]["batch_size"] == 1
    return bad


@pytest.mark.slow
def test_an_image_that_kills_its_worker_fails_alone(make_pipeline: PipelineFactory) -> None:
    poison = images.jpeg(seed=1300)
    pipeline = make_pipeline(workers=0, ASYNCINFER_FAULT_CRASH_ON_SHA256=hashlib.sha256(poison).hexdigest(),
                             ASYNCINFER_MAX_BATCH_WAIT_MS="500", **ONE_FIRST_BATCH)
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        jobs = batch_of(client, [images.jpeg(seed=1301), poison, *(images.jpeg(seed=1302 + i) for i in range(4))])
        docs, exits = run_to_the_end(pipeline, client, jobs)

    assert_it_failed_alone(docs, exits, "worker_lost", 3, CRASH_EXIT_CODE)


@pytest.mark.slow
def test_an_image_that_hangs_inference_times_out_alone(make_pipeline: PipelineFactory) -> None:
    """The forward pass hangs (as a runtime stuck in native code would) whenever it holds one
    image: past the time limit the worker exits, and only that image is charged for it."""
    stuck = images.jpeg(seed=1320)
    pipeline = make_pipeline(workers=0, ASYNCINFER_FAULT_HANG_ON_SHA256=hashlib.sha256(stuck).hexdigest(),
                             ASYNCINFER_INFERENCE_TIMEOUT_S="2", ASYNCINFER_MAX_ATTEMPTS="2",
                             ASYNCINFER_MAX_BATCH_WAIT_MS="500", **ONE_FIRST_BATCH)
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        jobs = batch_of(client, [images.jpeg(seed=1321), stuck, *(images.jpeg(seed=1322 + i) for i in range(3))])
        docs, exits = run_to_the_end(pipeline, client, jobs)

    timed_out = assert_it_failed_alone(docs, exits, "timeout", 2, TIMED_OUT_EXIT_CODE)
    assert "ran past its limit of 2 s" in timed_out["error"]["message"]
    assert "ran past its limit of 2 s" in pipeline.logs("worker0")
    assert "_timed_out_after_s" not in timed_out
