"""Every start-up failure of the `asyncinfer` command is one line on stderr and exit code 2, never a
traceback: each cause is tried on the real command, in a process of its own."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.processes import EXIT_STARTUP, REPO_ROOT, asyncinfer_command, free_port
from tests.support.pipeline import clean_env, fresh_redis_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def run(*args: str, cwd: Path, timeout_s: float = 180, **settings: str) -> str:
    """Run `asyncinfer <args>` with these settings; assert it refused to start; its message."""
    env = clean_env()
    env.update(TF_CPP_MIN_LOG_LEVEL="2", **settings)
    done = subprocess.run(asyncinfer_command(*args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    assert done.returncode == EXIT_STARTUP, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"asyncinfer {args[0]}: "), done.stderr
    return message


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_worker_without_imagenet_weights_refuses_to_start(tmp_path: Path) -> None:
    env = clean_env()
    env["KERAS_HOME"] = str(tmp_path)

    result = subprocess.run(asyncinfer_command("worker"), cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("asyncinfer worker: ImageNet weights not found at ")
    assert "ASYNCINFER_WEIGHTS" in last_line


def test_a_weights_file_that_is_not_there(tmp_path: Path, redis_url: str) -> None:
    message = run("worker", cwd=tmp_path, ASYNCINFER_WEIGHTS=str(tmp_path / "nope.h5"),
                  ASYNCINFER_REDIS_URL=fresh_redis_database(redis_url), ASYNCINFER_STORE=f"sqlite:///{tmp_path / 'jobs.db'}")
    assert message.endswith(f"ASYNCINFER_WEIGHTS={tmp_path / 'nope.h5'}: no such file")


def test_an_unknown_runtime(tmp_path: Path) -> None:
    message = run("worker", cwd=tmp_path, ASYNCINFER_RUNTIME="tensorrt")
    assert message.startswith("asyncinfer worker: ASYNCINFER_RUNTIME: Input should be 'keras' or 'onnxruntime'")


def test_a_keras_backend_that_is_not_installed(tmp_path: Path, redis_url: str) -> None:
    message = run("worker", cwd=tmp_path, KERAS_BACKEND="jax", ASYNCINFER_WEIGHTS="random",
                  ASYNCINFER_REDIS_URL=fresh_redis_database(redis_url), ASYNCINFER_STORE=f"sqlite:///{tmp_path / 'jobs.db'}")
    assert "KERAS_BACKEND=jax" in message and "unset KERAS_BACKEND" in message


def test_a_busy_metrics_port(tmp_path: Path, redis_url: str, busy_port: int) -> None:
    message = run("worker", cwd=tmp_path, ASYNCINFER_WEIGHTS="random", ASYNCINFER_WORKER_METRICS_PORT=str(busy_port),
                  ASYNCINFER_REDIS_URL=fresh_redis_database(redis_url), ASYNCINFER_STORE=f"sqlite:///{tmp_path / 'jobs.db'}")
    assert f"ASYNCINFER_WORKER_METRICS_PORT={busy_port}: cannot listen on 127.0.0.1:{busy_port}" in message


def test_an_unreachable_redis(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    message = run("worker", cwd=tmp_path, timeout_s=60, ASYNCINFER_WEIGHTS="random", ASYNCINFER_REDIS_URL=url,
                  ASYNCINFER_REDIS_WAIT_S="1", ASYNCINFER_STORE=f"sqlite:///{tmp_path / 'jobs.db'}")
    assert message.startswith(f"asyncinfer worker: no Redis answered at ASYNCINFER_REDIS_URL={url} within 1 s")


@pytest.mark.parametrize("command", ["api", "worker"])
def test_a_bad_store_url(tmp_path: Path, command: str) -> None:
    message = run(command, cwd=tmp_path, timeout_s=60, ASYNCINFER_STORE="postgres://db/jobs")
    assert message == (f"asyncinfer {command}: ASYNCINFER_STORE: 'postgres://db/jobs': use sqlite:///path or "
                       "couchbase://host (couchbases:// with TLS)")


def test_a_store_file_that_cannot_be_opened(tmp_path: Path, redis_url: str) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory would be")
    store = f"sqlite:///{blocker / 'jobs.db'}"
    message = run("api", cwd=tmp_path, timeout_s=60, ASYNCINFER_STORE=store, ASYNCINFER_REDIS_URL=fresh_redis_database(redis_url))
    assert message.startswith(f"asyncinfer api: ASYNCINFER_STORE={store}: cannot open the SQLite file")


def test_a_production_gateway_without_api_keys(tmp_path: Path, redis_url: str) -> None:
    message = run("api", cwd=tmp_path, ASYNCINFER_ENVIRONMENT="production",
                  ASYNCINFER_REDIS_URL=fresh_redis_database(redis_url), ASYNCINFER_STORE=f"sqlite:///{tmp_path / 'jobs.db'}")
    assert message == ("asyncinfer api: ASYNCINFER_ENVIRONMENT=production and no API keys (ASYNCINFER_API_KEYS_FILE "
                       "or ASYNCINFER_API_KEY_ENTRIES): anyone could submit and read jobs; set keys, or "
                       "ASYNCINFER_AUTH=none behind a proxy that authenticates")


@pytest.mark.parametrize("command", ["api", "worker"])
def test_production_mesh_without_an_acl_token(tmp_path: Path, command: str) -> None:
    message = run(command, cwd=tmp_path, ASYNCINFER_ENVIRONMENT="production", ASYNCINFER_MESH="consul")
    assert message == (f"asyncinfer {command}: settings: ASYNCINFER_MESH=consul in production needs "
                       "ASYNCINFER_CONSUL_TOKEN: a "
                       "Consul ACL token with this service's identity (the agent must run with ACLs, default deny)")


@pytest.mark.parametrize("command", ["api", "worker"])
def test_production_couchbase_without_tls(tmp_path: Path, command: str) -> None:
    message = run(command, cwd=tmp_path, ASYNCINFER_ENVIRONMENT="production",
                  ASYNCINFER_STORE="couchbase://db.example.com", ASYNCINFER_COUCHBASE_PASSWORD="not-a-placeholder")
    assert "ASYNCINFER_STORE=couchbase://db.example.com reaches db.example.com without TLS; use couchbases://" in message
