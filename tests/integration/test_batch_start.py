"""When a real worker starts a batch (workers/idle_flush.py), with a batch idle time long enough to
see: a lone job starts at once when nothing else waits, and the members of a batch POSTed together
still wait for each other and run in one forward pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cli.pipeline import LocalPipeline
from shared.jobs import parse_rfc3339
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import submit, wait_terminal

pytestmark = [pytest.mark.integration]

IDLE_S = 1.0  # ASYNCINFER_BATCH_IDLE_MS; the batch wait is longer still


@pytest.fixture(scope="module")
def pipeline(make_module_pipeline: PipelineFactory) -> Iterator[LocalPipeline]:
    yield make_module_pipeline(ASYNCINFER_BATCH_IDLE_MS=str(int(IDLE_S * 1000)), ASYNCINFER_MAX_BATCH_WAIT_MS="5000",
                               ASYNCINFER_MAX_BATCH_SIZE="16")


def queued_s(doc: dict[str, Any]) -> float:
    return (parse_rfc3339(doc["started_at"]) - parse_rfc3339(doc["created_at"])).total_seconds()


def test_a_lone_job_starts_without_waiting_for_company(client: httpx.Client) -> None:
    for seed in range(5):
        doc = wait_terminal(client, submit(client, images.jpeg(seed=seed))["id"])
        assert doc["status"] == "succeeded", doc
        assert doc["result"]["batch_size"] == 1
        assert queued_s(doc) < IDLE_S / 2, f"a lone job waited {queued_s(doc):.3f} s to start"


def test_jobs_queued_together_wait_for_each_other(client: httpx.Client) -> None:
    files = [("files", (f"img{i}.jpg", images.jpeg(seed=50 + i), "image/jpeg")) for i in range(8)]
    response = client.post("/v1/batches", files=files)
    assert response.status_code == 202, response.text
    docs = [wait_terminal(client, job["id"]) for job in response.json()["jobs"]]
    assert [doc["result"]["batch_size"] for doc in docs] == [8] * 8
