"""The real pipeline with ASYNCINFER_MESH=consul: gateway and worker reach Redis only through sidecars.

A dev agent with the repository's intentions, a redis-server of this module's own, and the
built-in proxy as sidecar for Redis, the gateway and the worker. The gateway and the worker
register themselves (shared/mesh.py); their Redis URLs name their sidecars' upstream ports,
never Redis's own port, and the tests check on both ends of every connection that this holds.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from cli.consul_dev import INTENTIONS_DIR
from cli.pipeline import LocalPipeline
from cli.processes import free_ports
from cli.redis_server import start_redis
from tests.support import images
from tests.support.consul_agent import (
    ConsulAgent,
    SidecarProxy,
    consul_agent,
    register_with_sidecar,
    sidecar_proxy,
    wait_for,
)
from tests.support.http import stream_events, submit
from tests.support.pipeline import pipeline_env

# func_only: the module fixture starts an agent, Redis, TensorFlow and three proxies (a minute).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120, func_only=True)]

# A short TTL so a frozen worker turns critical fast; refreshed every third of it.
WORKER_TTL_S = 3
# Intentions reach the single dev agent in milliseconds; /readyz must follow "within seconds".
READINESS_FLIP_S = 10.0
REGISTRATION_S = 60.0


@dataclass
class MeshPipeline:
    agent: ConsulAgent
    redis_port: int
    redis_sidecar: SidecarProxy
    gateway: LocalPipeline
    gateway_sidecar: SidecarProxy
    worker: LocalPipeline
    worker_sidecar: SidecarProxy

    @property
    def gateway_pid(self) -> int:
        assert self.gateway.gateway is not None
        return self.gateway.gateway.pid

    @property
    def worker_pid(self) -> int:
        return self.worker.workers[0].pid


def registered(agent: ConsulAgent, service_id: str) -> bool:
    return service_id in agent.client.agent.services()


def check_status(agent: ConsulAgent, service_id: str) -> str:
    return str(agent.client.agent.checks()[f"service:{service_id}"]["Status"])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshPipeline]:
    workdir = tmp_path_factory.mktemp("mesh")
    with ExitStack() as stack:
        agent = stack.enter_context(consul_agent(workdir))
        agent.apply_intentions()

        redis_port, gateway_upstream, worker_upstream, http_port, gateway_sidecar, worker_sidecar = free_ports(6)
        redis_server = start_redis(f"redis://127.0.0.1:{redis_port}/0", workdir / "redis")
        stack.callback(redis_server.wait, 10)
        stack.callback(redis_server.terminate)
        register_with_sidecar(agent, "redis", redis_port)
        redis_sidecar = stack.enter_context(sidecar_proxy(agent, "redis"))

        def mesh_env(service: str, upstream_port: int, sidecar_port: int) -> dict[str, str]:
            # Only the upstream port: nothing in the services' environment names Redis's own port.
            return pipeline_env(
                f"redis://127.0.0.1:{upstream_port}/0",
                workdir,
                ASYNCINFER_MESH="consul",
                ASYNCINFER_CONSUL_URL=agent.url,
                ASYNCINFER_CONSUL_TOKEN=agent.token_for(service),  # its own identity only
                ASYNCINFER_CONSUL_SIDECAR_PORT=str(sidecar_port),
                ASYNCINFER_CONSUL_CHECK_INTERVAL_S="1",
                ASYNCINFER_CONSUL_WORKER_TTL_S=str(WORKER_TTL_S),
            )

        gateway = LocalPipeline(env=mesh_env("gateway", gateway_upstream, gateway_sidecar), workdir=workdir,
                                port=http_port)
        worker = LocalPipeline(env=mesh_env("worker", worker_upstream, worker_sidecar), workdir=workdir, port=0)
        stack.callback(gateway.stop)
        stack.callback(worker.stop)

        # Each sidecar can start only once its service has registered it.
        worker.start_worker(wait_ready=False)
        wait_for("the worker's registration", lambda: registered(agent, "worker-sidecar-proxy"), REGISTRATION_S, 0.2)
        worker_proxy = stack.enter_context(sidecar_proxy(agent, "worker"))
        gateway.start_gateway()
        gateway_proxy = stack.enter_context(sidecar_proxy(agent, "gateway"))
        agent.wait_mesh_healthy("redis")
        worker.wait_worker_ready(worker.workers[0])
        yield MeshPipeline(agent, redis_port, redis_sidecar, gateway, gateway_proxy, worker, worker_proxy)


def established_tcp(pid: int) -> set[tuple[int, int]]:
    """(local port, remote port) of each established IPv4 TCP connection `pid` holds."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            sockets.add(os.readlink(fd))
        except OSError:  # closed since the listing
            continue
    connections = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and f"socket:[{inode}]" in sockets:  # 01: ESTABLISHED
            connections.add((int(local.split(":")[1], 16), int(remote.split(":")[1], 16)))
    return connections


def redis_clients_all_come_from_the_sidecar(mesh: MeshPipeline) -> bool:
    """True when every client Redis serves (but this probe) is a connection of Redis's sidecar.

    Clients that never sent a command are left out: the agent's TCP health check connects
    and hangs up every second.
    """
    with redis.Redis(port=mesh.redis_port) as probe:
        own_id = probe.client_id()
        clients = [c for c in probe.client_list() if int(c["id"]) != own_id and c["cmd"] != "NULL"]
    sidecar_ports = {local for local, remote in established_tcp(mesh.redis_sidecar.process.pid)
                     if remote == mesh.redis_port}
    client_ports = {int(c["addr"].rsplit(":", 1)[1]) for c in clients}
    return bool(client_ports) and client_ports <= sidecar_ports


