"""Signed webhooks on real processes: a real receiver on 127.0.0.1 (allow-listed, over http, which
only development settings permit), real gateways and a real worker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from api.delivery.queue import DEAD_KEY, PENDING_KEY
from api.services import Services
from cli.pipeline import LocalPipeline
from cli.processes import asyncinfer_command, free_port, wait_until
from shared.constants import DEFAULT_TENANT
from shared.jobs import JobStatus, new_job
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, scrape_metrics, stream_events, submit
from tests.support.models import blank_pixels
from tests.support.pipeline import fresh_redis_database, pipeline_env, settings_of
from tests.support.webhook_receiver import Received, webhook_receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ATTEMPTS = "asyncinfer_webhook_attempts_total"
DEAD_LETTERS = "asyncinfer_webhook_dead_letters"
RAW_SECRET = b"the tests' thirty-two byte key!!"
SECRET = "whsec_" + base64.b64encode(RAW_SECRET).decode()
WEBHOOKS = {
    "ASYNCINFER_WEBHOOK_SECRET": SECRET,
    "ASYNCINFER_WEBHOOK_ALLOW_HTTP": "true",
    "ASYNCINFER_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "ASYNCINFER_WEBHOOK_MAX_ATTEMPTS": "3",
    "ASYNCINFER_WEBHOOK_BACKOFF_BASE_S": "0.2",
    "ASYNCINFER_WEBHOOK_BACKOFF_MAX_S": "0.5",
    "ASYNCINFER_WEBHOOK_ATTEMPT_TIMEOUT_S": "1",
    "ASYNCINFER_WEBHOOK_LEASE_S": "3",
    "ASYNCINFER_WEBHOOK_POLL_INTERVAL_S": "0.1",
    "ASYNCINFER_WEBHOOK_BATCH_CHECK_S": "0.3",
}


def verified(request: Received, tolerance_s: float = 300) -> dict[str, Any]:
    """The body of a request whose Standard Webhooks signature checks out (the receiver's few lines)."""
    message_id, timestamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) < tolerance_s
    signed = f"{message_id}.{timestamp}.".encode() + request.body
    expected = base64.b64encode(hmac.new(RAW_SECRET, signed, hashlib.sha256).digest()).decode()
    sent = [part.removeprefix("v1,") for part in request.headers["webhook-signature"].split()]
    assert any(hmac.compare_digest(expected, candidate) for candidate in sent)
    return json.loads(request.body)  # type: ignore[no-any-return]


def delivered(client: httpx.Client, job_id: str, state: str = "delivered", timeout_s: float = 30) -> dict[str, Any]:
    """The job once its delivery record reached `state`."""
    found: dict[str, Any] = {}

    def reached() -> bool:
        found.update(client.get(f"/v1/jobs/{job_id}").json())
        return (found.get("delivery") or {}).get("state") == state

    wait_until(reached, timeout_s, f"job {job_id}'s delivery to be {state}", 0.1)
    return found


