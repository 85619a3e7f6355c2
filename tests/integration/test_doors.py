"""Try every door: each route with no key, a wrong key, a revoked key and another tenant's key; stream
tokens used for another job or after they expired; a key in a query string; and no key or token in
the gateway's log. The gateway holds hashed entries only (shared/api_keys.py), read from a file."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.processes import child_pids, wait_until
from shared.api_keys import KeyEntry, new_key
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import stream_events, submit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def keys_file(path: Path, *entries: KeyEntry) -> None:
    path.write_text("# asyncinfer API keys: key-id:sha256:<hex>:tenant\n" + "".join(f"{e.line()}\n" for e in entries))


def post_batch(client: httpx.Client) -> dict[str, Any]:
    files = [("files", ("a.jpg", images.jpeg(seed=71), "image/jpeg"))]
    response = client.post("/v1/batches", files=files)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def routes(job_id: str, batch_id: str, session_id: str) -> list[tuple[str, str]]:
    """Every /v1 route of a tenant's own things, as (method, path)."""
    return [
        ("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{job_id}"), ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events"), ("POST", f"/v1/jobs/{job_id}/stream-token"),
        ("POST", "/v1/batches"), ("GET", f"/v1/batches/{batch_id}"), ("GET", f"/v1/batches/{batch_id}/events"),
        ("POST", f"/v1/batches/{batch_id}/stream-token"), ("GET", "/v1/models"), ("GET", "/v1/models/mobilenet_v2"),
        ("POST", "/v1/sessions"), ("GET", f"/v1/sessions/{session_id}"), ("GET", f"/v1/sessions/{session_id}/events"),
        ("POST", f"/v1/sessions/{session_id}/stream-token"),
    ]


def send(url: str, method: str, path: str, headers: dict[str, str] | None = None,
         params: dict[str, str] | None = None) -> int:
    """The status of one request (an event stream's too, without reading it)."""
    upload: dict[str, Any] = {}
    if method == "POST" and path == "/v1/jobs":
        upload = {"content": images.jpeg(seed=72), "headers": {"Content-Type": "image/jpeg", **(headers or {})}}
    elif method == "POST" and path == "/v1/batches":
        upload = {"files": [("files", ("b.jpg", images.jpeg(seed=72), "image/jpeg"))]}
    with (
        httpx.Client(base_url=url, timeout=30) as client,
        client.stream(method, path, params=params, **{"headers": headers or {}, **upload}) as response,
    ):
        return response.status_code


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[str, KeyEntry]]:
    return {name: new_key(tenant, name) for name, tenant in
            (("alice-1", "alice"), ("alice-2", "alice"), ("bob-1", "bob"))}


