"""The whole pipeline on the Couchbase store: a real gateway and worker, CouchbaseMock over the
wire, real Redis; and a worker that keeps its results through a Couchbase outage."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis

from cli.pipeline import LocalPipeline
from cli.processes import free_port
from shared.constants import EVENTS_CHANNEL
from shared.store.couchbase import EXPIRES_AT_FIELD, CouchbaseStore
from tests.support import images
from tests.support.couchbase_mock import CouchbaseMock, couchbase_mock
from tests.support.http import post_job, stream_events, submit, wait_terminal
from tests.support.pipeline import fresh_redis_database, pipeline_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OUTAGE_S = 4.0


@pytest.fixture(scope="module")
def mock() -> Iterator[CouchbaseMock]:
    with couchbase_mock() as running:
        yield running


@pytest.fixture(scope="module")
def redis_db(redis_url: str) -> str:
    return fresh_redis_database(redis_url)


@pytest.fixture(scope="module")
def pipeline(mock: CouchbaseMock, redis_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    workdir = tmp_path_factory.mktemp("couchbase-pipeline")
    started = LocalPipeline(env=pipeline_env(redis_db, workdir, **mock.app_env()), workdir=workdir, port=free_port())
    try:
        started.start(workers=1, gateway=True)
        yield started
    finally:
        started.stop()


@pytest.fixture
def couchbase(mock: CouchbaseMock) -> Iterator[CouchbaseStore]:
    from tests.contract.conftest import couchbase_settings

    store = CouchbaseStore.from_settings(couchbase_settings(mock), wait_s=0)
    yield store
    store.close()


def test_a_job_from_upload_to_the_terminal_event(
    client: httpx.Client, pipeline: LocalPipeline, couchbase: CouchbaseStore
) -> None:
    job = submit(client, images.jpeg(seed=31), top_k=3)

    events = stream_events(client, f"/v1/jobs/{job['id']}/events")

    final = events[-1][2]
    assert final["status"] == "succeeded" and len(final["result"]["predictions"]) == 3
    assert [h["status"] for h in final["history"]] == ["queued", "running", "succeeded"]
    assert EXPIRES_AT_FIELD not in final
    stored = couchbase.get_job(job["id"])  # the document really is in Couchbase
    assert stored["status"] == "succeeded" and stored[EXPIRES_AT_FIELD] > time.time()
    assert couchbase.get_image(job["id"]) is None
    assert not (pipeline.workdir / "jobs.db").exists(), "the SQLite store was used"
    assert client.get("/readyz").json()["checks"]["store"] == "ok"


def test_a_batch_and_an_idempotent_resubmission(client: httpx.Client) -> None:
    files = [("files", (f"{i}.jpg", images.jpeg(seed=40 + i), "image/jpeg")) for i in range(4)]
    batch = client.post("/v1/batches", files=files).json()
    headers = {"Idempotency-Key": "couchbase-key"}
    first = post_job(client, images.png_with_alpha(), "image/png", headers)
    again = post_job(client, images.png_with_alpha(), "image/png", headers)

    progress = [data for name, _, data in stream_events(client, f"/v1/batches/{batch['id']}/events")
                if name == "progress"]

    assert progress[-1]["done"] and progress[-1]["counts"]["succeeded"] == 4
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert wait_terminal(client, first.json()["id"])["status"] == "succeeded"


def test_a_worker_keeps_its_results_through_a_couchbase_outage(
    client: httpx.Client, mock: CouchbaseMock, redis_db: str
) -> None:
    """Couchbase stops answering while a batch runs; every job still ends succeeded, once."""
    for _ in range(3):  # the outage must fall between a job's start and its result write
        jobs, outage = run_batch_through_outage(client, mock, redis_db)
        for doc in jobs:
            assert doc["status"] == "succeeded", doc
            assert doc["attempts"] == 1 and [h["status"] for h in doc["history"]] == [
                "queued", "running", "succeeded",
            ]
        held_up = [doc for doc in jobs if started_before_and_finished_after(doc, outage)]
        if held_up:
            return
    pytest.fail("the outage never fell between a job's start and its result")


def run_batch_through_outage(
    client: httpx.Client, mock: CouchbaseMock, redis_url: str
) -> tuple[list[dict[str, Any]], tuple[float, float]]:
    subscription = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(EVENTS_CHANNEL)
    files = [("files", (f"{i}.jpg", images.jpeg(640, 480, seed=60 + i), "image/jpeg")) for i in range(8)]
    batch = client.post("/v1/batches", files=files).json()
    member_ids = {job["id"] for job in batch["jobs"]}
    started: set[str] = set()
    deadline = time.monotonic() + 120
    # Once every job has started, the worker's next store calls are result writes: the
    # last jobs' inference is still running when Couchbase stops answering.
    while started != member_ids and time.monotonic() < deadline:
        message = subscription.get_message(timeout=1)
        event = json.loads(message["data"]) if message else {}
        if event.get("job_id") in member_ids and event["status"] == "running":
            started.add(event["job_id"])
    subscription.close()
    with mock.frozen():
        outage_start = time.time()
        time.sleep(OUTAGE_S)
    outage_end = time.time()
    return [wait_terminal(client, job_id) for job_id in member_ids], (outage_start, outage_end)


def started_before_and_finished_after(doc: dict[str, Any], outage: tuple[float, float]) -> bool:
    at = {entry["status"]: _unix(entry["at"]) for entry in doc["history"]}
    return at["running"] < outage[0] and at["succeeded"] > outage[1]


def _unix(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
