"""Scale-in during steady load: a worker stopped with SIGTERM (a scale-in, a Kubernetes or compose
stop) drains. It stops taking messages, finishes and acknowledges the batch it is running, hands
the jobs it buffered for its next batch back to the queue at once, leaves the presence set and
Consul, and exits. Nothing it held waits the visibility timeout or runs twice.

Two real workers share a steady stream of jobs. The one to be drained (worker0, in the mesh: it
registers with a real Consul dev agent, while it reaches Redis directly) waits up to 2 s to fill a
batch and sleeps 1 s before each forward pass, so at any moment it holds jobs: buffered (still
`queued`) or in a running batch (`running`). The other (worker1) runs each job as it comes, in
milliseconds, so a message Redis holds unacknowledged for longer than a moment is worker0's. Each
scale-in test sends SIGTERM at one of the two moments. The visibility timeout is 30 s here, so a
job that waited for it is unmistakable.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from cli.pipeline import LocalPipeline
from cli.processes import wait_until
from shared.config import Settings
from shared.constants import UNACKED_KEY, WORKERS_PRESENT_KEY
from shared.jobs import parse_rfc3339
from tests.conftest import PipelineFactory
from tests.integration.test_compose import compose_command, run_compose
from tests.support import images
from tests.support.consul_agent import ConsulAgent, consul_agent
from tests.support.http import submit, wait_terminal
from workers.worker import STOPPED_WHILE_STARTING

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

VISIBILITY_S = 30
SLOW_WORKER = {
    "ASYNCINFER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
    "ASYNCINFER_MAX_BATCH_SIZE": "8",
    "ASYNCINFER_MAX_BATCH_WAIT_MS": "2000",
    "ASYNCINFER_BATCH_IDLE_MS": "1000",
    "ASYNCINFER_BATCH_START_ALONE": "false",  # buffers a first job too, so that it can be caught buffering
    "ASYNCINFER_FAULT_INFERENCE_DELAY_S": "1",
}
FAST_WORKER = {
    **SLOW_WORKER,
    "ASYNCINFER_MAX_BATCH_WAIT_MS": "20",
    "ASYNCINFER_BATCH_IDLE_MS": "2",
    "ASYNCINFER_BATCH_START_ALONE": "true",
    "ASYNCINFER_FAULT_INFERENCE_DELAY_S": "0",
}
SUBMIT_EVERY_S = 0.25  # 4 jobs/s, which worker1 alone keeps up with
LOAD_AFTER_S = 3.0  # the load goes on this long after the drained worker exited
# Unacknowledged this long, a message is in worker0's hands (worker1 holds one for milliseconds).
HELD_FOR_S = 0.3
# A drain must end within Compose's default stop grace period (docker-compose.yml gives the worker 30 s).
DRAIN_LIMIT_S = 10.0
WORKER_SERVICES = {"worker", "worker-sidecar-proxy"}
_BATCH_LINE = re.compile(r"batch of (\d+):")
# kombu's line when closing the broker connection hands unacknowledged messages back to the queue.
_RESTORED_LINE = re.compile(r"Restoring (\d+) unacknowledged message")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    with consul_agent(tmp_path_factory.mktemp("consul")) as running:
        yield running


def in_the_mesh(agent: ConsulAgent) -> dict[str, str]:
    """A worker that registers itself and a sidecar with `agent`. Its Redis URL names Redis's own
    loopback port, which the registration takes for the sidecar's upstream; no sidecar runs."""
    return {"ASYNCINFER_MESH": "consul", "ASYNCINFER_CONSUL_URL": agent.url,
            "ASYNCINFER_CONSUL_TOKEN": agent.token_for("worker"),
            "ASYNCINFER_CONSUL_CHECK_INTERVAL_S": "1", "ASYNCINFER_CONSUL_WORKER_TTL_S": "3"}


def registered(agent: ConsulAgent) -> set[str]:
    return WORKER_SERVICES & set(agent.client.agent.services())


def batch_sizes(log_lines: list[str]) -> list[int]:
    return [int(found.group(1)) for line in log_lines if (found := _BATCH_LINE.search(line))]


def handed_back(log_lines: list[str]) -> int:
    return sum(int(found.group(1)) for line in log_lines if (found := _RESTORED_LINE.search(line)))


