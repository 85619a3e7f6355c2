"""docker-compose.yml as Docker Compose v2 reads it: valid, fail-fast on a missing secret, and
started in a safe order with a health check on every long-running service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.processes import REPO_ROOT
from shared import tracing
from shared.api_keys import new_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # a cold compose build: ~6 min

APP_SERVICES = ("gateway", "worker")
DUMMY_PASSWORD = "not-a-real-password"
DUMMY_KEY_SETTINGS = {"ASYNCINFER_API_KEY_ENTRIES": new_key("tenant-a")[1].line(),
                      "ASYNCINFER_STREAM_TOKEN_SECRET": "not-a-real-secret",
                      **{f"CONSUL_{who}_TOKEN": str(uuid.uuid4())
                         for who in ("MANAGEMENT", "GATEWAY", "WORKER", "REDIS", "COUCHBASE")}}


def compose_command() -> list[str]:
    """`docker compose` when the plugin is installed, else the binary scripts/build-compose makes."""
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    built = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-compose")], stdout=subprocess.PIPE, check=False, timeout=900
    )
    if built.returncode != 0:
        pytest.fail("no Docker Compose v2: scripts/build-compose failed (see its output above)")
    return [built.stdout.decode().strip()]


Compose = Callable[..., "subprocess.CompletedProcess[str]"]


def run_compose(command: list[str], *args: str, password: str | None = DUMMY_PASSWORD,
                weights: str | None = "random", unset: str | None = None,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Compose on docker-compose.yml with this Couchbase password and these worker weights (None: unset), the
    gateway's key settings but the one named `unset`, and `extra_env` (none of this process's OTEL_* variables)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("COUCHBASE_", "OTEL_")) and key != "ASYNCINFER_WEIGHTS"
           and key not in DUMMY_KEY_SETTINGS}
    env.update(extra_env or {})
    env.update({key: value for key, value in DUMMY_KEY_SETTINGS.items() if key != unset})
    if password is not None:
        env["COUCHBASE_PASSWORD"] = password
    if weights is not None:
        env["ASYNCINFER_WEIGHTS"] = weights
    return subprocess.run(
        [*command, "--project-directory", str(REPO_ROOT), "-f", str(REPO_ROOT / "docker-compose.yml"), *args],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )


@pytest.fixture(scope="module")
def compose() -> Compose:
    """`compose(*args, password=…, weights=…)`: run_compose with the Compose binary found once."""
    command = compose_command()

    def run(*args: str, **settings: Any) -> subprocess.CompletedProcess[str]:
        return run_compose(command, *args, **settings)

    return run


@pytest.fixture(scope="module")
def config(compose: Compose) -> dict[str, Any]:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_missing_password_stops_compose_before_anything_starts(compose: Compose) -> None:
    result = compose("config", "--quiet", password=None)

    assert result.returncode != 0
    assert "set COUCHBASE_PASSWORD" in result.stderr


@pytest.mark.parametrize("setting", sorted(DUMMY_KEY_SETTINGS))
def test_a_gateway_without_a_key_setting_stops_compose_before_anything_starts(compose: Compose, setting: str) -> None:
    result = compose("config", "--quiet", unset=setting)

    assert result.returncode != 0
    assert f"set {setting}" in result.stderr


def test_a_worker_without_weights_stops_compose_before_anything_starts(compose: Compose) -> None:
    result = compose("config", "--quiet", weights=None)

    assert result.returncode != 0
    assert "set ASYNCINFER_WEIGHTS" in result.stderr


def test_the_worker_gets_the_weights_it_is_given(compose: Compose) -> None:
    result = compose("config", "--format", "json", weights="imagenet")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["services"]["worker"]["environment"]["ASYNCINFER_WEIGHTS"] == "imagenet"


def test_every_long_running_service_has_a_health_check(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) >= {"couchbase", "couchbase-init", "redis", *APP_SERVICES}
    for name, service in services.items():
        if service.get("restart") == "no":  # one-shots: couchbase-init, consul-init, …
            assert service["healthcheck"]["disable"] is True
            continue
        assert service["healthcheck"]["test"], f"{name} has no health check"


def test_the_apps_start_after_couchbase_is_initialised_and_redis_is_healthy(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["couchbase-init"]["depends_on"]["couchbase"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions["couchbase-init"] == "service_completed_successfully"
        assert conditions["couchbase"] == conditions["redis"] == "service_healthy"


def test_the_apps_use_couchbase_with_the_given_credentials(config: dict[str, Any]) -> None:
    services = config["services"]
    init_env = services["couchbase-init"]["environment"]
    assert services["couchbase"]["image"].startswith("couchbase/server:community-")
    for name in APP_SERVICES:
        env = services[name]["environment"]
        # Through the container's sidecar (tests/integration/test_compose_mesh.py).
        assert env["ASYNCINFER_STORE"] == "couchbase://127.0.0.1:21210?network=external"
        assert env["ASYNCINFER_COUCHBASE_PASSWORD"] == DUMMY_PASSWORD == init_env["COUCHBASE_PASSWORD"]
        assert env["ASYNCINFER_COUCHBASE_BUCKET"] == init_env["COUCHBASE_BUCKET"]
        assert env["ASYNCINFER_COUCHBASE_SCOPE"] == init_env["COUCHBASE_SCOPE"]
        assert env["ASYNCINFER_COUCHBASE_COLLECTION"] == init_env["COUCHBASE_COLLECTION"]
        assert env["ASYNCINFER_REDIS_URL"].startswith("redis://127.0.0.1:")
        assert Path(services[name]["build"]["context"]) == REPO_ROOT
    assert services["gateway"]["command"][:2] == ["asyncinfer", "api"]
    assert services["worker"]["command"] == ["asyncinfer", "worker"]


def test_the_apps_send_their_traces_to_jaeger_unless_told_not_to(compose: Compose, config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    assert services["jaeger"]["healthcheck"]["test"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"  # Jaeger's OTLP/HTTP receiver
        assert tracing.wanted(env), f"{name} would not trace"
    off = compose("config", "--format", "json", extra_env={"OTEL_SDK_DISABLED": "true"})
    assert off.returncode == 0, off.stderr
    for name in APP_SERVICES:
        assert not tracing.wanted(json.loads(off.stdout)["services"][name]["environment"])


def test_redis_keeps_the_queue(config: dict[str, Any]) -> None:
    command = " ".join(config["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command


def test_the_init_script_and_the_image_exist() -> None:
    script = REPO_ROOT / "deploy" / "couchbase-init.sh"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    assert "FROM python:3.11-slim" in (REPO_ROOT / "Dockerfile").read_text()
