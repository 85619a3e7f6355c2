"""With API keys configured, event streams also take the key as `api_key` in the query (a
browser's EventSource cannot send headers); every other route still wants the header."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import stream_events, submit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_the_api_key_query_parameter_is_accepted_on_event_streams_only(make_pipeline: PipelineFactory) -> None:
    gateway = make_pipeline(workers=0, ASYNCINFER_API_KEYS="key-a:team-a,key-b:team-b")
    with (
        httpx.Client(base_url=gateway.url, timeout=30) as client,
        httpx.Client(base_url=gateway.url, headers={"X-API-Key": "key-a"}, timeout=30) as team_a,
    ):
        job = submit(team_a, images.jpeg(seed=40))
        events_path = f"/v1/jobs/{job['id']}/events"

        assert client.get(events_path).status_code == 401
        assert client.get(events_path, params={"api_key": "wrong"}).status_code == 401
        assert client.get(events_path, params={"api_key": "key-b"}).status_code == 404  # another tenant's job
        first = stream_events(client, f"{events_path}?api_key=key-a", limit=1)
        assert first[0][2]["status"] == "queued"
        assert client.get(f"/v1/jobs/{job['id']}", params={"api_key": "key-a"}).status_code == 401
        assert team_a.get(f"/v1/jobs/{job['id']}").status_code == 200
