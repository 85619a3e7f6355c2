"""Streams' and long polls' job reads, asked for at once, go to a real SQLite store as one
multi-key read (api/following/job_reads.py), each asker still getting its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from unittest import mock

import pytest

from api.following.job_reads import MAX_KEYS_PER_READ, JobReads
from shared.errors import JobNotFound, StoreUnavailable
from shared.jobs import new_job
from shared.store.sqlite import SqliteStore
from tests.support.models import INPUT_INFO, MOBILENET_V2


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "jobs.db"), ttl_s=3600)


def jobs_in(store: SqliteStore, count: int, tenant: str = "t") -> list[str]:
    docs = [new_job(model=MOBILENET_V2, tenant=tenant, input_info=INPUT_INFO, top_k=1) for _ in range(count)]
    for doc in docs:
        store.create_job(doc, b"img")
    return [doc["id"] for doc in docs]


def test_reads_asked_for_together_are_one_store_call_and_each_gets_its_job(store: SqliteStore) -> None:
    job_ids = jobs_in(store, 20)
    reads = JobReads(store)

    async def read_all() -> list[object]:
        return await asyncio.gather(*(reads.get_job(job_id, tenant="t") for job_id in job_ids + job_ids[:3]))

    with mock.patch.object(store, "get_jobs_by_id", wraps=store.get_jobs_by_id) as get_many:
        docs = asyncio.run(read_all())

    assert [doc["id"] for doc in docs] == job_ids + job_ids[:3]  # type: ignore[index]
    assert get_many.call_count == 1 and sorted(get_many.call_args.args[0]) == sorted(job_ids)


def test_more_jobs_than_one_read_takes_are_read_in_several(store: SqliteStore) -> None:
    job_ids = jobs_in(store, MAX_KEYS_PER_READ + 5)
    reads = JobReads(store)

    async def read_all() -> list[object]:
        return await asyncio.gather(*(reads.get_job(job_id) for job_id in job_ids))

    with mock.patch.object(store, "get_jobs_by_id", wraps=store.get_jobs_by_id) as get_many:
        docs = asyncio.run(read_all())

    assert len(docs) == len(job_ids) and get_many.call_count == 2


def test_a_gone_job_and_another_tenants_job_are_not_found_for_their_asker_alone(store: SqliteStore) -> None:
    ours, theirs = jobs_in(store, 1)[0], jobs_in(store, 1, tenant="other")[0]
    reads = JobReads(store)

    async def read_all() -> list[object]:
        return await asyncio.gather(reads.get_job(ours, tenant="t"), reads.get_job(theirs, tenant="t"),
                                    reads.get_job("gone", tenant="t"), return_exceptions=True)

    doc, other, gone = asyncio.run(read_all())

    assert doc["id"] == ours  # type: ignore[index]
    assert isinstance(other, JobNotFound) and isinstance(gone, JobNotFound)


def test_a_store_outage_reaches_every_asker_and_the_next_read_tries_again(store: SqliteStore) -> None:
    job_ids = jobs_in(store, 3)
    reads = JobReads(store)

    async def read_all() -> list[object]:
        return await asyncio.gather(*(reads.get_job(job_id) for job_id in job_ids), return_exceptions=True)

    with mock.patch.object(store, "get_jobs_by_id", side_effect=StoreUnavailable("down")):
        failed = asyncio.run(read_all())
    again = asyncio.run(read_all())

    assert all(isinstance(answer, StoreUnavailable) for answer in failed)
    assert [doc["id"] for doc in again] == job_ids  # type: ignore[index]
