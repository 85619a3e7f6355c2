"""Between storing a job and queueing it: a queue that fails, or a gateway that dies there,
never leaves a job that nothing will run. Real Redis, real store, real gateway and worker; the
broker failure itself is injected at the one call that sends to it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any
from unittest import mock

import httpx
import pytest
import redis
from celery import Celery
from kombu.exceptions import BatchPublishError, OperationalError
from redis.client import Pipeline

from api.admission import submitter as submission
from api.admission.submitter import Submitter, Upload
from api.services import Services
from cli.pipeline import LocalPipeline
from cli.processes import wait_until
from shared.constants import DEFAULT_TENANT, EVENTS_CHANNEL
from shared.errors import BatchNotFound, DependencyUnavailable
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, wait_terminal
from tests.support.models import waiting_jobs
from tests.support.pipeline import settings_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

IMAGE = images.jpeg(320, 240, seed=71)


@pytest.fixture
def gateway(make_pipeline: PipelineFactory) -> LocalPipeline:
    return make_pipeline(workers=0)


@pytest.fixture
def submitter(gateway: LocalPipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[Submitter]:
    """What a gateway process runs, in this process, on the same store and Redis database."""
    services = Services.create(settings_of(gateway.env, monkeypatch))
    yield services.submitter
    services.close()


def queued_messages(pipeline: LocalPipeline) -> int:
    return waiting_jobs(redis.Redis.from_url(pipeline.env["ASYNCINFER_REDIS_URL"]))


def post(client: httpx.Client, key: str) -> httpx.Response:
    return post_job(client, IMAGE, headers={"Idempotency-Key": key})


def test_a_gateway_that_died_before_queueing_has_the_job_queued_by_the_clients_retry(
    gateway: LocalPipeline, submitter: Submitter
) -> None:
    with mock.patch.object(submission, "enqueue", side_effect=SystemExit("killed")), pytest.raises(SystemExit):
        submitter.submit_job(Upload(IMAGE, "image/jpeg"), tenant=DEFAULT_TENANT, top_k=5, idempotency_key="k-1")
    assert queued_messages(gateway) == 0  # stored, claimed, never queued

    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        retried = post(client, "k-1")
        assert retried.status_code == 202 and retried.headers["idempotent-replayed"] == "true"
        assert queued_messages(gateway) == 1
        assert post(client, "k-1").json()["id"] == retried.json()["id"]
        assert queued_messages(gateway) == 1  # queued once: later retries add nothing

        gateway.start_worker()
        assert wait_terminal(client, retried.json()["id"])["status"] == "succeeded"


def test_a_queue_that_fails_leaves_no_job_and_frees_the_idempotency_key(
    gateway: LocalPipeline, submitter: Submitter
) -> None:
    down = OperationalError("Error 111 connecting to redis: Connection refused")
    with mock.patch.object(submission, "enqueue", side_effect=down), pytest.raises(DependencyUnavailable):
        submitter.submit_job(Upload(IMAGE, "image/jpeg"), tenant=DEFAULT_TENANT, top_k=5, idempotency_key="k-2")

    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        again = post(client, "k-2")
        assert again.status_code == 202 and "idempotent-replayed" not in again.headers
        assert client.get(f"/v1/jobs/{again.json()['id']}").json()["status"] == "queued"
    assert queued_messages(gateway) == 1


def test_a_batch_whose_one_send_fails_is_withdrawn_whole(gateway: LocalPipeline, submitter: Submitter) -> None:
    """A batch's messages go out in one Redis pipeline; when it fails, delivery is uncertain
    (kombu's BatchPublishError). Here two of the five did arrive: every member is cancelled, each
    with its event, the batch is forgotten, and the worker skips the two it finds on the queue."""
    real_enqueue_all = submission.enqueue_all
    sent: list[str] = []

    def two_arrive_then_it_fails(app: Celery, jobs: Sequence[tuple[str, str]]) -> None:
        real_enqueue_all(app, jobs[:2])
        sent.extend(job_id for job_id, _ in jobs[:2])
        raise BatchPublishError("Redis publish batch failed; delivery is uncertain")

    uploads = [Upload(images.jpeg(200, 150, seed=80 + n), "image/jpeg") for n in range(5)]
    events = redis.Redis.from_url(gateway.env["ASYNCINFER_REDIS_URL"]).pubsub(ignore_subscribe_messages=True)
    events.subscribe(EVENTS_CHANNEL)
    with mock.patch.object(submission, "enqueue_all", side_effect=two_arrive_then_it_fails), \
            mock.patch.object(submitter.store, "create_jobs", wraps=submitter.store.create_jobs) as create, \
            mock.patch.object(submitter.store, "create_batch", wraps=submitter.store.create_batch) as create_batch, \
            pytest.raises(DependencyUnavailable):
        submitter.submit_batch(uploads, tenant=DEFAULT_TENANT, top_k=5)

    stored = [doc["id"] for doc, _ in create.call_args.args[0]]
    assert len(stored) == 5 and stored[:2] == sent and queued_messages(gateway) == 2
    for job_id in stored:  # on the queue or perhaps on it: cancelled, so that a worker skips them
        assert submitter.store.get_job(job_id)["status"] == "cancelled"
    announced = []  # through JobLifecycle, so each cancel has its event, as every status change does
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(announced) < len(stored):
        message = events.get_message(timeout=0.5)  # None also for the subscription's own confirmation
        if message is not None and json.loads(message["data"])["job_id"] in stored:  # the channel is the server's
            event = json.loads(message["data"])
            announced.append((event["job_id"], event["status"]))
    events.close()
    assert sorted(announced) == sorted((job_id, "cancelled") for job_id in stored)
    with pytest.raises(BatchNotFound):
        submitter.store.get_batch(create_batch.call_args.args[0]["id"])

    gateway.start_worker()
    wait_until(lambda: queued_messages(gateway) == 0, 60, "the worker to take the cancelled jobs off the queue")
    for job_id in stored:
        assert submitter.store.get_job(job_id)["status"] == "cancelled"


def test_a_batch_is_queued_in_one_round_trip(gateway: LocalPipeline, submitter: Submitter) -> None:
    """Every message of a batch goes out in one pipeline, none by a command of its own; a worker
    then runs each like any other job."""
    uploads = [Upload(images.jpeg(200, 150, seed=90 + n), "image/jpeg") for n in range(5)]
    pushed_by_pipeline: list[int] = []  # LPUSHes in each pipeline that had any, read as it is sent
    real_execute, real_command = Pipeline.execute, redis.Redis.execute_command

    def execute(pipeline: Pipeline, *args: Any, **kwargs: Any) -> Any:
        if pushes := sum(command[0][0] == "LPUSH" for command in pipeline.command_stack):
            pushed_by_pipeline.append(pushes)
        return real_execute(pipeline, *args, **kwargs)

    with mock.patch.object(Pipeline, "execute", autospec=True, side_effect=execute), \
            mock.patch.object(redis.Redis, "execute_command", autospec=True, side_effect=real_command) as commands:
        batch = submitter.submit_batch(uploads, tenant=DEFAULT_TENANT, top_k=5)

    assert pushed_by_pipeline == [5]
    assert not [call for call in commands.call_args_list if call.args[1] == "LPUSH"]
    gateway.start_worker()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for job_id in batch["job_ids"]:
            assert wait_terminal(client, job_id)["status"] == "succeeded"
