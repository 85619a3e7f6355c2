"""Fixtures that start real services: Redis, the gateway, Celery workers with the Keras model."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cli.pipeline import LocalPipeline
from cli.processes import free_port
from cli.redis_server import start_redis
from tests.support.pipeline import TEST_REDIS_DATABASES, fresh_redis_database, pipeline_env

PipelineFactory = Callable[..., LocalPipeline]

# A suite started in the background by a shell without job control (`cmd &`, nohup in a script)
# inherits SIGINT ignored, and so would every process it starts: Ctrl-C tests would then time out.
# A Python handler is not inherited across exec, so the children get SIGINT's default again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server started for the test session (no database number)."""
    url = f"redis://127.0.0.1:{free_port()}"
    process = start_redis(url + "/0", tmp_path_factory.mktemp("redis"), databases=TEST_REDIS_DATABASES)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def own_redis(redis_url: str) -> redis.Redis:
    """A client of a Redis database of this test's own, empty."""
    return redis.Redis.from_url(fresh_redis_database(redis_url))


def _start(redis_url: str, workdir: Path, workers: int, gateway: bool, env: dict[str, str]) -> LocalPipeline:
    pipeline = LocalPipeline(env=pipeline_env(redis_url, workdir, **env), workdir=workdir, port=free_port())
    pipeline.start(workers=workers, gateway=gateway)
    return pipeline


@pytest.fixture(scope="session")
def pipeline(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    """One gateway and one worker shared by the tests that do not disturb them."""
    started = _start(fresh_redis_database(redis_url), tmp_path_factory.mktemp("pipeline"), 1, True, {})
    yield started
    started.stop()


@contextlib.contextmanager
def _pipelines(redis_url: str, workdir: Path) -> Iterator[PipelineFactory]:
    """Start pipelines, each with its own Redis database; stop them all on exit."""
    started: list[LocalPipeline] = []

    def factory(*, workers: int = 1, gateway: bool = True, **env: str) -> LocalPipeline:
        started.append(_start(fresh_redis_database(redis_url), workdir, workers, gateway, env))
        return started[-1]

    try:
        yield factory
    finally:
        for item in started:
            item.stop()


@pytest.fixture
def make_pipeline(redis_url: str, tmp_path: Path) -> Iterator[PipelineFactory]:
    """A pipeline of this test's own (own store, own Redis database), stopped at teardown."""
    with _pipelines(redis_url, tmp_path) as factory:
        yield factory


@pytest.fixture(scope="module")
def make_module_pipeline(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineFactory]:
    """As make_pipeline, for a module whose tests share one pipeline, stopped after its last test."""
    with _pipelines(redis_url, tmp_path_factory.mktemp("module-pipeline")) as factory:
        yield factory


@pytest.fixture
def client(pipeline: LocalPipeline) -> Iterator[httpx.Client]:
    """An HTTP client for the gateway of `pipeline` (a module's own `pipeline` fixture applies)."""
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        yield client
