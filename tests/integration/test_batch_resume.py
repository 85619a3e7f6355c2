"""A batch's event stream resumes from Last-Event-ID (the sum of the members' seqs): the changes
after it, each once, in the order they happened, with no repeats and no gaps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.conftest import PipelineFactory
from tests.support import direct_writes, images
from tests.support.http import stream_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RESYNC_S = 2.0
MARGIN_S = 1.5

Event = tuple[str, str, dict[str, Any]]  # (event, id, data)
Change = tuple[str, str, int, str]  # (event id, job id, seq, status)


def post_batch(client: httpx.Client, size: int, seed: int) -> dict[str, Any]:
    files = [("files", (f"{i}.jpg", images.jpeg(seed=seed + i), "image/jpeg")) for i in range(size)]
    response = client.post("/v1/batches", files=files)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def newest_entry(data: dict[str, Any]) -> dict[str, Any]:
    """A status event's history step: a replayed entry, or the whole document's newest."""
    return data if "seq" in data else data["history"][-1]


def changes(events: list[Event]) -> list[Change]:
    return [(event_id, data["id"], newest_entry(data)["seq"], data["status"])
            for name, event_id, data in events if name == "status"]


def every_change(client: httpx.Client, batch: dict[str, Any]) -> set[tuple[str, int, str]]:
    """(job id, seq, status) of each member's history entries after its first, as stored."""
    docs = [client.get(f"/v1/jobs/{job['id']}").json() for job in batch["jobs"]]
    return {(doc["id"], entry["seq"], entry["status"]) for doc in docs for entry in doc["history"][1:]}


def take(source: Iterator[ServerSentEvent], count: int | None = None) -> list[Event]:
    """The next `count` events (all, until the stream ends, without one)."""
    taken = []
    for sse in source:
        taken.append((sse.event, sse.id, json.loads(sse.data)))
        if len(taken) == count:
            break
    return taken


def test_a_finished_batch_resumes_from_every_event_id(client: httpx.Client) -> None:
    batch = post_batch(client, 3, seed=600)
    path = f"/v1/batches/{batch['id']}/events"
    first = stream_events(client, path)
    members = len(batch["jobs"])
    stored = every_change(client, batch)
    last_id = members + len(stored)
    assert first[-1] == ("progress", str(last_id), {"batch_id": batch["id"], "counts": first[-1][2]["counts"],
                                                     "done": True})
    # The states a stream starts with carry no id: a client cut off among them starts afresh.
    assert [(name, event_id) for name, event_id, _ in first[:members]] == [("status", "")] * members

    everything = stream_events(client, path, headers={"Last-Event-ID": str(members)})

    replayed = changes(everything)
    assert [event_id for event_id, *_ in replayed] == [str(i) for i in range(members + 1, last_id + 1)]
    assert {(job_id, seq, status) for _, job_id, seq, status in replayed} == stored
    assert len(replayed) == len(stored)
    ats = [newest_entry(data)["at"] for name, _, data in everything if name == "status"]
    assert ats == sorted(ats)  # in the order the changes happened
    for after in range(members, last_id + 1):
        resumed = stream_events(client, path, headers={"Last-Event-ID": str(after)})
        assert changes(resumed) == replayed[after - members:], after
        assert resumed[-1][:2] == ("progress", str(last_id)) and resumed[-1][2]["done"] is True


def test_a_live_batch_stream_resumes_from_last_event_id(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_STREAM_RESYNC_S=str(RESYNC_S))  # the test makes every change
    writer = direct_writes.lifecycle(pipeline)
    lossy = direct_writes.lifecycle(pipeline, lose_events=True)
    result = {"result": direct_writes.RESULT, "model": direct_writes.MODEL}
    with httpx.Client(base_url=pipeline.url, timeout=httpx.Timeout(10, read=RESYNC_S + MARGIN_S)) as client:
        batch = post_batch(client, 3, seed=610)
        a, b, c = (job["id"] for job in batch["jobs"])
        path = f"/v1/batches/{batch['id']}/events"
        with connect_sse(client, "GET", path) as source:
            events = source.iter_sse()
            first = take(events, 4)  # the three states, then progress
            writer.begin(a)
            writer.begin(b)
            first += take(events, 4)  # each change, then progress
        writer.succeed(a, **result)  # while the client is away
        writer.begin(c)
        with connect_sse(client, "GET", path, headers={"Last-Event-ID": first[-1][1]}) as source:
            events = source.iter_sse()
            resumed = take(events, 3)  # the two missed changes, then progress
            writer.succeed(b, **result)
            resumed += take(events, 2)
            lost_at = time.monotonic()
            lossy.succeed(c, **result)  # its event is lost: the stream finds it in the store
            resumed += take(events)
            delay_s = time.monotonic() - lost_at
        stored = every_change(client, batch)

    print(f"batch stream: lost terminal event arrived after {delay_s:.2f}s (resync {RESYNC_S}s)")
    assert [event_id for _, event_id, _ in first[:3]] == ["", "", ""] and first[3][:2] == ("progress", "3")
    assert first[-1][:2] == ("progress", "5")
    assert changes(resumed)[:2] == [("6", a, 3, "succeeded"), ("7", c, 2, "running")]
    both = changes(first[4:]) + changes(resumed)
    assert [event_id for event_id, *_ in both] == [str(i) for i in range(4, 10)]
    assert sorted((job_id, seq, status) for _, job_id, seq, status in both) == sorted(stored)
    assert resumed[-1][:2] == ("progress", "9") and resumed[-1][2]["done"] is True
    assert delay_s <= RESYNC_S + MARGIN_S