def asyncinfer(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(asyncinfer_command(*args), env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def pipeline(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    """A gateway and a worker with webhooks on, for the tests that do not kill anything."""
    url = fresh_redis_database(redis_url)
    workdir = tmp_path_factory.mktemp("webhooks")
    started = LocalPipeline(env=pipeline_env(url, workdir, **WEBHOOKS), workdir=workdir, port=free_port())
    started.start(workers=1, gateway=True)
    yield started
    started.stop()


@pytest.fixture
def client(pipeline: LocalPipeline) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        yield client


def test_a_finished_job_is_delivered_once_with_a_valid_signature(client: httpx.Client) -> None:
    with webhook_receiver() as receiver:
        job = submit(client, images.jpeg(seed=1), callback_url=receiver.url)
        assert job["callback_url"] == receiver.url
        doc = delivered(client, job["id"])
        time.sleep(1.0)  # time for a second delivery, if there were one
        requests = receiver.wait_for(1)

    assert len(requests) == 1
    body = verified(requests[0])
    assert (body["id"], body["status"], body["callback_url"]) == (job["id"], "succeeded", receiver.url)
    assert body["result"] == doc["result"] and "delivery" not in body
    assert requests[0].headers["webhook-id"] == f"msg_{job['id']}"
    assert (doc["status"], doc["delivery"]["attempts"], doc["delivery"]["last_status"]) == ("succeeded", 1, 204)


def test_a_receiver_that_fails_twice_gets_three_attempts_shown_in_the_record_and_the_events(
        client: httpx.Client) -> None:
    before = scrape_metrics(f"{client.base_url}/metrics")
    with webhook_receiver(script=[500, 503]) as receiver:
        job = submit(client, images.jpeg(seed=2), callback_url=receiver.url)
        events = stream_events(client, f"/v1/jobs/{job['id']}/events")
        doc = delivered(client, job["id"])
        requests = receiver.wait_for(3)
    after = scrape_metrics(f"{client.base_url}/metrics")

    assert len(requests) == 3
    assert {request.headers["webhook-id"] for request in requests} == {f"msg_{job['id']}"}
    assert all(verified(request)["id"] == job["id"] for request in requests)
    record = doc["delivery"]
    assert (record["state"], record["attempts"], record["last_status"]) == ("delivered", 3, 204)
    assert [entry["status"] for entry in record["history"]] == [500, 503, 204]
    assert doc["status"] == "succeeded"
    statuses = [data["status"] for name, _, data in events if name == "status"]
    deliveries = [data for name, _, data in events if name == "delivery"]
    assert statuses[-1] == "succeeded"
    assert deliveries[-1]["state"] == "delivered" and deliveries[-1]["attempts"] == 3
    assert [entry["attempts"] for entry in deliveries] == sorted({entry["attempts"] for entry in deliveries})
    counted = {result: after[ATTEMPTS, (("result", result),)] - before[ATTEMPTS, (("result", result),)]
               for result in ("delivered", "rejected", "unanswered")}
    assert counted == {"delivered": 1, "rejected": 2, "unanswered": 0}


def test_a_receiver_that_always_fails_ends_in_the_dead_letters_and_replay_delivers_it(
        client: httpx.Client, pipeline: LocalPipeline) -> None:
    with webhook_receiver(then=500) as receiver:
        job = submit(client, images.jpeg(seed=3), callback_url=receiver.url)
        doc = delivered(client, job["id"], state="dead")
        assert len(receiver.wait_for(3)) == 3
        assert wait_until(lambda: scrape_metrics(f"{client.base_url}/metrics")[DEAD_LETTERS, ()] == 1, 10,
                          "the dead-letter gauge to show the delivery given up")

        listed = asyncinfer(pipeline.env, "webhooks", "dead-letters")
        assert listed.returncode == 0, listed.stderr
        entries = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(e["target"], e["attempts"], e["last_status"]) for e in entries] == [(job["id"], 3, 500)]
        assert doc["status"] == "succeeded" and doc["delivery"]["last_error"] == "answered 500"

        receiver.then = 200  # the receiver is fixed
        replayed = asyncinfer(pipeline.env, "webhooks", "replay", job["id"])
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.split() == [job["id"]]
        doc = delivered(client, job["id"])
        requests = receiver.wait_for(4)

    assert len(requests) == 4 and verified(requests[-1])["id"] == job["id"]
    assert (doc["delivery"]["attempts"], doc["delivery"]["replays"], doc["delivery"]["last_status"]) == (1, 1, 200)
    assert asyncinfer(pipeline.env, "webhooks", "dead-letters").stdout == ""
    assert asyncinfer(pipeline.env, "webhooks", "replay", job["id"]).returncode == 1  # no longer dead


def test_a_receiver_that_never_answers_is_given_up_after_its_attempt_timeouts(client: httpx.Client,
                                                                               pipeline: LocalPipeline) -> None:
    with webhook_receiver(then=("hang", 5)) as receiver:
        job = submit(client, images.jpeg(seed=4), callback_url=receiver.url)
        doc = delivered(client, job["id"], state="dead", timeout_s=30)

    assert doc["delivery"]["attempts"] == 3
    assert doc["delivery"]["last_status"] is None
    assert doc["delivery"]["last_error"] == "no answer within 1 s"
    assert all(entry["duration_ms"] < 2000 for entry in doc["delivery"]["history"])
    listed = asyncinfer(pipeline.env, "webhooks", "dead-letters")
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(e["attempts"], e["last_status"]) for e in entries if e["target"] == job["id"]] == [(3, None)]


@pytest.mark.parametrize(("url", "refusal"), [
    ("http://127.0.0.2:9/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::1]:9/hook", "loopback"),
    ("ftp://127.0.0.1/hook", "must be an https or http URL"),
])
def test_a_callback_to_a_private_address_is_refused_at_submit_and_nothing_is_stored(
        client: httpx.Client, url: str, refusal: str) -> None:
    before = client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]

    response = post_job(client, images.jpeg(seed=5), callback_url=url)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["title"] == "Callback URL refused" and refusal in problem["detail"]
    assert client.get("/v1/jobs", params={"limit": 100}).json()["jobs"] == before


