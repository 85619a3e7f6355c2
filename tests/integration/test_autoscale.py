"""`asyncinfer autoscale` on real processes: a burst on a pool at zero scales it to its maximum and
back to zero, and an autoscaler killed with SIGKILL mid-burst leaves no orphan worker and loses no
job once it is started again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cli.pipeline import LocalPipeline
from cli.processes import Supervisor, free_port, wait_until
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import scrape_metrics, wait_terminal
from tests.support.pipeline import worker_pids

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

BURST = 200
MAX_WORKERS = 2
# The pool reaches its maximum within this long of the burst (the autoscaler ticks every
# second; the workers' start, seconds of TensorFlow import and model build, comes after).
SCALE_UP_S = 5.0
OTHER_MODEL = "mobilenet_v3_small@1"
ENV = {
    "ASYNCINFER_SCALE_TARGET_JOBS_PER_WORKER": "16",
    "ASYNCINFER_SCALE_DOWN_AFTER_S": "3",
    "ASYNCINFER_SCALE_TO_ZERO_AFTER_S": "6",
}


def start_autoscaler(supervisor: Supervisor, pipeline: LocalPipeline, metrics_port: int) -> subprocess.Popen[bytes]:
    env = {**pipeline.env, "ASYNCINFER_AUTOSCALER_METRICS_PORT": str(metrics_port)}
    return supervisor.start_asyncinfer("autoscaler", "autoscale", "--workers", f"0..{MAX_WORKERS}", env=env)


def autoscaler_figures(port: int) -> dict[str, float]:
    try:
        samples = scrape_metrics(f"http://127.0.0.1:{port}/metrics")
    except (httpx.HTTPError, AssertionError):
        return {}
    return {name: value for (name, labels), value in samples.items() if not labels}



def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def post_burst(client: httpx.Client, seed: int, model: str | None = None) -> list[str]:
    job_ids = []
    for start in range(0, BURST, 50):  # the gateway's batch limit is larger; these stay readable
        files = [("files", (f"{i}.jpg", images.jpeg(96, 96, seed=seed + i), "image/jpeg"))
                 for i in range(start, start + 50)]
        response = client.post("/v1/batches", files=files, params={"model": model} if model else {})
        assert response.status_code == 202, response.text
        job_ids += [job["id"] for job in response.json()["jobs"]]
    return job_ids


def test_a_burst_on_an_empty_pool_scales_it_up_and_back_to_zero(make_pipeline: PipelineFactory,
                                                                tmp_path: Path) -> None:
    pipeline = make_pipeline(workers=0, **ENV)
    supervisor, port = Supervisor(tmp_path / "autoscaler"), free_port()
    start_autoscaler(supervisor, pipeline, port)
    try:
        wait_until(lambda: autoscaler_figures(port).get("asyncinfer_autoscaler_workers_target") == 0, 30,
                   "the autoscaler at zero", failed=supervisor.exited)
        with httpx.Client(base_url=pipeline.url, timeout=60) as client:
            submitted = time.monotonic()
            job_ids = post_burst(client, seed=30_000)
            wait_until(lambda: autoscaler_figures(port).get("asyncinfer_autoscaler_workers_actual") == MAX_WORKERS,
                       SCALE_UP_S, f"{MAX_WORKERS} workers", interval_s=0.1, failed=supervisor.exited)
            scaled_up_s = time.monotonic() - submitted
            first = wait_terminal(client, job_ids[0], timeout_s=120)
            cold_start_s = time.monotonic() - submitted
            docs = [wait_terminal(client, job_id, timeout_s=120) for job_id in job_ids]
            drained_s = time.monotonic() - submitted
        wait_until(lambda: autoscaler_figures(port).get("asyncinfer_autoscaler_workers_actual") == 0
                   and not worker_pids(pipeline.env["ASYNCINFER_REDIS_URL"]), 60, "the pool back at zero",
                   failed=supervisor.exited)
        back_to_zero_s = time.monotonic() - submitted
    finally:
        supervisor.stop()

    print(f"autoscale: {MAX_WORKERS} workers {scaled_up_s:.1f} s after a burst of {BURST} on an empty pool; first "
          f"result (cold start) after {cold_start_s:.1f} s; all {BURST} done after {drained_s:.1f} s; "
          f"back to zero after {back_to_zero_s:.1f} s")
    assert first["status"] == "succeeded"
    assert {doc["status"] for doc in docs} == {"succeeded"}
    assert {doc["attempts"] for doc in docs} == {1}  # scale-in drained: nothing ran twice
    decisions = [line.rsplit("autoscale: ", 1)[1] for line in supervisor.logs("autoscaler").splitlines()
                 if "autoscale: " in line and "→" in line]
    assert decisions[0].startswith(f"0 → {MAX_WORKERS} workers"), decisions
    assert decisions[-1].startswith("1 → 0 workers") or decisions[-1].startswith(f"{MAX_WORKERS} → 0"), decisions


def test_an_autoscaler_killed_mid_burst_leaves_no_orphans_and_loses_no_job(make_pipeline: PipelineFactory,
                                                                        tmp_path: Path) -> None:
    """On the pool of a model that is not the default one: the autoscaler scales its ASYNCINFER_MODEL's pool
    on that model's own backlog."""
    pipeline = make_pipeline(workers=0, ASYNCINFER_MODEL=OTHER_MODEL, **ENV)
    redis_url = pipeline.env["ASYNCINFER_REDIS_URL"]
    supervisor, port = Supervisor(tmp_path / "autoscaler"), free_port()
    first = start_autoscaler(supervisor, pipeline, port)
    pids: set[int] = set()
    try:
        with httpx.Client(base_url=pipeline.url, timeout=60) as client:
            job_ids = post_burst(client, seed=31_000, model=OTHER_MODEL)
            wait_until(lambda: len(worker_pids(redis_url)) == MAX_WORKERS, 120, f"{MAX_WORKERS} live workers",
                       failed=supervisor.exited)
            wait_until(lambda: client.get(f"/v1/jobs/{job_ids[10]}").json()["status"] == "succeeded", 60,
                       "the burst to be under way")
            pids = worker_pids(redis_url)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            wait_until(lambda: not any(alive(pid) for pid in pids), 60, "the killed autoscaler's workers to exit")
            start_autoscaler(supervisor, pipeline, port)  # a fresh pool: nothing of the old one is left
            docs = [wait_terminal(client, job_id, timeout_s=180) for job_id in job_ids]
    finally:
        supervisor.stop()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    assert {doc["status"] for doc in docs} == {"succeeded"}
    assert {f"{doc['model']['name']}@{doc['model']['version']}" for doc in docs} == {OTHER_MODEL}
    print(f"autoscaler killed mid-burst: its {len(pids)} workers exited; {BURST} jobs succeeded, attempts "
          f"{sorted({doc['attempts'] for doc in docs})}")
