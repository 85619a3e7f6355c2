"""What the real gateway sends conforms to the OpenAPI document it publishes: jobs, batches, the
events' data and problems, each validated against the schema /openapi.json names for it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.support import images
from tests.support.http import post_job, stream_events, submit, wait_terminal

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def openapi(pipeline: Any) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{pipeline.url}/openapi.json", timeout=30).json()
    return document


def validate(openapi: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate against a schema of the document; its $refs resolve within the document."""
    Draft202012Validator({**schema, "components": openapi["components"]}).validate(instance)


def response_schema(openapi: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The schema the document gives for one answer of one operation."""
    response = openapi["paths"][path][method]["responses"][str(status)]
    content = response["content"]
    media_type = "application/problem+json" if status >= 400 else "application/json"
    assert media_type in content, f"{method.upper()} {path} {status} is documented as {list(content)}"
    return content[media_type]["schema"]  # type: ignore[no-any-return]


def event_data_schema(openapi: dict[str, Any], path: str, event: str) -> dict[str, Any]:
    return openapi["paths"][path]["get"]["responses"]["200"]["x-event-data"][event]  # type: ignore[no-any-return]


def check_answer(openapi: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    expected_type = "application/problem+json" if response.status_code >= 400 else "application/json"
    assert response.headers["content-type"] == expected_type, response.text
    validate(openapi, response_schema(openapi, path, method, response.status_code), response.json())


def test_a_job_its_events_and_its_replayed_events_conform(client: httpx.Client, openapi: dict[str, Any]) -> None:
    accepted = post_job(client, images.jpeg(seed=901), params={"top_k": 3})
    check_answer(openapi, "/v1/jobs", "post", accepted)
    job_id = accepted.json()["id"]

    events = stream_events(client, f"/v1/jobs/{job_id}/events", positions=True)
    replayed = stream_events(client, f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "1"})
    finished = client.get(f"/v1/jobs/{job_id}", params={"wait": 30})

    check_answer(openapi, "/v1/jobs/{job_id}", "get", finished)
    assert finished.json()["status"] == "succeeded"
    assert len(replayed) >= 2, replayed  # the steps after seq 1: changes, then the whole document
    assert {name for name, _, _ in replayed} == {"status"}
    assert {name for name, _, _ in events} <= {"status", "position"}
    for name, _, data in [*events, *replayed]:
        validate(openapi, event_data_schema(openapi, "/v1/jobs/{job_id}/events", name), data)


def test_a_batch_and_its_events_conform(client: httpx.Client, openapi: dict[str, Any]) -> None:
    files = [("files", (f"{i}.png", images.encode(images.picture(seed=910 + i), "PNG"), "image/png"))
             for i in range(3)]
    accepted = client.post("/v1/batches", files=files)
    check_answer(openapi, "/v1/batches", "post", accepted)
    batch_id = accepted.json()["id"]

    events = stream_events(client, f"/v1/batches/{batch_id}/events")
    read = client.get(f"/v1/batches/{batch_id}")

    check_answer(openapi, "/v1/batches/{batch_id}", "get", read)
    assert read.json()["status"] == "done"
    names = {name for name, _, _ in events}
    assert names == {"status", "progress"}
    for name, _, data in events:
        validate(openapi, event_data_schema(openapi, "/v1/batches/{batch_id}/events", name), data)


def test_a_session_and_its_events_conform(client: httpx.Client, openapi: dict[str, Any]) -> None:
    created = client.post("/v1/sessions", json={"ttl_s": 600})
    check_answer(openapi, "/v1/sessions", "post", created)
    session_id = created.json()["id"]
    job = submit(client, images.jpeg(seed=930), session_id=session_id)
    wait_terminal(client, job["id"])

    read = client.get(f"/v1/sessions/{session_id}")
    events = stream_events(client, f"/v1/sessions/{session_id}/events", limit=4)  # three changes, the counts

    check_answer(openapi, "/v1/sessions/{session_id}", "get", read)
    assert read.json()["history"][0]["status"] == "succeeded"
    assert [name for name, _, _ in events] == ["status", "status", "status", "session"]
    for name, _, data in events:
        validate(openapi, event_data_schema(openapi, "/v1/sessions/{session_id}/events", name), data)


def test_problems_conform(client: httpx.Client, openapi: dict[str, Any]) -> None:
    job = submit(client, images.jpeg(seed=920))
    wait_terminal(client, job["id"])
    answers = [
        ("/v1/jobs/{job_id}", "get", client.get("/v1/jobs/no-such-job")),  # 404
        ("/v1/jobs/{job_id}", "get", client.get(f"/v1/jobs/{job['id']}", params={"wait": 99})),  # 400
        ("/v1/jobs", "post", post_job(client, b"plain text", "image/png")),  # 415
        ("/v1/jobs", "post", post_job(client, images.jpeg(seed=921)[:200])),  # 422
        ("/v1/jobs/{job_id}", "delete", client.delete(f"/v1/jobs/{job['id']}")),  # 409
        ("/v1/batches/{batch_id}", "get", client.get("/v1/batches/no-such-batch")),  # 404
        ("/v1/sessions/{session_id}", "get", client.get("/v1/sessions/no-such-session")),  # 404
        ("/v1/sessions", "post", client.post("/v1/sessions", json={"ttl_s": -1})),  # 400
    ]
    assert [response.status_code for _, _, response in answers] == [404, 400, 415, 422, 409, 404, 404, 400]
    for path, method, response in answers:
        check_answer(openapi, path, method, response)
