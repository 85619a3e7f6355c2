"""A batch never takes innocent jobs down with it, on a real worker: a message whose job is gone
does not fail its batch-mates, and an image that kills the worker fails alone."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from shared.jobs import JobStatus
from shared.queue import enqueue, make_celery
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import wait_terminal
from tests.support.pipeline import settings_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def batch_of(client: httpx.Client, payloads: list[bytes]) -> list[str]:
    files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(payloads)]
    response = client.post("/v1/batches", files=files)
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]


def test_a_message_whose_job_is_gone_does_not_strand_its_batch_mates(make_pipeline: PipelineFactory,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis took an enqueue whose reply was lost, so the gateway answered 503 and discarded the
    job: its message is queued with the real jobs and lands in their batch."""
    pipeline = make_pipeline(workers=0, ASYNCINFER_MAX_BATCH_WAIT_MS="500")
    app = make_celery(settings_of(pipeline.env, monkeypatch))
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        jobs = batch_of(client, [images.jpeg(seed=1200 + i) for i in range(3)])
        enqueue(app, "a-job-that-was-never-stored")
        jobs += batch_of(client, [images.jpeg(seed=1210 + i) for i in range(3)])
        pipeline.start_worker()
        docs = [wait_terminal(client, job_id, timeout_s=60) for job_id in jobs]

    assert [(doc["status"], doc["attempts"]) for doc in docs] == [("succeeded", 1)] * 6
    assert "a-job-that-was-never-stored: no such job" in pipeline.logs("worker0")


@pytest.mark.slow
def test_an_image_that_kills_its_worker_fails_alone(make_pipeline: PipelineFactory) -> None:
    poison = images.jpeg(seed=1300)
    pipeline = make_pipeline(workers=0, ASYNCINFER_FAULT_CRASH_ON_SHA256=hashlib.sha256(poison).hexdigest(),
                             ASYNCINFER_MAX_BATCH_WAIT_MS="500")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        jobs = batch_of(client, [images.jpeg(seed=1301), poison, *(images.jpeg(seed=1302 + i) for i in range(4))])
        crashes = 0
        worker = pipeline.start_worker()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            docs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in jobs]
            if all(JobStatus(doc["status"]).terminal for doc in docs):
                break
            if worker.poll() is not None:  # as a supervisor would: start another
                crashes += 1
                worker = pipeline.start_worker()
            time.sleep(0.2)

    killed, mates = docs[1], [docs[0], *docs[2:]]
    assert (killed["status"], killed["error"]["code"], killed["attempts"]) == ("failed", "worker_lost", 3)
    assert crashes == 3, [doc["history"] for doc in docs]
    for doc in mates:  # charged once: for the first crash, when the whole batch ran together
        assert (doc["status"], doc["attempts"]) == ("succeeded", 2), doc["history"]
        assert doc["result"]["batch_size"] == 1  # after that, each ran alone
