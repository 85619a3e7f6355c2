"""With API keys configured, an event stream opens with the key in a header or with a stream token
in the query (a browser's EventSource cannot send headers); a key in the query is refused, there as
everywhere (tests/integration/test_doors.py tries every route)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import stream_events, submit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_event_streams_take_a_stream_token_in_the_query_and_never_a_key(make_pipeline: PipelineFactory) -> None:
    gateway = make_pipeline(workers=0, ASYNCINFER_API_KEYS="key-a:team-a,key-b:team-b")
    with (
        httpx.Client(base_url=gateway.url, timeout=30) as client,
        httpx.Client(base_url=gateway.url, headers={"X-API-Key": "key-a"}, timeout=30) as team_a,
        httpx.Client(base_url=gateway.url, headers={"X-API-Key": "key-b"}, timeout=30) as team_b,
    ):
        job = submit(team_a, images.jpeg(seed=40))
        events_path = f"/v1/jobs/{job['id']}/events"

        assert client.get(events_path).status_code == 401
        assert client.get(events_path, params={"api_key": "key-a"}).status_code == 401  # a key in a URL: refused
        assert team_b.post(f"/v1/jobs/{job['id']}/stream-token").status_code == 404  # another tenant's job
        token = team_a.post(f"/v1/jobs/{job['id']}/stream-token").json()["token"]
        first = stream_events(client, f"{events_path}?token={token}", limit=1)
        assert first[0][2]["status"] == "queued"
        assert stream_events(team_a, events_path, limit=1)[0][2]["status"] == "queued"  # the header, as before
        assert client.get(f"/v1/jobs/{job['id']}", params={"token": token}).status_code == 401  # streams only
        assert team_a.get(f"/v1/jobs/{job['id']}").status_code == 200
