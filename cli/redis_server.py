"""Start a local Redis when none answers: Debian's redis-server, configured not to lose jobs."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from shared.errors import StartupError
from shared.queue import redis_answers


class RedisUnavailable(StartupError):
    """redis-server is missing, or the one started here did not answer."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise RedisUnavailable(
            "no Redis answers and redis-server is not installed: run scripts/setup "
            "(or apt-get install redis-server), or set ASYNCINFER_REDIS_URL"
        )
    return found


def start_redis(url: str, data_dir: Path, *, wait_s: float = 10.0, databases: int = 16) -> subprocess.Popen[bytes]:
    """Start redis-server for `url` (host and port), persisting under `data_dir`."""
    parsed = urlparse(url)
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind", parsed.hostname or "127.0.0.1",
            "--port", str(parsed.port or 6379),
            "--dir", str(data_dir),
            # Queued jobs live in Redis until a worker acknowledges them: never evict them,
            # and keep an append-only file so a Redis restart does not drop them either.
            "--maxmemory-policy", "noeviction",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "yes",
            "--databases", str(databases),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not stopped by the terminal's Ctrl-C before its clients
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RedisUnavailable(f"redis-server exited with code {process.returncode}")
        if redis_answers(url):
            return process
        time.sleep(0.05)
    process.terminate()
    raise RedisUnavailable(f"redis-server did not answer on {url} within {wait_s:.0f}s")
