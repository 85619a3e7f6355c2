"""The gateway's operational endpoints: /metrics behind its own token when one is set, and the API
documentation off in production unless asked for."""

from __future__ import annotations

import httpx
import pytest

from shared.api_keys import new_key
from tests.conftest import PipelineFactory

pytestmark = pytest.mark.integration


def test_metrics_answer_only_their_token_when_one_is_set(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_METRICS_TOKEN="scrape-token-1")
    with httpx.Client(base_url=pipeline.url, timeout=10) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-1"})

    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert right.status_code == 200 and "asyncinfer_jobs_submitted_total" in right.text


def test_production_serves_no_api_documentation_unless_asked(make_pipeline: PipelineFactory) -> None:
    key, entry = new_key("t")
    production = {"ASYNCINFER_ENVIRONMENT": "production", "ASYNCINFER_API_KEY_ENTRIES": entry.line(),
                  "ASYNCINFER_STREAM_TOKEN_SECRET": "a-test-secret-of-some-length"}
    hidden = make_pipeline(workers=0, **production)
    shown = make_pipeline(workers=0, ASYNCINFER_API_DOCS="true", **production)
    with httpx.Client(timeout=10) as client:
        assert [client.get(hidden.url + path).status_code for path in ("/docs", "/openapi.json", "/redoc")] == [404] * 3
        assert client.get(hidden.url + "/v1/models", headers={"X-API-Key": key}).status_code == 200
        assert client.get(shown.url + "/openapi.json").status_code == 200
        # The page links to the documentation only where it is served.
        assert 'href="/docs"' not in client.get(hidden.url + "/").text
        assert 'href="/docs"' in client.get(shown.url + "/").text
