"""A lost event never hangs a client: with its publish lost, a live event stream and a long poll
still reach the terminal state within ASYNCINFER_STREAM_RESYNC_S (plus a margin)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from httpx_sse import connect_sse

from tests.conftest import PipelineFactory
from tests.support import direct_writes, images
from tests.support.http import submit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RESYNC_S = 2.0
# A store read, the SSE write and a loaded 2-core machine.
MARGIN_S = 1.5


def test_a_live_stream_gets_a_lost_terminal_event_within_the_resync_interval(
    make_pipeline: PipelineFactory,
) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_STREAM_RESYNC_S=str(RESYNC_S))  # nothing runs the job but us
    writer = direct_writes.lifecycle(pipeline, lose_events=True)
    failures_before = direct_writes.publish_failures()
    # Keep-alive pings (15 s) would keep a hung stream open; the read timeout ends it instead.
    with httpx.Client(base_url=pipeline.url, timeout=httpx.Timeout(10, read=RESYNC_S + MARGIN_S)) as client:
        job = submit(client, images.jpeg(seed=501))
        with connect_sse(client, "GET", f"/v1/jobs/{job['id']}/events") as source:
            events = source.iter_sse()
            assert json.loads(next(events).data)["status"] == "queued"
            finished_at = time.monotonic()
            direct_writes.run_to_success(writer, job["id"])
            rest = []
            for event in events:
                if event.event == "position":  # its place in line, while queued
                    continue
                rest.append((event.id, json.loads(event.data)["status"]))
                delay_s = time.monotonic() - finished_at
        metrics = client.get("/metrics").text

    print(f"SSE: terminal event {delay_s:.2f}s after the lost publish (resync {RESYNC_S}s)")
    assert direct_writes.publish_failures() - failures_before == 2  # running and succeeded, both lost
    assert rest == [("2", "running"), ("3", "succeeded")]
    assert delay_s <= RESYNC_S + MARGIN_S
    assert "asyncinfer_event_publish_failures_total" in metrics


def test_a_long_poll_gets_a_lost_terminal_event_within_the_resync_interval(
    make_pipeline: PipelineFactory,
) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_STREAM_RESYNC_S=str(RESYNC_S))
    writer = direct_writes.lifecycle(pipeline, lose_events=True)
    failures_before = direct_writes.publish_failures()
    with httpx.Client(base_url=pipeline.url, timeout=40) as client, ThreadPoolExecutor(1) as pool:
        job = submit(client, images.jpeg(seed=502))
        poll = pool.submit(client.get, f"/v1/jobs/{job['id']}", params={"wait": 20})
        time.sleep(1.0)  # the poll has read the queued job and waits
        assert not poll.done()
        finished_at = time.monotonic()
        direct_writes.run_to_success(writer, job["id"])
        doc = poll.result().json()
        delay_s = time.monotonic() - finished_at

    print(f"long poll: answered {delay_s:.2f}s after the lost publish (resync {RESYNC_S}s)")
    assert direct_writes.publish_failures() - failures_before == 2
    assert doc["status"] == "succeeded"
    assert delay_s <= RESYNC_S + MARGIN_S
