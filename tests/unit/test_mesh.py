"""Mesh settings read as upstreams, the wait for the agent, and no Consul at all without the mesh."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cli.consul_dev import BUILD_SCRIPT, CONSUL_VERSION
from cli.processes import REPO_ROOT, free_port
from shared import mesh
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


class FakeAgent:
    """Just enough of py-consul's client for join_as_worker: answers, and records registrations."""

    def __init__(self) -> None:
        self.registrations: list[dict[str, Any]] = []
        self.agent = SimpleNamespace(service=SimpleNamespace(register=self._register))
        self.status = SimpleNamespace(leader=lambda: "127.0.0.1:8300")

    def _register(self, name: str, **fields: Any) -> None:
        self.registrations.append({"name": name, **fields})


def test_percent_h_in_the_id_and_address_is_this_hosts_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "3f2a9c1d7b4e")
    monkeypatch.setenv("ASYNCINFER_CONSUL_SERVICE_ID", "worker-%h")
    monkeypatch.setenv("ASYNCINFER_CONSUL_SERVICE_ADDRESS", "%h")
    settings = Settings()
    assert settings.consul_service_id == "worker-3f2a9c1d7b4e"
    assert settings.consul_service_address == "3f2a9c1d7b4e"
    assert settings.with_overrides(port=8001).consul_service_id == "worker-3f2a9c1d7b4e"
    # Without %h, and empty (the service name), nothing changes.
    monkeypatch.delenv("ASYNCINFER_CONSUL_SERVICE_ID")
    monkeypatch.delenv("ASYNCINFER_CONSUL_SERVICE_ADDRESS")
    assert Settings(consul_service_id="worker-2").consul_service_id == "worker-2"
    assert Settings().consul_service_id == "" and Settings().consul_service_address == ""


def test_replicas_with_one_setting_register_one_id_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # docker compose up --scale worker=2: the same environment in two containers, two hostnames.
    fake = FakeAgent()
    monkeypatch.setattr(mesh, "agent_client", lambda url, timeout_s=mesh.AGENT_TIMEOUT_S, token="": fake)
    for hostname in ("3f2a9c1d7b4e", "8b0e6d5a1c2f"):
        monkeypatch.setattr(socket, "gethostname", lambda hostname=hostname: hostname)
        settings = Settings(mesh="consul", redis_url="redis://127.0.0.1:16380/0", consul_service_id="worker-%h",
                            consul_service_address="%h", consul_sidecar_port=21003)
        assert mesh.join_as_worker(settings).service_id == f"worker-{hostname}"
    first, second = fake.registrations
    assert first["name"] == second["name"] == mesh.WORKER_SERVICE  # one identity for the intentions
    assert (first["service_id"], second["service_id"]) == ("worker-3f2a9c1d7b4e", "worker-8b0e6d5a1c2f")
    for registration, hostname in ((first, "3f2a9c1d7b4e"), (second, "8b0e6d5a1c2f")):
        assert registration["address"] == hostname
        checks = registration["connect"]["SidecarService"]["Checks"]
        assert {"Name": "sidecar listening", "TCP": f"{hostname}:21003", "Interval": "10s"} in checks
        assert {"Name": f"aliasing worker-{hostname}", "AliasService": f"worker-{hostname}"} in checks


def test_without_an_id_a_worker_registers_as_its_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeAgent()
    monkeypatch.setattr(mesh, "agent_client", lambda url, timeout_s=mesh.AGENT_TIMEOUT_S, token="": fake)
    registration = mesh.join_as_worker(Settings(mesh="consul", redis_url="redis://127.0.0.1:16380/0"))
    assert registration.service_id == fake.registrations[0]["service_id"] == "worker"
