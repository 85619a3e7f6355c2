"""`asyncinfer up`: Redis (when none answers), the gateway and one worker, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.config import Settings
from shared.redis_server import redis_answers, start_redis

STOP_GRACE_S = 15.0


def spawn_asyncinfer(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only this launcher, which stops the children in order.
    command = [sys.executable, "-m", "shared", *args]
    return subprocess.Popen(command, env=env if env is not None else os.environ.copy(), start_new_session=True)


def stop_in_reverse_order(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Stop in reverse start order, each before the next: gateway, worker, then Redis last,
    so nothing loses its broker while shutting down."""
    for name, process in reversed(processes):
        if process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            print(f"asyncinfer: {name} did not stop in time; killing it", file=sys.stderr)
            process.kill()
            process.wait()


def stop_on_sigterm() -> None:
    """A service manager's SIGTERM stops the pipeline as Ctrl-C does, instead of orphaning it."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def wait_healthy(url: str, gateway: subprocess.Popen[bytes], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and gateway.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def run_pipeline(settings: Settings, *, mesh: str | None = None) -> int:
    if settings.weights == "imagenet":
        from workers.model import imagenet_weights_path

        if not imagenet_weights_path().is_file():
            print(
                f"asyncinfer up: ImageNet weights not found at {imagenet_weights_path()}; copy "
                "them there, set ASYNCINFER_WEIGHTS=/path/to/weights.h5, or "
                "ASYNCINFER_WEIGHTS=random to try the pipeline with random weights",
                file=sys.stderr,
            )
            return 2
    if (mesh or settings.mesh) == "consul":
        from shared.mesh_launcher import run_mesh_pipeline

        return int(run_mesh_pipeline(settings))
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    stop_on_sigterm()
    try:
        if redis_answers(settings.redis_url):
            print(f"asyncinfer: using the Redis at {settings.redis_url}")
        else:
            data_dir = Path(settings.sqlite_path).parent if settings.store_kind == "sqlite" else Path("asyncinfer-data")
            processes.append(("redis", start_redis(settings.redis_url, data_dir / "redis")))
            print(f"asyncinfer: started Redis at {settings.redis_url}")
        processes.append(("worker", spawn_asyncinfer("worker")))
        gateway = spawn_asyncinfer("api")
        processes.append(("gateway", gateway))
        url = f"http://{settings.host}:{settings.port}"
        if not wait_healthy(url, gateway):
            print("asyncinfer: the gateway did not start", file=sys.stderr)
            return 1
        print(f"asyncinfer: ready at {url}  (web page {url}/, API docs {url}/docs); Ctrl-C stops")
        while True:
            for name, process in processes:
                if process.poll() is not None:
                    print(f"asyncinfer: {name} exited with code {process.returncode}", file=sys.stderr)
                    return process.returncode or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nasyncinfer: stopping")
        return 0
    finally:
        stop_in_reverse_order(processes)
