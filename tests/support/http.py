"""Small HTTP helpers for tests that drive the real gateway."""

from __future__ import annotations

import json
from typing import Any

import httpx
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from shared.jobs import JobStatus


def post_job(client: httpx.Client, data: bytes, content_type: str = "image/jpeg",
             headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    """`POST /v1/jobs` with the image as the raw body; the answer is not checked."""
    return client.post("/v1/jobs", content=data, headers={"Content-Type": content_type, **(headers or {})},
                       params=params)


def submit(client: httpx.Client, data: bytes, content_type: str = "image/jpeg", **params: Any) -> dict[str, Any]:
    response = post_job(client, data, content_type, **params)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def stream_events(client: httpx.Client, path: str, headers: dict[str, str] | None = None,
                  limit: int | None = None, positions: bool = False) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, id, data) of an SSE stream until it ends (or `limit` events); a queued job's
    `position` events only with `positions` (how many come depends on timing)."""
    events = []
    with connect_sse(client, "GET", path, headers=headers or {}) as source:
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            if sse.event == "position" and not positions:
                continue
            events.append((sse.event, sse.id, json.loads(sse.data)))
            if limit is not None and len(events) >= limit:
                break
    return events


def wait_terminal(client: httpx.Client, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline_polls = int(timeout_s // 10) + 1
    for _ in range(deadline_polls):
        doc = client.get(f"/v1/jobs/{job_id}", params={"wait": 10}, timeout=20).json()
        if JobStatus(doc["status"]).terminal:
            return doc  # type: ignore[no-any-return]
    raise TimeoutError(f"job {job_id} did not finish in {timeout_s}s")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_metrics(url: str) -> Samples:
    """Every sample of the Prometheus text at `url` (…/metrics): (name, sorted labels) → value."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