def test_no_key_a_wrong_key_and_another_tenants_key_on_every_route(
        make_pipeline: PipelineFactory, tmp_path: Path, keys: dict[str, tuple[str, KeyEntry]]) -> None:
    file = tmp_path / "api-keys"
    keys_file(file, *(entry for _, entry in keys.values()))
    gateway = make_pipeline(workers=0, ASYNCINFER_API_KEYS_FILE=str(file), ASYNCINFER_LOG_FORMAT="json")
    alice, alice_2, bob = (keys[name][0] for name in ("alice-1", "alice-2", "bob-1"))
    with httpx.Client(base_url=gateway.url, headers={"X-API-Key": alice}, timeout=30) as client:
        session = client.post("/v1/sessions").json()
        job = submit(client, images.jpeg(seed=70), session_id=session["id"])
        batch = post_batch(client)
    everything = routes(job["id"], batch["id"], session["id"])
    hash_of_alice = keys["alice-1"][1].line().split(":")[2]
    for method, path in everything:
        assert send(gateway.url, method, path) == 401, (method, path)
        assert send(gateway.url, method, path, {"X-API-Key": "aik_alice-1_wrong"}) == 401, (method, path)
        assert send(gateway.url, method, path, {"X-API-Key": hash_of_alice}) == 401, (method, path)  # the hash is no key
        assert send(gateway.url, method, path, {"Authorization": "Bearer aik_bob-1_" + alice.split("_", 2)[2]}) == 401
    for method, path in everything:
        mine = method == "GET" and (path.startswith(("/v1/models", "/v1/jobs", "/v1/sessions"))
                                    and "events" not in path)
        expected_of_bob = 200 if path.startswith("/v1/models") or path == "/v1/jobs" else 404
        if path in ("/v1/jobs", "/v1/batches") and method == "POST":
            expected_of_bob = 202  # bob's own new job or batch
        if path == "/v1/sessions":
            expected_of_bob = 201  # bob's own new session
        assert send(gateway.url, method, path, {"X-API-Key": bob}) == expected_of_bob, (method, path)
        if mine:
            assert send(gateway.url, method, path, {"X-API-Key": alice_2}) == 200, (method, path)  # her second key
    with httpx.Client(base_url=gateway.url, headers={"X-API-Key": bob}, timeout=30) as client:
        assert job["id"] not in {listed["id"] for listed in client.get("/v1/jobs").json()["jobs"]}
        joined = client.post("/v1/jobs", content=images.jpeg(seed=79), headers={"Content-Type": "image/jpeg"},
                             params={"session_id": session["id"]})
        assert joined.status_code == 404, joined.text  # alice's session is not bob's to join

    # Another tenant's stream token: bob's for his own job does not open alice's, nor does a token of hers
    # open anything of his; a token is a token for event streams only.
    with httpx.Client(base_url=gateway.url, headers={"X-API-Key": bob}, timeout=30) as client:
        bobs_job = submit(client, images.jpeg(seed=73))
        bobs_token = client.post(f"/v1/jobs/{bobs_job['id']}/stream-token").json()["token"]
    assert send(gateway.url, "GET", f"/v1/jobs/{job['id']}/events", params={"token": bobs_token}) == 404
    assert send(gateway.url, "GET", f"/v1/jobs/{bobs_job['id']}/events", params={"token": bobs_token}) == 200
    assert send(gateway.url, "GET", f"/v1/jobs/{bobs_job['id']}", params={"token": bobs_token}) == 401

    # Nothing of a key or a token in any log line (the access lines name the path, never the query).
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        assert send(gateway.url, "GET", f"/v1/jobs/{job['id']}", {"X-API-Key": alice},
                    params={"api_key": alice}) == 401
        wait_until(lambda: f'"path": "/v1/jobs/{job["id"]}"' in gateway.logs("gateway"), 10, "the access lines")
        log = gateway.logs("gateway")
    for secret in (alice, alice_2, bob, bobs_token, alice.split("_", 2)[2]):
        assert secret not in log


