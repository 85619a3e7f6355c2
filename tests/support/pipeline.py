"""The settings integration tests run the product's own LocalPipeline (cli/pipeline.py) with."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import redis

from shared.config import Settings
from shared.constants import WORKERS_PRESENT_KEY

# The session's redis-server has this many databases, so that each pipeline of a run gets one of
# its own: two gateways on one database would share a delivery schedule, a recovery lease, queues.
TEST_REDIS_DATABASES = 1024
_next_database = itertools.count(0)


def fresh_redis_database(redis_url: str) -> str:
    """The URL of a database of `redis_url` (a server with no database number) that no other
    caller of this session got, emptied."""
    number = next(_next_database)
    if number >= TEST_REDIS_DATABASES:
        raise RuntimeError(f"the test session used all {TEST_REDIS_DATABASES} Redis databases")
    url = f"{redis_url}/{number}"
    redis.Redis.from_url(url).flushdb()
    return url


def clean_env(*keep: str) -> dict[str, str]:
    """This process's environment without the project's settings (ASYNCINFER_*), except `keep`."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ASYNCINFER_") or key in keep}


def pipeline_env(redis_url: str, workdir: Path, **overrides: str) -> dict[str, str]:
    """A store of the test's own, random weights, and a short visibility timeout and small
    batches, so that redelivery and batching happen within a test's time."""
    env = clean_env()
    env.update(
        {
            "ASYNCINFER_REDIS_URL": redis_url,
            "ASYNCINFER_STORE": f"sqlite:///{workdir / 'jobs.db'}",
            "ASYNCINFER_WEIGHTS": "random",
            "ASYNCINFER_VISIBILITY_TIMEOUT_S": "6",
            "ASYNCINFER_MAX_BATCH_SIZE": "8",
            "ASYNCINFER_MAX_BATCH_WAIT_MS": "50",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a process started with `env` builds, read the product's own way."""
    for key in [key for key in os.environ if key.startswith("ASYNCINFER_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("ASYNCINFER_"):
            monkeypatch.setenv(key, value)
    return Settings()


def worker_pids(redis_url: str) -> list[int]:
    """The pids in the workers' presence entries (`<model>@<version>/<node>/<pid>/<random>`, workers/presence.py)."""
    entries = redis.Redis.from_url(redis_url, decode_responses=True).zrange(WORKERS_PRESENT_KEY, 0, -1)
    return [int(str(entry).split("/")[-2]) for entry in entries]