def test_the_allow_listed_receiver_address_is_accepted_and_the_python_client_sends_callback_url(
        pipeline: LocalPipeline) -> None:
    from asyncinfer_client import CallbackRefused, Client

    with webhook_receiver() as receiver, Client(pipeline.url) as python_client:
        job = python_client.submit(images.jpeg(seed=6), filename="a.jpg", callback_url=receiver.url)
        assert verified(receiver.wait_for(1)[0])["id"] == job.id
        with pytest.raises(CallbackRefused, match="loopback"):
            python_client.submit(images.jpeg(seed=6), filename="a.jpg", callback_url="http://127.0.0.9/hook")


def test_a_delivery_pending_when_its_gateway_is_sigkilled_is_delivered_by_the_restarted_gateway(
        make_pipeline: PipelineFactory) -> None:
    """The first attempt hangs at the receiver; the gateway that holds it is SIGKILLed; once its
    claim's lease ends, the restarted gateway delivers it (the same webhook-id: at least once)."""
    pipeline = make_pipeline(workers=0, **{**WEBHOOKS, "ASYNCINFER_WEBHOOK_ATTEMPT_TIMEOUT_S": "10",
                                           "ASYNCINFER_WEBHOOK_LEASE_S": "12"})
    with webhook_receiver(script=[("hang", 30)]) as receiver, \
            httpx.Client(base_url=pipeline.url, timeout=30) as client:
        job = submit(client, images.jpeg(seed=7), callback_url=receiver.url)
        client.delete(f"/v1/jobs/{job['id']}").raise_for_status()  # the job ends: cancelled
        receiver.wait_for(1)
        assert pipeline.gateway is not None
        pipeline.gateway.kill()
        pipeline.gateway.wait(10)
        pipeline.start_gateway()
        doc = delivered(client, job["id"], timeout_s=60)
        requests = receiver.wait_for(2)

    assert {request.headers["webhook-id"] for request in requests} == {f"msg_{job['id']}"}
    assert verified(requests[-1])["status"] == "cancelled"
    assert (doc["status"], doc["delivery"]["state"], doc["delivery"]["attempts"]) == ("cancelled", "delivered", 1)
    assert redis.Redis.from_url(pipeline.env["ASYNCINFER_REDIS_URL"]).zcard(PENDING_KEY) == 0


