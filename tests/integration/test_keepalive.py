"""A quiet event stream sends a keep-alive comment at least every ASYNCINFER_SSE_PING_S (from the
stream's own loop: sse-starlette's ping task is off), for a job's, a batch's and a session's
stream, and still ends with the job's terminal event."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.conftest import PipelineFactory
from tests.support import direct_writes, images
from tests.support.http import submit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PING_S = 0.6
# Long enough that no store re-read wakes a stream during the test: only the keep-alive does.
RESYNC_S = 60
QUIET_S = 2.5
# The SSE write and a loaded 2-core machine.
MARGIN_S = 1.0


def stream_path(client: httpx.Client, kind: str) -> tuple[str, str]:
    """A stream of `kind` over one queued job: its path and the job's id."""
    if kind == "job":
        job = submit(client, images.jpeg(seed=61_001))
        return f"/v1/jobs/{job['id']}/events", job["id"]
    if kind == "batch":
        batch = client.post("/v1/batches", files=[("files", ("a.jpg", images.jpeg(seed=61_002), "image/jpeg"))])
        assert batch.status_code == 202, batch.text
        return f"/v1/batches/{batch.json()['id']}/events", batch.json()["jobs"][0]["id"]
    session = client.post("/v1/sessions", json=None)
    assert session.status_code == 201, session.text
    job = submit(client, images.jpeg(seed=61_003), session_id=session.json()["id"])
    return f"/v1/sessions/{session.json()['id']}/events", job["id"]


@pytest.mark.parametrize("kind", ["job", "batch", "session"])
def test_a_quiet_stream_pings_every_interval_and_still_ends_with_its_result(
    make_pipeline: PipelineFactory, kind: str,
) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_SSE_PING_S=str(PING_S), ASYNCINFER_STREAM_RESYNC_S=str(RESYNC_S))
    writer = direct_writes.lifecycle(pipeline)
    with httpx.Client(base_url=pipeline.url, timeout=httpx.Timeout(10, read=PING_S + MARGIN_S)) as client:
        path, job_id = stream_path(client, kind)
        pings: list[float] = []
        statuses: list[str] = []
        with client.stream("GET", path) as response:
            assert response.status_code == 200
            opened_at = time.monotonic()
            finished = False
            for line in response.iter_lines():
                if line.startswith(":"):
                    pings.append(time.monotonic())
                elif line.startswith("data:"):
                    data: dict[str, Any] = json.loads(line[5:])
                    if data.get("id") == job_id and "status" in data:
                        statuses.append(data["status"])
                if not finished and time.monotonic() - opened_at >= QUIET_S:
                    finished = True
                    direct_writes.run_to_success(writer, job_id)
                if statuses[-1:] == ["succeeded"]:
                    break

    gaps_s = [later - earlier for earlier, later in zip([opened_at, *pings], pings, strict=False)]
    print(f"{kind} stream: {len(pings)} pings, gaps {[round(gap, 2) for gap in gaps_s]} s (interval ≤ {PING_S} s)")
    assert len(pings) >= int(QUIET_S / PING_S)  # the read timeout would have ended a silent stream first
    assert max(gaps_s) <= PING_S + MARGIN_S
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