def test_a_job_reaches_its_terminal_event_with_every_redis_link_through_the_sidecars(mesh: MeshPipeline) -> None:
    for pipeline in (mesh.gateway, mesh.worker):
        assert str(mesh.redis_port) not in " ".join(pipeline.env.values())

    with httpx.Client(base_url=mesh.gateway.url, timeout=60) as client:
        job = submit(client, images.jpeg(seed=71))
        events = stream_events(client, f"/v1/jobs/{job['id']}/events")

    assert events[-1][2]["status"] == "succeeded", mesh.worker.logs("worker0")
    # The other end of each connection: the gateway and the worker talk only to their upstream
    # listeners, never to Redis's port; Redis serves only its sidecar.
    for pid, upstream in ((mesh.gateway_pid, mesh.gateway_sidecar.upstream_ports["redis"]),
                          (mesh.worker_pid, mesh.worker_sidecar.upstream_ports["redis"])):
        remotes = {remote for _, remote in established_tcp(pid)}
        assert upstream in remotes and mesh.redis_port not in remotes
    wait_for("a snapshot of Redis clients, all from its sidecar",
             lambda: redis_clients_all_come_from_the_sidecar(mesh), 10.0, 0.2)


def test_gateway_and_worker_are_in_the_catalog_with_their_sidecars_and_checks(mesh: MeshPipeline) -> None:
    agent = mesh.agent
    services = agent.client.catalog.services()[1]
    assert {"gateway", "gateway-sidecar-proxy", "worker", "worker-sidecar-proxy", "redis"} <= set(services)
    sidecar = agent.client.agent.services()["gateway-sidecar-proxy"]
    assert sidecar["Proxy"]["DestinationServiceID"] == "gateway"
    assert {u["DestinationName"] for u in sidecar["Proxy"]["Upstreams"]} == {"redis"}  # SQLite: no couchbase
    for service_id in ("gateway", "worker"):
        wait_for(f"{service_id}'s check to pass", lambda s=service_id: check_status(agent, s) == "passing", 15.0, 0.2)
    assert agent.client.agent.checks()["service:worker"]["Type"] == "ttl"
    assert agent.client.agent.checks()["service:gateway"]["Type"] == "http"


def test_denying_gateway_to_redis_makes_readyz_name_redis_within_seconds_and_allowing_recovers(
    mesh: MeshPipeline,
) -> None:
    agent, gateway = mesh.agent, mesh.gateway
    process = gateway.gateway
    assert process is not None
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"redis": "ok", "store": "ok", "consul": "ok"}
        try:
            agent.set_intention("gateway", "redis", "deny")
            started = time.monotonic()
            denied = wait_for("/readyz to report redis", lambda: _not_ready(client), READINESS_FLIP_S, 0.2)
            took_s = time.monotonic() - started
            assert denied.headers["x-failing-dependencies"] == "redis"
            assert "redis unreachable" in denied.json()["detail"]
            assert took_s < READINESS_FLIP_S
        finally:
            agent.write_config_entry(INTENTIONS_DIR / "redis.hcl")  # the repository's allow
        wait_for("/readyz to recover", lambda: client.get("/readyz").status_code == 200, READINESS_FLIP_S, 0.2)
    assert process.poll() is None and gateway.gateway is process  # nothing was restarted


def _not_ready(client: httpx.Client) -> httpx.Response | None:
    response = client.get("/readyz")
    return response if response.status_code == 503 else None


def test_a_worker_that_stops_consuming_turns_its_check_critical(mesh: MeshPipeline) -> None:
    agent = mesh.agent
    wait_for("the worker's check to pass", lambda: check_status(agent, "worker") == "passing", 15.0, 0.2)
    os.kill(mesh.worker_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        wait_for("the frozen worker's check to turn critical",
                 lambda: check_status(agent, "worker") == "critical", WORKER_TTL_S + 5.0, 0.2)
        assert time.monotonic() - started >= WORKER_TTL_S / 3  # the TTL ran out; it was not already critical
    finally:
        os.kill(mesh.worker_pid, signal.SIGCONT)
    wait_for("the resumed worker's check to pass", lambda: check_status(agent, "worker") == "passing",
             WORKER_TTL_S + 5.0, 0.2)


def test_a_clean_shutdown_deregisters_gateway_worker_and_sidecars(mesh: MeshPipeline) -> None:
    """Last in this module: it stops the services the other tests use."""
    agent = mesh.agent
    mesh.gateway.stop()
    mesh.worker.stop()
    assert "Application shutdown complete" in mesh.gateway.logs("gateway")  # the lifespan ran to its end

    def gone() -> bool:
        local = agent.client.agent.services()
        catalog = agent.client.catalog.services()[1]
        names = {"gateway", "gateway-sidecar-proxy", "worker", "worker-sidecar-proxy"}
        return not (names & set(local)) and not (names & set(catalog))

    wait_for("gateway, worker and their sidecars to leave the catalog", gone, 10.0, 0.2)
    assert "redis" in agent.client.catalog.services()[1]
    assert "deregistered worker" in mesh.worker.logs("worker0")
