"""What a delivery sends: a job's document, or a whole batch once its last member has ended, read
from a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.delivery.subjects import Subjects, batch_target, message_id
from shared.jobs import JobStatus, new_job
from shared.store.sqlite import SqliteStore
from tests.support.models import INPUT_INFO, MOBILENET_V2


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "jobs.db"), ttl_s=3600)


def batch_of(store: SqliteStore, members: int) -> list[str]:
    docs = [new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT_INFO, top_k=1, batch_id="b1") for _ in range(members)]
    for doc in docs:
        store.create_job(doc, b"img")
    store.create_batch({"id": "b1", "type": "batch", "tenant": "t", "created_at": docs[0]["created_at"],
                        "model": MOBILENET_V2, "job_ids": [doc["id"] for doc in docs],
                        "callback_url": "https://example.com/hook"})
    return [doc["id"] for doc in docs]


def finish(store: SqliteStore, job_id: str) -> None:
    store.transition(job_id, JobStatus.RUNNING)
    store.transition(job_id, JobStatus.SUCCEEDED, result={"predictions": [{"label": "x", "class_id": 1, "score": 1.0}]})


def test_a_batch_is_ready_only_once_every_member_has_ended(store: SqliteStore) -> None:
    first, second = batch_of(store, 2)
    subjects = Subjects(store, publisher=None)  # type: ignore[arg-type]
    finish(store, first)

    waiting = subjects.load(batch_target("b1"))
    finish(store, second)
    ready = subjects.load(batch_target("b1"))

    assert waiting is not None and not waiting.ready and waiting.payload == b""
    assert ready is not None and ready.ready and ready.callback_url == "https://example.com/hook"
    body = json.loads(ready.payload)
    assert (body["id"], body["status"], body["counts"]["succeeded"]) == ("b1", "done", 2)
    assert [job["id"] for job in body["jobs"]] == [first, second]
    assert all(job["result"]["predictions"][0]["label"] == "x" for job in body["jobs"])


def test_the_batchs_record_is_written_on_the_batch_and_left_out_of_its_body(store: SqliteStore) -> None:
    for job_id in batch_of(store, 1):
        finish(store, job_id)
    subjects = Subjects(store, publisher=None)  # type: ignore[arg-type]

    subjects.record(batch_target("b1"), lambda current: {"state": "delivered", "attempts": 1})
    loaded = subjects.load(batch_target("b1"))

    assert loaded is not None and loaded.record == {"state": "delivered", "attempts": 1}
    assert "delivery" not in json.loads(loaded.payload)


def test_a_gone_subject_loads_as_none(store: SqliteStore) -> None:
    subjects = Subjects(store, publisher=None)  # type: ignore[arg-type]
    assert subjects.load("no-such-job") is None
    assert subjects.load(batch_target("no-such-batch")) is None


def test_webhook_ids_tell_a_job_from_a_batch() -> None:
    assert message_id("j1") == "msg_j1"
    assert message_id(batch_target("b1")) == "msg_batch_b1"
