"""Requests per client on the real gateway: each API key (each address without keys) has its own
bucket in Redis; past it, 429 problem+json with Retry-After, and the client is admitted again once
its rate has refilled the bucket (api/rate_limit.py)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import PipelineFactory

pytestmark = pytest.mark.integration

RATE, BURST = 5, 5
KEYS = "key-a:tenant-a,key-b:tenant-b"


def admitted_during(client: httpx.Client, seconds: float) -> tuple[int, int]:
    """Requests as fast as one client makes them for `seconds`: (admitted, refused)."""
    admitted = refused = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status = client.get("/v1/models").status_code
        admitted += status == 200
        refused += status == 429
    return admitted, refused


def test_a_key_past_its_rate_is_refused_with_retry_after_alone_and_admitted_again(
        make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_API_KEYS=KEYS, ASYNCINFER_RATE_LIMIT_PER_S=str(RATE),
                             ASYNCINFER_RATE_LIMIT_BURST=str(BURST))
    with httpx.Client(base_url=pipeline.url, timeout=10, headers={"X-API-Key": "key-a"}) as a, \
            httpx.Client(base_url=pipeline.url, timeout=10, headers={"X-API-Key": "key-b"}) as b:
        assert [a.get("/v1/models").status_code for _ in range(BURST)] == [200] * BURST
        refused = a.get("/v1/models")
        assert b.get("/v1/models").status_code == 200  # another key's bucket is full
        time.sleep(1.0 / RATE + 0.1)
        assert a.get("/v1/models").status_code == 200  # refilled by one
        admitted, refused_count = admitted_during(a, 3.0)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["title"] == "Too many requests from this client"
    print(f"\nat most {RATE}/s: {admitted} admitted and {refused_count} refused in 3 s of requests as fast as one "
          "client makes them")
    assert 3 * RATE - 2 <= admitted <= 3 * RATE + 2  # the rate, not the burst again
    assert refused_count > 0


def test_without_keys_each_address_has_a_bucket_and_wrong_keys_draw_on_it(make_pipeline: PipelineFactory) -> None:
    open_gateway = make_pipeline(workers=0, ASYNCINFER_RATE_LIMIT_PER_S="1", ASYNCINFER_RATE_LIMIT_BURST="2")
    keyed = make_pipeline(workers=0, ASYNCINFER_API_KEYS=KEYS, ASYNCINFER_RATE_LIMIT_PER_S="1",
                          ASYNCINFER_RATE_LIMIT_BURST="2")
    with httpx.Client(base_url=open_gateway.url, timeout=10) as anyone:
        assert [anyone.get("/v1/models").status_code for _ in range(3)] == [200, 200, 429]
    with httpx.Client(base_url=keyed.url, timeout=10) as guesser:
        # Each guess is a new key: without the address's bucket, guessing would never be limited.
        statuses = [guesser.get("/v1/models", headers={"X-API-Key": f"guess-{i}"}).status_code for i in range(3)]
        assert statuses == [401, 401, 429]
        assert guesser.get("/v1/models", headers={"X-API-Key": "key-a"}).status_code == 200  # its own bucket
