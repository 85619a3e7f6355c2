"""A worker killed in the middle of a batch loses nothing: the jobs come back and finish."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from cli.processes import wait_until
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]


def running_jobs(db_path: str) -> set[str]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT json_extract(value, '$.id') FROM kv "
            "WHERE key LIKE 'job::%' AND json_extract(value, '$.status') = 'running'"
        ).fetchall()
    return {row[0] for row in rows}


def test_sigkill_mid_batch_then_every_job_succeeds(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(ASYNCINFER_MAX_BATCH_SIZE="8", ASYNCINFER_MAX_BATCH_WAIT_MS="200")
    db_path = str(pipeline.workdir / "jobs.db")
    # Large PNGs decode slowly, so a batch is running for long enough to be caught.
    payloads = [images.encode(images.picture(1600, 1200, seed=200 + i), "PNG", compress_level=1) for i in range(16)]
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(payloads)]
        batch = client.post("/v1/batches", files=files).json()
        job_ids = [job["id"] for job in batch["jobs"]]

        in_flight = wait_until(lambda: running_jobs(db_path), 60, "a batch to start", interval_s=0.005)
        pipeline.kill_worker(pipeline.workers[0])
        time.sleep(0.5)
        still_running = running_jobs(db_path)
        assert still_running, "the batch finished before the kill; nothing was tested"
        assert in_flight <= still_running  # nothing was written after the kill

        pipeline.start_worker()
        docs = {job_id: wait_terminal(client, job_id, timeout_s=180) for job_id in job_ids}

    assert {doc["status"] for doc in docs.values()} == {"succeeded"}
    for job_id in still_running:
        assert docs[job_id]["attempts"] == 2, docs[job_id]["history"]
        assert [h["status"] for h in docs[job_id]["history"]] == ["queued", "running", "running", "succeeded"]
