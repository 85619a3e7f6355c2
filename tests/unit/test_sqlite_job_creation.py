"""The embedded store writes a new job (its image, its listing entries, its document) as one
transaction: a failure part-way keeps none of it, and the job's writes take one commit. So does a
batch's members, all of them together."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from shared.errors import StoreUnavailable
from shared.jobs import new_job
from shared.store import JobStore
from shared.store.base import JobQuery
from shared.store.sqlite import SqliteStore
from tests.support.models import MOBILENET_V2

IMAGE = b"\x89PNG pixels"


def a_store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "jobs.db"), ttl_s=3600)


def a_job() -> dict[str, Any]:
    return new_job(tenant="tenant-a", input_info={"content_type": "image/png"}, model=MOBILENET_V2, top_k=5)


def listed(store: JobStore) -> list[str]:
    page, _ = store.list_jobs("tenant-a", JobQuery(limit=100), now_ms=int(time.time() * 1000))
    return [doc["id"] for doc in page]


def test_a_job_that_fails_to_be_written_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = a_store(tmp_path)
    job = a_job()
    real_insert = store._insert

    def fail_on_the_document(key: str, value: dict[str, Any], ttl_s: int) -> None:
        if value.get("id") == job["id"]:
            raise StoreUnavailable("the disk is full")
        real_insert(key, value, ttl_s)

    monkeypatch.setattr(store, "_insert", fail_on_the_document)
    with pytest.raises(StoreUnavailable):
        store.create_job(job, IMAGE)

    monkeypatch.undo()
    assert store.get_image(job["id"]) is None
    assert listed(store) == []
    _, created = store.create_job(job, IMAGE)  # and the same job can be written afterwards
    assert created and listed(store) == [job["id"]] and store.get_image(job["id"]) == IMAGE


def test_a_new_job_is_one_commit(tmp_path: Path) -> None:
    store = a_store(tmp_path)
    store.create_job(a_job(), IMAGE)  # the listing's day and minute documents exist from here on
    commits = []
    store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    store.create_job(a_job(), IMAGE)
    assert len(commits) == 1


def test_a_batch_is_one_commit_and_a_failure_part_way_keeps_none_of_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = a_store(tmp_path)
    batch = [(a_job(), IMAGE) for _ in range(16)]
    real_insert = store._insert

    def fail_on_the_last_document(key: str, value: dict[str, Any], ttl_s: int) -> None:
        if value.get("id") == batch[-1][0]["id"]:
            raise StoreUnavailable("the disk is full")
        real_insert(key, value, ttl_s)

    monkeypatch.setattr(store, "_insert", fail_on_the_last_document)
    with pytest.raises(StoreUnavailable):
        store.create_jobs(batch)
    monkeypatch.undo()
    assert listed(store) == [] and all(store.get_image(doc["id"]) is None for doc, _ in batch)

    commits = []
    store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    store.create_jobs(batch)
    assert len(commits) == 1 and sorted(listed(store)) == sorted(doc["id"] for doc, _ in batch)
