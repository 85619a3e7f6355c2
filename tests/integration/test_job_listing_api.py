"""GET /v1/jobs and DELETE /v1/jobs/{id}?purge=true on the real gateway: a tenant lists only its own
jobs, newest first, page by page; a purged job is gone; bad listing parameters are problems."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import submit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEYS = {"alice": "key-alice", "bob": "key-bob"}


def listing(client: httpx.Client, **params: object) -> list[str]:
    """Every job id over every page, following next_cursor."""
    ids: list[str] = []
    cursor = None
    while True:
        response = client.get("/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [job["id"] for job in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


def test_a_tenant_lists_its_own_jobs_page_by_page_and_purges_one(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_API_KEYS=",".join(f"{k}:{t}" for t, k in KEYS.items()))
    with httpx.Client(base_url=pipeline.url, headers={"X-API-Key": KEYS["alice"]}, timeout=30) as alice, \
            httpx.Client(base_url=pipeline.url, headers={"X-API-Key": KEYS["bob"]}, timeout=30) as bob:
        mine = [submit(alice, images.jpeg(seed=33_000 + i))["id"] for i in range(5)]
        theirs = [submit(bob, images.jpeg(seed=33_100 + i))["id"] for i in range(3)]
        assert alice.delete(f"/v1/jobs/{mine[0]}").status_code == 202  # cancelled: finished, purgeable

        assert listing(alice, limit=2) == mine[::-1]
        assert listing(bob) == theirs[::-1]
        assert listing(alice, status="cancelled") == [mine[0]]
        assert listing(alice, status=["queued", "cancelled"]) == mine[::-1]

        assert alice.delete(f"/v1/jobs/{mine[1]}", params={"purge": "true"}).status_code == 409  # still queued
        assert bob.delete(f"/v1/jobs/{mine[0]}", params={"purge": "true"}).status_code == 404  # not bob's
        assert alice.delete(f"/v1/jobs/{mine[0]}", params={"purge": "true"}).status_code == 204
        assert listing(alice) == mine[:0:-1]
        assert alice.get(f"/v1/jobs/{mine[0]}").status_code == 404


@pytest.mark.parametrize(("params", "says"), [
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "1700000000000:"}, "cursor"),
    ({"created_after": "2026-12-02T10:00:00"}, "with its zone"),
    ({"created_after": "0.5"}, "created_after"),
    ({"limit": "0"}, "limit"),
    ({"status": "lost"}, "status"),
])
def test_bad_listing_parameters_are_problems(client: httpx.Client, params: dict[str, str], says: str) -> None:
    response = client.get("/v1/jobs", params=params)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert says in response.text
