"""Recovery of stranded jobs, on real processes: a job whose queue message is gone is queued again
by the gateway holding the recoverer's lease, and a job a live worker holds is never touched."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis

from api.services import Services
from cli.pipeline import LocalPipeline
from cli.processes import free_port, wait_until
from shared.constants import DEFAULT_TENANT
from shared.jobs import JobStatus, new_job, transition
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import scrape_metrics, submit, wait_terminal
from tests.support.models import MOBILENET_V2, blank_pixels, builtin, drop_waiting_jobs, waiting_jobs
from tests.support.pipeline import settings_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAST_RECOVERY = {"ASYNCINFER_RECOVERY_INTERVAL_S": "0.5", "ASYNCINFER_RECOVERY_GRACE_S": "1"}


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of a gateway's /metrics."""
    return scrape_metrics(f"{url}/metrics")[(name, tuple(sorted(labels.items())))]


def queue(pipeline: LocalPipeline) -> redis.Redis:
    return redis.Redis.from_url(pipeline.env["ASYNCINFER_REDIS_URL"])


def lose_the_queued_messages(pipeline: LocalPipeline) -> None:
    """What a Redis crash under `appendfsync everysec` can do to the last second of writes."""
    drop_waiting_jobs(queue(pipeline))


def test_queued_jobs_whose_messages_redis_lost_are_queued_again(make_pipeline: PipelineFactory) -> None:
    """Each on its own model's queue: 5 jobs of the default model, 3 of another one."""
    pipeline = make_pipeline(workers=0, **FAST_RECOVERY)
    other = builtin("mobilenet_v3_small")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        jobs = [submit(client, images.jpeg(seed=1000 + i)) for i in range(5)]
        others = [submit(client, images.jpeg(seed=1100 + i), model=other.ref) for i in range(3)]
        assert (waiting_jobs(queue(pipeline)), waiting_jobs(queue(pipeline), other)) == (5, 3)
        lose_the_queued_messages(pipeline)
        drop_waiting_jobs(queue(pipeline), other)

        wait_until(lambda: (waiting_jobs(queue(pipeline)), waiting_jobs(queue(pipeline), other)) == (5, 3), 30,
                   "recovery to queue the 5 and the 3 jobs again, each on its own model's queue")
        pipeline.start_worker()
        docs = [wait_terminal(client, job["id"]) for job in jobs]
        still_queued = [client.get(f"/v1/jobs/{job['id']}").json()["status"] for job in others]

    assert [(doc["status"], doc["attempts"]) for doc in docs] == [("succeeded", 1)] * 5
    assert still_queued == ["queued"] * 3 and waiting_jobs(queue(pipeline), other) == 3  # no worker of theirs ran
    assert metric(pipeline.url, "asyncinfer_jobs_recovered_total", cause="queued_without_message") == 8
    assert metric(pipeline.url, "asyncinfer_recovery_lease_held") == 1


def test_jobs_accepted_before_models_had_versions_are_adopted_by_the_default_model(
        make_pipeline: PipelineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade: a queued job whose `model` is null and a running one whose model names no version,
    their messages on the old single queue that no worker reads any more."""
    pipeline = make_pipeline(workers=1, **FAST_RECOVERY)
    services = Services.create(settings_of(pipeline.env, monkeypatch))
    old_worker_model = {"name": "mobilenet_v2", "weights": "random", "backend": "tensorflow", "device": "cpu"}
    legacy = []
    for i, status in enumerate(("queued", "running")):
        doc = new_job(model=MOBILENET_V2, tenant=DEFAULT_TENANT, input_info={"bytes": 1}, top_k=3)
        doc["model"] = None if status == "queued" else old_worker_model
        if status == "running":
            doc = transition(doc, JobStatus.RUNNING)
        created, _ = services.store.create_job(doc, blank_pixels())
        queue(pipeline).rpush("asyncinfer.infer", f"a message of the old queue {i}")
        legacy.append(created["id"])
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        docs = [wait_terminal(client, job_id, timeout_s=60) for job_id in legacy]
    services.close()
    assert [(doc["status"], doc["model"]["name"], doc["model"]["version"]) for doc in docs] == [
        ("succeeded", "mobilenet_v2", "1")] * 2


def test_a_running_job_whose_message_is_gone_runs_again(make_pipeline: PipelineFactory,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make_pipeline(workers=0, **FAST_RECOVERY)
    services = Services.create(settings_of(pipeline.env, monkeypatch))
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        job = submit(client, images.jpeg(seed=1010))
        # A worker began it, then its message was acknowledged (or lost) without the job finishing.
        assert services.lifecycle.begin(job["id"]) is not None
        lose_the_queued_messages(pipeline)

        wait_until(lambda: waiting_jobs(queue(pipeline)) == 1, 30, "recovery to queue the job again")
        pipeline.start_worker()
        doc = wait_terminal(client, job["id"])
    services.close()

    assert (doc["status"], doc["attempts"]) == ("succeeded", 2)
    assert metric(pipeline.url, "asyncinfer_jobs_recovered_total", cause="running_without_message") == 1


def test_a_job_that_a_live_worker_holds_is_never_recovered(make_pipeline: PipelineFactory) -> None:
    """The worker holds the job for 4 s, eight recovery passes and four grace periods."""
    pipeline = make_pipeline(workers=1, ASYNCINFER_FAULT_INFERENCE_DELAY_S="4", **FAST_RECOVERY)
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        job = submit(client, images.jpeg(seed=1020))
        doc = wait_terminal(client, job["id"])

    assert (doc["status"], doc["attempts"]) == ("succeeded", 1)
    assert [step["status"] for step in doc["history"]] == ["queued", "running", "succeeded"]
    for cause in ("queued_without_message", "running_without_message"):
        assert metric(pipeline.url, "asyncinfer_jobs_recovered_total", cause=cause) == 0


def test_of_two_gateways_exactly_one_recovers(make_pipeline: PipelineFactory, tmp_path: Path) -> None:
    first = make_pipeline(workers=0, **FAST_RECOVERY)
    second = LocalPipeline(env=first.env, port=free_port(), workdir=tmp_path / "second")
    second.start_gateway()
    try:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            for i in range(6):
                submit(client, images.jpeg(seed=1030 + i))
        lose_the_queued_messages(first)

        wait_until(lambda: waiting_jobs(queue(first)) == 6, 30, "recovery to queue the 6 jobs again")
        time.sleep(3)  # six more passes: nobody queues them a second time

        assert waiting_jobs(queue(first)) == 6
        gateways = [first.url, second.url]
        recovered = [metric(url, "asyncinfer_jobs_recovered_total", cause="queued_without_message") for url in gateways]
        held = [metric(url, "asyncinfer_recovery_lease_held") for url in gateways]
        assert sum(recovered) == 6 and sorted(held) == [0, 1]
        assert recovered[held.index(1)] == 6
    finally:
        second.stop()
