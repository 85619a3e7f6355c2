"""`asyncinfer up` runs the whole pipeline on embedded defaults and stops it cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.processes import REPO_ROOT, free_port, wait_until
from shared.queue import redis_answers
from tests.support import images
from tests.support.http import submit, wait_terminal
from tests.support.pipeline import clean_env, worker_pids

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_serves_jobs_then_stops_everything(tmp_path: Path, stop_signal: signal.Signals) -> None:
    with running_up(tmp_path, stop_signal=stop_signal) as up:
        with httpx.Client(base_url=up.url, timeout=30) as client:
            job = submit(client, images.jpeg(seed=51))
            assert wait_terminal(client, job["id"])["status"] == "succeeded"
        assert (tmp_path / "asyncinfer-data" / "jobs.db").exists()  # the embedded store
    output = up.output()
    assert "Redis: started" in output and "stopping" in output
    # One line per service as it is ready, the ready line last, and nothing of the services' own output.
    lines = output.splitlines()
    ready = next(i for i, line in enumerate(lines) if "ready at" in line)
    assert [line.split(":")[1].strip() for line in lines[:ready]] == ["Redis", "gateway", "worker0"]
    assert "mobilenet_v2@1 loaded" in lines[ready - 1]
    assert f"API docs {up.url}/docs" in lines[ready] and "/metrics" in lines[ready]
    assert all(line.startswith("asyncinfer: ") or not line.strip() for line in lines), output
    assert (tmp_path / "asyncinfer-data" / "logs" / "worker0.log").read_text().count("ready.") == 1
    assert not redis_answers(up.redis_url)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{up.url}/healthz")


def test_up_without_imagenet_weights_says_how_to_provide_them(tmp_path: Path) -> None:
    env = clean_env()
    env["KERAS_HOME"] = str(tmp_path)

    result = subprocess.run([sys.executable, "-m", "cli", "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "ImageNet weights not found" in message and "ASYNCINFER_WEIGHTS" in message


@dataclass(frozen=True)
class Up:
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str
    redis_url: str

    def output(self) -> str:
        return self.log_path.read_text()


@contextlib.contextmanager
def running_up(tmp_path: Path, *args: str, stop_signal: signal.Signals = signal.SIGINT,
               **settings: str) -> Iterator[Up]:
    """`asyncinfer up ARGS` on a Redis of its own, once it says it is ready; stopped with
    `stop_signal` at the end of the block, which it must obey with exit code 0."""
    port, redis_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = clean_env()
    env.update(ASYNCINFER_WEIGHTS="random", ASYNCINFER_PORT=str(port), ASYNCINFER_REDIS_URL=redis_url,
               PYTHONUNBUFFERED="1", **settings)
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "cli", "up", *args], cwd=tmp_path, env=env, stdout=log,
                                   stderr=log)
    up = Up(process, log_path, f"http://127.0.0.1:{port}", redis_url)
    try:
        wait_until(lambda: "ready at" in up.output(), 120, "asyncinfer up",
                   failed=lambda: None if process.poll() is None else up.output()[-2000:])
        yield up
        process.send_signal(stop_signal)
        assert process.wait(60) == 0, up.output()
    finally:
        if process.poll() is None:
            process.kill()


def test_up_starts_a_worker_again_when_it_dies(tmp_path: Path) -> None:
    with running_up(tmp_path) as up, httpx.Client(base_url=up.url, timeout=30) as client:
        assert wait_terminal(client, submit(client, images.jpeg(seed=52))["id"])["status"] == "succeeded"
        (pid,) = wait_until(lambda: worker_pids(up.redis_url), 30, "the worker's presence")
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would
        wait_until(lambda: "worker0 exited with code -9; starting it again" in up.output(), 30, "the restart")
        assert wait_terminal(client, submit(client, images.jpeg(seed=53))["id"], timeout_s=120)["status"] == \
            "succeeded"


def test_up_with_a_worker_pool_scales_from_zero_and_back(tmp_path: Path) -> None:
    autoscaler_log = tmp_path / "asyncinfer-data" / "logs" / "autoscaler.log"
    with running_up(tmp_path, "--workers", "0..1", ASYNCINFER_SCALE_DOWN_AFTER_S="1",
                    ASYNCINFER_SCALE_TO_ZERO_AFTER_S="3") as up:
        assert worker_pids(up.redis_url) == []  # nothing to do: no worker
        with httpx.Client(base_url=up.url, timeout=30) as client:
            job = submit(client, images.jpeg(seed=54))
            assert wait_terminal(client, job["id"], timeout_s=120)["status"] == "succeeded"
        wait_until(lambda: "autoscale: 1 → 0 workers" in autoscaler_log.read_text(), 60, "the pool back at zero")
        wait_until(lambda: worker_pids(up.redis_url) == [], 30, "the drained worker to leave")
    assert "autoscale: 0 → 1 workers" in autoscaler_log.read_text()
    terminal = up.output()
    assert "autoscale:" not in terminal  # the autoscaler's lines go to its log file, like the services'
    # No worker at MIN 0: the ready line says the gateway is, and that workers start on demand.
    assert "asyncinfer: gateway ready at" in terminal and "workers start on demand" in terminal


def test_up_with_a_minimum_pool_is_ready_once_a_worker_has_its_model(tmp_path: Path) -> None:
    with running_up(tmp_path, "--workers", "1..1") as up:
        (ready,) = [line for line in up.output().splitlines() if "ready at" in line]
        assert "loaded" in ready and "on demand" not in ready
        worker_log = (tmp_path / "asyncinfer-data" / "logs" / "worker0.log").read_text()
        assert "ready." in worker_log  # its model was loaded before the ready line
        assert len(worker_pids(up.redis_url)) >= 1


def test_up_with_log_level_debug_prints_the_services_own_output_here(tmp_path: Path) -> None:
    with running_up(tmp_path, "--log-level", "debug") as up:
        # No log files to read readiness from: the worker's own lines come to this terminal.
        wait_until(lambda: "ready." in up.output(), 120, "the worker's Celery ready line here")
    output = up.output()
    assert "model mobilenet_v2@1 ready" in output  # the worker's log line
    assert "Uvicorn running" in output or "Application startup complete" in output  # the gateway's
    assert any(line.strip() and not line.startswith("asyncinfer: ") for line in output.splitlines())  # not only up's
    assert not (tmp_path / "asyncinfer-data" / "logs").exists()


def test_up_with_two_gateway_processes_serves_with_both_and_stops_them(tmp_path: Path) -> None:
    with running_up(tmp_path, "--gateway-processes", "2", "--workers", "0..1", stop_signal=signal.SIGTERM) as up:
        assert "(store sqlite, 2 processes)" in up.output()
        gateway_log = tmp_path / "asyncinfer-data" / "logs" / "gateway.log"
        wait_until(lambda: gateway_log.read_text().count("Application startup complete") == 2, 30,
                   "both gateway processes")
        assert httpx.get(f"{up.url}/readyz").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{up.url}/healthz")