def test_a_job_whose_end_no_gateway_heard_is_delivered_by_the_recovery_pass(
        make_pipeline: PipelineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job ends in the store with no event published (as when every gateway was down): the
    gateway holding the recoverer's lease finds it terminal, with a callback_url and no delivery record."""
    with webhook_receiver() as receiver:
        pipeline = make_pipeline(workers=0, ASYNCINFER_RECOVERY_INTERVAL_S="0.5", **WEBHOOKS)
        services = Services.create(settings_of(pipeline.env, monkeypatch))
        doc = new_job(model={"name": "mobilenet_v2", "version": "1"}, tenant=DEFAULT_TENANT,
                      input_info={"bytes": 1}, top_k=1, callback_url=receiver.url)
        services.store.create_job(doc, blank_pixels())
        services.store.transition(doc["id"], JobStatus.RUNNING)  # store writes: no events
        services.store.transition(doc["id"], JobStatus.SUCCEEDED, result={"predictions": []})
        with httpx.Client(base_url=pipeline.url, timeout=30) as client:
            found = delivered(client, doc["id"], timeout_s=30)
        time.sleep(1.5)  # more recovery passes: none delivers it again
        requests = receiver.wait_for(1)
        services.close()

    assert len(requests) == 1 and verified(requests[0])["id"] == doc["id"]
    assert found["delivery"]["attempts"] == 1
    assert "ended unheard: its webhook is scheduled now" in pipeline.logs("gateway")
    assert redis.Redis.from_url(pipeline.env["ASYNCINFER_REDIS_URL"]).hlen(DEAD_KEY) == 0


def test_a_batch_whose_webhook_schedule_redis_lost_is_delivered_by_the_recovery_pass(
        make_pipeline: PipelineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's members end in the store and nothing in Redis schedules its webhook (as when
    Redis lost its last second of writes): the recovery pass, finding the members finished, does."""
    with webhook_receiver() as receiver:
        pipeline = make_pipeline(workers=0, ASYNCINFER_RECOVERY_INTERVAL_S="0.5", **WEBHOOKS)
        services = Services.create(settings_of(pipeline.env, monkeypatch))
        docs = [new_job(model={"name": "mobilenet_v2", "version": "1"}, tenant=DEFAULT_TENANT,
                        input_info={"bytes": 1}, top_k=1, batch_id="b-unscheduled") for _ in range(2)]
        for doc in docs:
            services.store.create_job(doc, blank_pixels())
        services.store.create_batch({"id": "b-unscheduled", "type": "batch", "tenant": DEFAULT_TENANT,
                                     "created_at": docs[0]["created_at"], "model": docs[0]["model"],
                                     "job_ids": [doc["id"] for doc in docs], "callback_url": receiver.url})
        for doc in docs:
            services.store.transition(doc["id"], JobStatus.RUNNING)  # store writes: no events
            services.store.transition(doc["id"], JobStatus.SUCCEEDED, result={"predictions": []})
        with httpx.Client(base_url=pipeline.url, timeout=30) as client:
            found = batch_delivered(client, "b-unscheduled", timeout_s=30)
        requests = receiver.wait_for(1)
        services.close()

    assert len(requests) == 1 and verified(requests[0])["id"] == "b-unscheduled"
    assert found["delivery"]["attempts"] == 1
    assert "batch b-unscheduled: its webhook was not scheduled; it is now" in pipeline.logs("gateway")


def submit_batch(client: httpx.Client, seeds: range, **params: Any) -> dict[str, Any]:
    response = client.post("/v1/batches", params=params,
                           files=[("files", (f"{seed}.jpg", images.jpeg(seed=seed), "image/jpeg")) for seed in seeds])
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def batch_delivered(client: httpx.Client, batch_id: str, timeout_s: float = 60) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reached() -> bool:
        found.update(client.get(f"/v1/batches/{batch_id}").json())
        return (found.get("delivery") or {}).get("state") == "delivered"

    wait_until(reached, timeout_s, f"batch {batch_id}'s delivery", 0.1)
    return found


def test_a_batch_is_delivered_once_when_its_last_job_ends_with_every_result(client: httpx.Client) -> None:
    with webhook_receiver() as receiver:
        batch = submit_batch(client, range(20, 23), callback_url=receiver.url)
        assert batch["callback_url"] == receiver.url
        found = batch_delivered(client, batch["id"])
        time.sleep(1.5)  # several more batch checks: none sends it again
        requests = receiver.wait_for(1)

    assert len(requests) == 1
    assert requests[0].headers["webhook-id"] == f"msg_batch_{batch['id']}"
    body = verified(requests[0])
    assert (body["id"], body["type"], body["status"], body["counts"]["succeeded"]) == (batch["id"], "batch", "done", 3)
    assert [job["id"] for job in body["jobs"]] == [job["id"] for job in batch["jobs"]]
    assert all(job["status"] == "succeeded" and job["result"]["predictions"] for job in body["jobs"])
    assert "delivery" not in body
    assert (found["delivery"]["attempts"], found["delivery"]["last_status"]) == (1, 204)
    assert all(member["status"] == "succeeded" for member in found["jobs"])


def test_a_batch_whose_receiver_always_fails_is_a_dead_letter_an_operator_replays(
        client: httpx.Client, pipeline: LocalPipeline) -> None:
    with webhook_receiver(then=503) as receiver:
        batch = submit_batch(client, range(24, 26), callback_url=receiver.url)
        target = f"batch:{batch['id']}"
        wait_until(lambda: client.get(f"/v1/batches/{batch['id']}").json().get("delivery", {}).get("state") == "dead",
                   60, "the batch's delivery to be given up")
        listed = asyncinfer(pipeline.env, "webhooks", "dead-letters")
        assert target in [json.loads(line)["target"] for line in listed.stdout.splitlines()]

        receiver.then = 204
        assert asyncinfer(pipeline.env, "webhooks", "replay", target).stdout.split() == [target]
        found = batch_delivered(client, batch["id"])
        requests = receiver.wait_for(4)

    assert len(requests) == 4 and verified(requests[-1])["id"] == batch["id"]
    assert (found["delivery"]["replays"], found["delivery"]["last_status"]) == (1, 204)


def test_a_batch_with_a_private_callback_url_is_refused_with_a_problem(client: httpx.Client) -> None:
    response = client.post("/v1/batches", params={"callback_url": "http://10.1.2.3/hook"},
                           files=[("files", ("a.jpg", images.jpeg(seed=8), "image/jpeg"))])

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "private" in response.json()["detail"]


def test_the_delivery_record_its_events_and_the_refusal_conform_to_the_openapi_document(
        client: httpx.Client) -> None:
    from tests.integration.test_openapi_conformance import check_answer, event_data_schema, validate

    openapi = client.get("/openapi.json").json()
    with webhook_receiver(script=[500]) as receiver:
        job = submit(client, images.jpeg(seed=9), callback_url=receiver.url)
        events = stream_events(client, f"/v1/jobs/{job['id']}/events")
        delivered(client, job["id"])

    check_answer(openapi, "/v1/jobs/{job_id}", "get", client.get(f"/v1/jobs/{job['id']}"))
    deliveries = [data for name, _, data in events if name == "delivery"]
    assert deliveries and deliveries[-1]["state"] == "delivered"
    for name, _, data in events:
        validate(openapi, event_data_schema(openapi, "/v1/jobs/{job_id}/events", name), data)
    check_answer(openapi, "/v1/jobs", "post", post_job(client, images.jpeg(seed=9), callback_url="http://10.0.0.1/"))
    with webhook_receiver() as receiver:
        batch = submit_batch(client, range(27, 28), callback_url=receiver.url)
        batch_delivered(client, batch["id"])
    check_answer(openapi, "/v1/batches/{batch_id}", "get", client.get(f"/v1/batches/{batch['id']}"))