def test_stream_tokens_open_their_own_job_or_batch_and_only_until_they_expire(
        make_pipeline: PipelineFactory, tmp_path: Path, keys: dict[str, tuple[str, KeyEntry]]) -> None:
    file = tmp_path / "api-keys"
    keys_file(file, keys["alice-1"][1])
    gateway = make_pipeline(workers=0, ASYNCINFER_API_KEYS_FILE=str(file), ASYNCINFER_STREAM_TOKEN_TTL_S="2")
    with httpx.Client(base_url=gateway.url, headers={"X-API-Key": keys["alice-1"][0]}, timeout=30) as client:
        job, other = submit(client, images.jpeg(seed=74)), submit(client, images.jpeg(seed=75))
        batch = post_batch(client)
        issued = client.post(f"/v1/jobs/{job['id']}/stream-token")
        assert issued.status_code == 200 and issued.headers["Cache-Control"] == "no-store"
        token = issued.json()["token"]
        assert issued.json()["expires_at"] - time.time() <= 2.5
        batch_token = client.post(f"/v1/batches/{batch['id']}/stream-token").json()["token"]
        assert client.post("/v1/jobs/nope/stream-token").status_code == 404
    with httpx.Client(base_url=gateway.url, timeout=30) as anonymous:
        first = stream_events(anonymous, f"/v1/jobs/{job['id']}/events?token={token}", limit=1)
        assert first[0][2]["status"] == "queued"
        progress = stream_events(anonymous, f"/v1/batches/{batch['id']}/events?token={batch_token}", limit=1)
        assert progress
        assert anonymous.get(f"/v1/jobs/{other['id']}/events", params={"token": token}).status_code == 404
        assert anonymous.get(f"/v1/batches/{batch['id']}/events", params={"token": token}).status_code == 404
        assert anonymous.get(f"/v1/jobs/{job['id']}/events", params={"token": batch_token}).status_code == 404
        assert anonymous.get(f"/v1/jobs/{job['id']}/events", params={"token": token + "x"}).status_code == 401
        time.sleep(2.5)
        expired = anonymous.get(f"/v1/jobs/{job['id']}/events", params={"token": token})
        assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_a_key_in_a_query_string_is_refused_even_with_a_valid_header(
        make_pipeline: PipelineFactory, tmp_path: Path, keys: dict[str, tuple[str, KeyEntry]]) -> None:
    key, entry = keys["alice-1"]
    file = tmp_path / "api-keys"
    keys_file(file, entry)
    gateway = make_pipeline(workers=0, ASYNCINFER_API_KEYS_FILE=str(file))
    with httpx.Client(base_url=gateway.url, headers={"X-API-Key": key}, timeout=30) as client:
        job = submit(client, images.jpeg(seed=76))
        for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/events", "/v1/models"):
            refused = client.get(path, params={"api_key": key})
            assert refused.status_code == 401 and "X-API-Key header" in refused.json()["detail"], path
        with httpx.Client(base_url=gateway.url, timeout=30) as anonymous:
            assert anonymous.get(f"/v1/jobs/{job['id']}/events", params={"api_key": key}).status_code == 401


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-processes"])
def test_a_key_removed_from_the_file_is_refused_without_a_restart(
        make_pipeline: PipelineFactory, tmp_path: Path, keys: dict[str, tuple[str, KeyEntry]], processes: int) -> None:
    (old, old_entry), (new, new_entry) = keys["alice-1"], keys["alice-2"]
    file = tmp_path / "api-keys"
    keys_file(file, old_entry, new_entry)
    gateway = make_pipeline(workers=0, ASYNCINFER_API_KEYS_FILE=str(file), ASYNCINFER_GATEWAY_PROCESSES=str(processes))
    assert gateway.gateway is not None
    pid, children = gateway.gateway.pid, child_pids(gateway.gateway.pid)
    with httpx.Client(base_url=gateway.url, headers={"X-API-Key": old}, timeout=30) as client:
        job = submit(client, images.jpeg(seed=77))
    assert send(gateway.url, "GET", f"/v1/jobs/{job['id']}", {"X-API-Key": new}) == 200

    keys_file(file, new_entry)  # the old key revoked: seen within a second, by the file's change
    changed_at = time.monotonic()
    wait_until(lambda: send(gateway.url, "GET", "/v1/models", {"X-API-Key": old}) == 401, 10, "the old key refused")
    # Each process looks at the file at most once a second: a second after the change, all have seen it.
    time.sleep(max(0.0, changed_at + 1.1 - time.monotonic()))
    for method, path in routes(job["id"], "any-batch", "any-session"):
        assert send(gateway.url, method, path, {"X-API-Key": old}) == 401, (method, path)
    assert send(gateway.url, "GET", f"/v1/jobs/{job['id']}", {"X-API-Key": new}) == 200

    # SIGHUP reads the file at once, even when its time and size look unchanged.
    stamp = file.stat()
    swapped = new_key("alice", "alice-3")
    keys_file(file, swapped[1])
    assert file.stat().st_size == stamp.st_size
    os.utime(file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    time.sleep(1.5)
    assert send(gateway.url, "GET", "/v1/models", {"X-API-Key": new}) == 200  # unchanged in appearance: not reread
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: send(gateway.url, "GET", "/v1/models", {"X-API-Key": new}) == 401, 10, "the reload")
    for _ in range(6):  # a connection each: every process has read the file again
        assert send(gateway.url, "GET", "/v1/models", {"X-API-Key": new}) == 401
        assert send(gateway.url, "GET", f"/v1/jobs/{job['id']}", {"X-API-Key": swapped[0]}) == 200
    # Nothing restarted: the same gateway process, and with two, the same two serving.
    assert gateway.gateway.pid == pid and gateway.gateway.poll() is None and child_pids(pid) == children


def test_no_token_or_key_reaches_a_trace(make_pipeline: PipelineFactory, tmp_path: Path,
                                         keys: dict[str, tuple[str, KeyEntry]]) -> None:
    """The server span's URL attributes carry the query string: the gateway redacts credentials there."""
    from tests.support.otlp_receiver import otlp_receiver

    key, entry = keys["alice-1"]
    file = tmp_path / "api-keys"
    keys_file(file, entry)
    with otlp_receiver() as receiver:
        gateway = make_pipeline(workers=0, ASYNCINFER_API_KEYS_FILE=str(file),
                                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="200")
        with httpx.Client(base_url=gateway.url, headers={"X-API-Key": key}, timeout=30) as client:
            job = submit(client, images.jpeg(seed=78))
            token = client.post(f"/v1/jobs/{job['id']}/stream-token").json()["token"]
        assert send(gateway.url, "GET", "/v1/jobs/other/events", params={"token": token}) == 404
        assert send(gateway.url, "GET", "/v1/models", params={"api_key": key}) == 401
        spans = receiver.wait_for(lambda spans: {"GET /v1/jobs/{job_id}/events", "GET /v1/models"}
                                  <= {span.name for span in spans if span.kind == "server"})
    served = [span for span in spans if span.kind == "server" and "/v1/" in span.name and "GET" in span.name]
    assert any("REDACTED" in str(span.attributes) for span in served)
    for span in spans:
        assert token not in str(span.attributes) and key not in str(span.attributes), span.name
