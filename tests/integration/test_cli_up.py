"""`asyncinfer up` runs the whole pipeline on embedded defaults and stops it cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cli.processes import REPO_ROOT, free_port, wait_until
from shared.queue import redis_answers
from tests.support import images
from tests.support.http import submit, wait_terminal
from tests.support.pipeline import clean_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_serves_jobs_then_stops_everything(tmp_path: Path, stop_signal: signal.Signals) -> None:
    port, redis_port = free_port(), free_port()
    env = clean_env()
    env.update(ASYNCINFER_WEIGHTS="random", ASYNCINFER_PORT=str(port),
               ASYNCINFER_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "cli", "up"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        wait_until(lambda: "ready at" in log_path.read_text(), 120, "asyncinfer up")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            job = submit(client, images.jpeg(seed=51))
            assert wait_terminal(client, job["id"])["status"] == "succeeded"
        assert (tmp_path / "asyncinfer-data" / "jobs.db").exists()  # the embedded store

        up.send_signal(stop_signal)

        assert up.wait(60) == 0, log_path.read_text()
    finally:
        if up.poll() is None:
            up.kill()
    output = log_path.read_text()
    assert "started Redis" in output and "stopping" in output
    assert not redis_answers(f"redis://127.0.0.1:{redis_port}/0")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")


def test_up_without_imagenet_weights_says_how_to_provide_them(tmp_path: Path) -> None:
    env = clean_env()
    env["KERAS_HOME"] = str(tmp_path)

    result = subprocess.run([sys.executable, "-m", "cli", "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "ImageNet weights not found" in message and "ASYNCINFER_WEIGHTS" in message
