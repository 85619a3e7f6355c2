"""One image or many, from upload to result, through the real gateway, Redis, Celery and Keras."""

from __future__ import annotations

import httpx
import pytest

from tests.support import images
from tests.support.http import post_job, stream_events, submit, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_single_job_streams_every_status_to_the_result(client: httpx.Client) -> None:
    job = submit(client, images.jpeg(seed=21), top_k=3)
    assert job["status"] == "queued"

    events = stream_events(client, f"/v1/jobs/{job['id']}/events")

    statuses = [data["status"] for _, _, data in events]
    assert statuses[-1] == "succeeded"
    assert all(name == "status" for name, _, _ in events)
    ids = [int(event_id) for _, event_id, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    final = events[-1][2]
    assert final["id"] == job["id"]
    assert len(final["result"]["predictions"]) == 3
    sha256 = final["model"].pop("weights_sha256")
    assert final["model"] == {"name": "mobilenet_v2", "version": "1", "weights": "random", "backend": "tensorflow",
                              "device": "cpu"}
    assert len(sha256) == 64 and int(sha256, 16) >= 0
    assert [h["status"] for h in final["history"]] == ["queued", "running", "succeeded"]


def test_long_polling_returns_the_finished_job(client: httpx.Client) -> None:
    job = submit(client, images.png_with_alpha(), "image/png")

    doc = client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}, timeout=40).json()

    assert doc["status"] == "succeeded"
    assert doc["finished_at"] and doc["attempts"] == 1
    assert doc["input"]["content_type"] == "image/png"
    predictions = doc["result"]["predictions"]
    assert len(predictions) == 5
    assert [p["score"] for p in predictions] == sorted((p["score"] for p in predictions), reverse=True)


def test_a_subscriber_after_the_end_still_gets_the_terminal_event(client: httpx.Client) -> None:
    job = submit(client, images.jpeg(seed=22))
    wait_terminal(client, job["id"])

    events = stream_events(client, f"/v1/jobs/{job['id']}/events")

    assert len(events) == 1
    assert events[0][2]["status"] == "succeeded" and events[0][1] == "3"


def test_last_event_id_resumes_without_gaps_or_repeats(client: httpx.Client) -> None:
    job = submit(client, images.jpeg(seed=23))
    wait_terminal(client, job["id"])

    resumed = stream_events(client, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "1"})

    assert [(event_id, data["status"]) for _, event_id, data in resumed] == [("2", "running"), ("3", "succeeded")]
    assert resumed[-1][2]["result"] is not None  # the newest event carries the whole document
    nothing = stream_events(client, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "3"})
    assert nothing == []


def test_resuming_a_live_stream_mid_way(client: httpx.Client) -> None:
    job = submit(client, images.jpeg(seed=24))
    first = stream_events(client, f"/v1/jobs/{job['id']}/events", limit=1)
    last_id = first[0][1]

    rest = stream_events(client, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": last_id})

    seqs = [int(last_id)] + [int(event_id) for _, event_id, _ in rest]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert rest[-1][2]["status"] == "succeeded" if rest else first[0][2]["status"] == "succeeded"


def test_a_batch_of_twenty_images(client: httpx.Client) -> None:
    files = [("files", (f"img{i}.jpg", images.jpeg(200 + 10 * i, 150 + 5 * i, seed=100 + i), "image/jpeg")) for i in range(20)]

    response = client.post("/v1/batches", files=files, params={"top_k": 2})

    assert response.status_code == 202, response.text
    batch = response.json()
    assert response.headers["location"] == f"/v1/batches/{batch['id']}"
    assert len(batch["jobs"]) == 20
    events = stream_events(client, f"/v1/batches/{batch['id']}/events")
    progress = [data for name, _, data in events if name == "progress"]
    assert progress[-1]["done"] is True
    assert progress[-1]["counts"]["succeeded"] == 20
    finished = {data["id"] for name, _, data in events if name == "status" and data["status"] == "succeeded"}
    assert finished == {job["id"] for job in batch["jobs"]}
    summary = client.get(f"/v1/batches/{batch['id']}").json()
    assert summary["status"] == "done" and summary["counts"]["succeeded"] == 20
    docs = [client.get(f"/v1/jobs/{job['id']}").json() for job in batch["jobs"]]
    assert all(doc["batch_id"] == batch["id"] for doc in docs)
    assert max(doc["result"]["batch_size"] for doc in docs) > 1, "dynamic batching never batched"


def test_idempotent_resubmission_returns_the_same_job(client: httpx.Client) -> None:
    data = images.jpeg(seed=25)
    headers = {"Idempotency-Key": "same-key-1"}

    first = post_job(client, data, headers=headers)
    second = post_job(client, data, headers=headers)
    other_body = post_job(client, images.jpeg(seed=26), headers=headers)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert other_body.status_code == 409
    assert other_body.headers["content-type"] == "application/problem+json"


def test_openapi_describes_every_route(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ["/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/batches",
                 "/v1/batches/{batch_id}", "/v1/batches/{batch_id}/events", "/healthz", "/readyz", "/metrics"]:
        assert path in paths
    assert "delete" in paths["/v1/jobs/{job_id}"]
    assert client.get("/docs").status_code == 200


def test_ready_and_metrics(client: httpx.Client) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "store": "ok"}
    metrics = client.get("/metrics").text
    assert "asyncinfer_jobs_submitted_total" in metrics and "asyncinfer_queue_backlog" in metrics
