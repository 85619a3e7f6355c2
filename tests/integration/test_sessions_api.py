"""Sessions on the real gateway and worker, on both stores: a session collects the jobs and batches
submitted with its id, in order, with their results; racing jobs all land in it; another tenant
sees nothing of it and cannot join it; it expires; its event stream resumes with Last-Event-ID and
carries the jobs that join it later."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from cli.pipeline import LocalPipeline
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.couchbase_mock import couchbase_mock
from tests.support.http import submit, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

KEYS = {"alice": "key-alice", "bob": "key-bob"}


@pytest.fixture(scope="module", params=["sqlite", "couchbase"])
def pipeline(request: pytest.FixtureRequest, make_module_pipeline: PipelineFactory) -> Iterator[LocalPipeline]:
    keys = {"ASYNCINFER_API_KEYS": ",".join(f"{key}:{tenant}" for tenant, key in KEYS.items())}
    if request.param == "sqlite":
        yield make_module_pipeline(**keys)
        return
    with couchbase_mock() as mock:
        yield make_module_pipeline(**keys, **mock.app_env())


@pytest.fixture
def alice(pipeline: LocalPipeline) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pipeline.url, headers={"X-API-Key": KEYS["alice"]}, timeout=60) as client:
        yield client


@pytest.fixture
def bob(pipeline: LocalPipeline) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pipeline.url, headers={"X-API-Key": KEYS["bob"]}, timeout=60) as client:
        yield client


def new_session(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/sessions", json=body or None)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/v1/sessions/{response.json()['id']}"
    return response.json()  # type: ignore[no-any-return]


def history(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()["history"]  # type: ignore[no-any-return]


def test_a_session_collects_its_jobs_in_order_with_their_results(alice: httpx.Client) -> None:
    session = new_session(alice)
    assert session["history"] == [] and session["counts"]["total"] == 0
    first = alice.post("/v1/jobs", files={"file": ("cat.jpg", images.jpeg(seed=81_000), "image/jpeg")},
                       data={"session_id": session["id"]})
    assert first.status_code == 202, first.text
    second = submit(alice, images.webp(seed=81_001), "image/webp", session_id=session["id"])
    batch = alice.post("/v1/batches", params={"session_id": session["id"]},
                       files=[("files", (f"b{i}.jpg", images.jpeg(seed=81_010 + i), "image/jpeg")) for i in range(2)])
    assert batch.status_code == 202, batch.text
    ids = [first.json()["id"], second["id"], *(job["id"] for job in batch.json()["jobs"])]
    done = {job_id: wait_terminal(alice, job_id) for job_id in ids}

    entries = history(alice, session["id"])

    assert [entry["job_id"] for entry in entries] == ids
    assert [entry["input"]["filename"] for entry in entries] == ["cat.jpg", None, "b0.jpg", "b1.jpg"]
    for entry in entries:
        doc = done[entry["job_id"]]
        assert doc["session_id"] == session["id"]
        assert entry["status"] == doc["status"] == "succeeded"
        assert entry["top_prediction"] == doc["result"]["predictions"][0]
        assert entry["model"] == {"name": doc["model"]["name"], "version": doc["model"]["version"]}
        assert entry["input"]["sha256"] == doc["input"]["sha256"]
    listed = alice.get("/v1/jobs", params={"session_id": session["id"]}).json()["jobs"]
    assert sorted(job["id"] for job in listed) == sorted(ids)

    exported = alice.get(f"/v1/sessions/{session['id']}", params={"export": "csv"})
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.headers["content-disposition"] == f'attachment; filename="session-{session["id"]}.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(row["job_id"], row["filename"], row["status"], row["label"]) for row in rows] == [
        (entry["job_id"], entry["input"]["filename"] or "", "succeeded", entry["top_prediction"]["label"])
        for entry in entries]
    as_json = alice.get(f"/v1/sessions/{session['id']}", params={"export": "json"})
    assert as_json.headers["content-disposition"].endswith('.json"') and as_json.json()["history"] == entries


def test_racing_jobs_of_one_session_all_land_in_its_history(alice: httpx.Client) -> None:
    session = new_session(alice)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: submit(alice, images.jpeg(seed=82_000 + i), session_id=session["id"])["id"],
                            range(16)))

    assert sorted(entry["job_id"] for entry in history(alice, session["id"])) == sorted(ids)


def test_another_tenant_neither_sees_nor_joins_a_session(alice: httpx.Client, bob: httpx.Client) -> None:
    session = new_session(alice)
    bobs_jobs_before = bob.get("/v1/jobs").json()["jobs"]

    assert bob.get(f"/v1/sessions/{session['id']}").status_code == 404
    assert bob.get(f"/v1/sessions/{session['id']}/events").status_code == 404
    assert bob.post(f"/v1/sessions/{session['id']}/stream-token").status_code == 404
    refused = bob.post("/v1/jobs", content=images.jpeg(seed=83_000), headers={"Content-Type": "image/jpeg"},
                       params={"session_id": session["id"]})
    assert refused.status_code == 404, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert bob.get("/v1/jobs").json()["jobs"] == bobs_jobs_before  # nothing stored
    assert alice.post("/v1/jobs", content=images.jpeg(seed=83_001), headers={"Content-Type": "image/jpeg"},
                      params={"session_id": "no-such-session"}).status_code == 404
    assert history(alice, session["id"]) == []


def test_a_session_expires(alice: httpx.Client) -> None:
    session = new_session(alice, ttl_s=2)
    assert alice.post("/v1/sessions", json={"ttl_s": 0}).status_code == 400

    time.sleep(3.5)

    assert alice.get(f"/v1/sessions/{session['id']}").status_code == 404
    joined = alice.post("/v1/jobs", content=images.jpeg(seed=84_000), headers={"Content-Type": "image/jpeg"},
                        params={"session_id": session["id"]})
    assert joined.status_code == 404


def status_events(client: httpx.Client, path: str, count: int, last_event_id: str | None = None,
                  opened: threading.Event | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(id, data) of the first `count` status events of a session stream; the `session` events (counts)
    between them are checked to carry the id of the change before them. `opened` is set once the
    stream's first event (the counts after the replay, at least) has arrived."""
    found: list[tuple[str, dict[str, Any]]] = []
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with connect_sse(client, "GET", path, headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            if opened is not None:
                opened.set()
            if sse.event == "session":
                assert sse.id == (found[-1][0] if found else last_event_id or "0")
                continue
            assert sse.event == "status", sse.event
            found.append((sse.id, json.loads(sse.data)))
            if len(found) == count:
                return found
    raise AssertionError(f"the stream ended after {found}")


def test_the_session_stream_resumes_after_the_last_event_it_sent(alice: httpx.Client) -> None:
    session = new_session(alice)
    path = f"/v1/sessions/{session['id']}/events"
    first = submit(alice, images.jpeg(seed=85_000), session_id=session["id"])
    wait_terminal(alice, first["id"])

    sent = status_events(alice, path, 3)

    assert [(event_id, data["status"]) for event_id, data in sent] == [
        ("1", "queued"), ("2", "running"), ("3", "succeeded")]
    second = submit(alice, images.jpeg(seed=85_001), session_id=session["id"])
    wait_terminal(alice, second["id"])
    resumed = status_events(alice, path, 3, last_event_id="3")
    assert [(event_id, data["id"], data["status"]) for event_id, data in resumed] == [
        ("4", second["id"], "queued"), ("5", second["id"], "running"), ("6", second["id"], "succeeded")]

    # A job that joins while the stream is open arrives live, numbered on.
    opened = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        live = pool.submit(status_events, alice, path, 3, "6", opened)
        assert opened.wait(30)
        third = submit(alice, images.jpeg(seed=85_002), session_id=session["id"])
        events = live.result(timeout=120)
    assert [(event_id, data["id"]) for event_id, data in events] == [
        ("7", third["id"]), ("8", third["id"]), ("9", third["id"])]
    assert events[-1][1]["status"] == "succeeded"
