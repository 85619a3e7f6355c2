"""Mesh settings read as upstreams, the wait for the agent, and no Consul at all without the mesh."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cli.consul_dev import BUILD_SCRIPT, CONSUL_VERSION
from cli.processes import REPO_ROOT, free_port
from shared.config import Settings
from shared.errors import MeshUnavailable
from shared.mesh import Upstream, agent_client, sidecar_definition, upstreams_for, wait_for_agent


def test_the_redis_url_port_is_the_redis_upstream() -> None:
    settings = Settings(mesh="consul", redis_url="redis://127.0.0.1:16379/0")
    assert upstreams_for(settings) == [Upstream("redis", 16379)]


def test_a_redis_url_that_is_not_a_local_upstream_is_refused() -> None:
    with pytest.raises(ValueError, match="ASYNCINFER_REDIS_URL"):
        upstreams_for(Settings(mesh="consul", redis_url="redis://redis:6379/0"))


def test_couchbase_goes_through_its_upstream_only_with_alternate_addresses() -> None:
    settings = Settings(mesh="consul", redis_url="redis://127.0.0.1:16380/0",
                        store="couchbase://127.0.0.1:21210?network=external")
    assert upstreams_for(settings) == [Upstream("redis", 16380), Upstream("couchbase", 21210)]
    with pytest.raises(ValueError, match="network=external"):
        upstreams_for(settings.model_copy(update={"store": "couchbase://127.0.0.1:21210"}))


def test_a_sidecar_without_a_fixed_port_keeps_consuls_defaults() -> None:
    sidecar = sidecar_definition("worker", [Upstream("redis", 16380)], "127.0.0.1", 0, 1.0)["SidecarService"]
    assert "Port" not in sidecar and "Checks" not in sidecar
    assert sidecar["Proxy"]["Upstreams"] == [{"DestinationName": "redis", "LocalBindPort": 16380}]


def test_waiting_for_an_absent_agent_says_what_it_waits_for(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING), pytest.raises(MeshUnavailable, match=f"no Consul agent answered at {url}"):
        wait_for_agent(agent_client(url, timeout_s=0.2), url, wait_s=0.5)
    assert f"waiting for the Consul agent at {url}" in caplog.text


def test_without_the_mesh_nothing_imports_consul(tmp_path: Path) -> None:
    # A fresh interpreter: the gateway runs its lifespan and the worker entry point is imported.
    script = """
import sys
from fastapi.testclient import TestClient
from api.main import create_app
from shared.config import Settings
import cli.up, workers.worker
settings = Settings(redis_url="redis://127.0.0.1:1/0", store="sqlite:///" + sys.argv[1])
with TestClient(create_app(settings)) as client:
    assert client.get("/healthz").status_code == 200
    assert "consul" not in client.get("/readyz").text
leaked = sorted(name for name in sys.modules if name.split(".")[0] == "consul" or name == "shared.mesh")
assert not leaked, leaked
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "jobs.db")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_launcher_runs_the_consul_release_the_build_script_pins() -> None:
    assert f"CONSUL_VERSION={CONSUL_VERSION}\n" in BUILD_SCRIPT.read_text()