def held_job_ids(broker: redis.Redis) -> set[str]:
    """Jobs whose message a worker holds unacknowledged: buffered, or in a running batch."""
    return {json.loads(raw)[0]["headers"]["id"] for raw in broker.hvals(UNACKED_KEY)}


def start_worker_with(pipeline: LocalPipeline, env: dict[str, str]) -> None:
    """Start one more worker (not waiting for it) with these settings over the pipeline's;
    LocalPipeline has one environment for all its processes."""
    shared = pipeline.env
    pipeline.env = {**shared, **env}
    try:
        pipeline.start_worker(wait_ready=False)
    finally:
        pipeline.env = shared


class SteadyLoad:
    """Submits one job every SUBMIT_EVERY_S from a thread until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.job_ids: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)
        self._payloads = [images.jpeg(160, 120, seed=3100 + i) for i in range(16)]

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=30) as client:
                due = time.monotonic()
                while not self._stop.is_set():
                    payload = self._payloads[len(self.job_ids) % len(self._payloads)]
                    self.job_ids.append(submit(client, payload)["id"])
                    due += SUBMIT_EVERY_S
                    self._stop.wait(max(0.0, due - time.monotonic()))
        except BaseException as e:  # the test reports it
            self.errors.append(e)


def worker0_holds(pipeline: LocalPipeline, broker: redis.Redis, status: str) -> dict[str, str] | None:
    """{job id: status} of the jobs held unacknowledged, once some of them are `status` and stay so
    for HELD_FOR_S (so they are worker0's: worker1 holds a message for milliseconds); else None."""
    with httpx.Client(base_url=pipeline.url, timeout=10) as client:
        def held() -> dict[str, str]:
            return {job_id: client.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in held_job_ids(broker)}

        candidates = {job_id for job_id, now in held().items() if now == status}
        if not candidates:
            return None
        time.sleep(HELD_FOR_S)
        later = held()
        return later if candidates <= {job_id for job_id, now in later.items() if now == status} else None


def seconds_in(doc: dict[str, Any], since: str) -> float:
    """From the job's first `since` history entry to its last entry (its result)."""
    history = doc["history"]
    start = next(entry["at"] for entry in history if entry["status"] == since)
    return (parse_rfc3339(history[-1]["at"]) - parse_rfc3339(start)).total_seconds()


@pytest.fixture
def two_workers(make_pipeline: PipelineFactory, agent: ConsulAgent) -> LocalPipeline:
    pipeline = make_pipeline(workers=0, **SLOW_WORKER)  # the gateway
    start_worker_with(pipeline, in_the_mesh(agent))  # worker0, the one to be drained
    start_worker_with(pipeline, FAST_WORKER)  # worker1
    for worker in pipeline.workers:
        pipeline.wait_worker_ready(worker)
    return pipeline


@pytest.mark.parametrize("moment", ["queued", "running"], ids=["while-buffering", "mid-batch"])
def test_scale_in_during_steady_load_the_drained_workers_jobs_succeed_once_without_a_visibility_wait(
    two_workers: LocalPipeline, agent: ConsulAgent, moment: str,
) -> None:
    pipeline = two_workers
    drained = pipeline.workers[0]
    broker = redis.Redis.from_url(pipeline.env["ASYNCINFER_REDIS_URL"])
    assert registered(agent) == WORKER_SERVICES
    with SteadyLoad(pipeline.url) as load:
        wait_until(lambda: batch_sizes(pipeline.logs("worker0").splitlines()), 60, "worker0 to run a batch")
        held = wait_until(lambda: worker0_holds(pipeline, broker, moment), 60, f"worker0 to hold {moment} jobs",
                          interval_s=0.05)
        log_from = len(pipeline.logs("worker0").splitlines())
        sigterm_at = time.monotonic()
        drained.terminate()
        exit_code = drained.wait(60)
        drain_s = time.monotonic() - sigterm_at
        # Gone from Consul and from the presence set by the time the process is gone.
        still_registered = registered(agent)
        present = [member.decode() for member in broker.zrange(WORKERS_PRESENT_KEY, 0, -1)]
        time.sleep(LOAD_AFTER_S)
    assert not load.errors, load.errors
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        docs = {job_id: wait_terminal(client, job_id, timeout_s=120) for job_id in load.job_ids}

    drain_log = pipeline.logs("worker0").splitlines()[log_from:]
    queued_to_result = {job_id: seconds_in(doc, "queued") for job_id, doc in docs.items()}
    running_to_result = {job_id: seconds_in(doc, "running") for job_id, doc in docs.items()
                         if doc["status"] == "succeeded"}
    print("\nworker0 after SIGTERM:\n  " + "\n  ".join(line for line in drain_log if line.strip()))
    print(
        f"SIGTERM {moment}: worker0 held {len(held)} jobs ({', '.join(sorted(held.values()))}); "
        f"{len(docs)} jobs, statuses {sorted({doc['status'] for doc in docs.values()})}, "
        f"attempts {sorted({doc['attempts'] for doc in docs.values()})}; "
        f"longest queued-to-result {max(queued_to_result.values()):.2f} s (the held jobs: "
        f"{', '.join(f'{queued_to_result[job_id]:.2f}' for job_id in held)} s), "
        f"longest running-to-result {max(running_to_result.values()):.2f} s; "
        f"drain from SIGTERM to exit {drain_s:.2f} s, exit code {exit_code}; "
        f"after SIGTERM worker0 ran batches of {batch_sizes(drain_log)} and handed {handed_back(drain_log)} "
        "messages back to the queue"
    )
    # What this test is about: at SIGTERM worker0 held a running batch, or jobs buffered for one.
    ran, returned = batch_sizes(drain_log), handed_back(drain_log)
    if moment == "running":
        assert ran, "worker0 finished no batch after SIGTERM: it was not mid-batch, nothing was tested"
    else:
        assert ran or returned, "worker0 held nothing at SIGTERM: nothing was tested"
    assert exit_code == 0
    assert drain_s < DRAIN_LIMIT_S
    assert not still_registered, still_registered
    assert not [member for member in present if "/worker0@" in member], present
    for job_id, doc in docs.items():
        assert doc["status"] == "succeeded", doc
        assert doc["attempts"] == 1, doc["history"]  # nothing ran twice
        assert [entry["status"] for entry in doc["history"]] == ["queued", "running", "succeeded"], doc["history"]
        assert queued_to_result[job_id] < VISIBILITY_S / 3, doc["history"]  # nothing waited the visibility timeout


def test_a_worker_stopped_while_it_starts_leaves_consul_too(make_pipeline: PipelineFactory,
                                                           agent: ConsulAgent) -> None:
    """A worker registers before it loads its model (seconds): a scale-in that comes meanwhile
    must not leave it, and its sidecar, registered. (Before, SIGTERM killed it: exit -15, both left.)"""
    pipeline = make_pipeline(workers=0, gateway=False, **in_the_mesh(agent))
    worker = pipeline.start_worker(wait_ready=False)
    wait_until(lambda: registered(agent) == WORKER_SERVICES, 60, "the worker to register", 0.05,
               failed=lambda: pipeline.supervisor.gone("worker0", worker))
    time.sleep(1.0)  # into its model loading (TensorFlow: several seconds)
    sigterm_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    exit_code = worker.wait(30)
    stop_s = time.monotonic() - sigterm_at
    log = pipeline.logs("worker0")
    print(f"\nSIGTERM while starting: exit code {exit_code} after {stop_s:.2f} s; "
          f"still registered: {sorted(registered(agent))}")
    assert "ready." not in log  # it was stopped before it consumed
    assert not registered(agent), log
    assert "stopped before consuming" in log and "deregistered worker" in log
    assert exit_code == STOPPED_WHILE_STARTING
    assert stop_s < DRAIN_LIMIT_S


def test_compose_gives_the_worker_a_grace_period_longer_than_a_drain() -> None:
    result = run_compose(compose_command(), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    grace = json.loads(result.stdout)["services"]["worker"]["stop_grace_period"]  # a Go duration: 3m0s
    parts = re.fullmatch(r"(?:(\d+)m)?(?:([\d.]+)s)?", grace)
    assert parts is not None, grace
    seconds = int(parts.group(1) or 0) * 60 + float(parts.group(2) or 0)
    assert seconds > Settings().inference_timeout_s > DRAIN_LIMIT_S, grace  # the longest a batch may run
