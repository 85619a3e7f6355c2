"""Every error is problem+json, an unexpected one too: a 500 whose generic detail gives nothing
away and whose request id is in the answer, its X-Request-ID header and the gateway's log line
with the traceback."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from api.routes.faults import SECRET_MESSAGE
from shared.config import Settings
from tests.conftest import PipelineFactory
from tests.integration.test_openapi_conformance import validate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def test_an_unexpected_error_is_a_500_problem_with_a_request_id(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_FAULT_INJECTION="on")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        failed = client.get("/_faults/raise")
        openapi: dict[str, Any] = client.get("/openapi.json").json()
        healthy = client.get("/healthz")

    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/problem+json"
    request_id = failed.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(request_id)
    problem = failed.json()
    assert problem == {"type": "https://asyncinfer.dev/problems/500", "title": "Internal error", "status": 500,
                       "detail": problem["detail"], "request_id": request_id}
    validate(openapi, {"$ref": "#/components/schemas/Problem"}, problem)
    for secret in (SECRET_MESSAGE, "InjectedFault", "Traceback", "faults.py"):
        assert secret not in failed.text
    assert "/_faults/raise" not in openapi["paths"]
    assert healthy.status_code == 200 and GENERATED_ID.fullmatch(healthy.headers["x-request-id"])
    # The line that names the request id opens the traceback of what failed.
    logged = pipeline.logs("gateway").split(request_id, 1)[1]
    assert logged.splitlines()[1] == "Traceback (most recent call last):", logged[:2000]
    assert f"InjectedFault: {SECRET_MESSAGE}" in logged


@pytest.mark.parametrize(("sent", "kept"), [("client-id_1.2-x", True), ("a" * 128, True), ("a" * 129, False),
                                            ("has space", False), ("semi;colon", False), ("", False)])
def test_a_well_formed_client_request_id_is_kept(client: httpx.Client, sent: str, kept: bool) -> None:
    answer = client.get("/v1/jobs/no-such-job", headers={"X-Request-ID": sent})

    assert answer.status_code == 404
    if kept:
        assert answer.headers["x-request-id"] == sent
    else:
        assert GENERATED_ID.fullmatch(answer.headers["x-request-id"])


def test_fault_injection_is_off_by_default_and_refused_in_production(client: httpx.Client) -> None:
    assert client.get("/_faults/raise").status_code == 404
    with pytest.raises(ValidationError, match="FAULT"):
        Settings(environment="production", fault_injection="on")


def test_a_405_names_every_method_of_the_path(client: httpx.Client) -> None:
    """Starlette named only the methods of the first route that matched the path (GET of
    /v1/jobs/{id}, not DELETE), and the problem handler dropped its Allow header."""
    answer = client.request("OPTIONS", "/v1/jobs/some-id")

    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["allow"] == "DELETE, GET"
    assert client.request("TRACE", "/healthz").headers["allow"] == "GET"
