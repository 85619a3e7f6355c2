"""The Consul Connect path every inter-service link takes in production, proven with real parts.

A dev agent, Debian's redis-server, and two built-in sidecar proxies: one for "redis" (the
destination) and one for "gateway" (the source, with an upstream listener for redis). The
intentions are the repository's own files (consul/intentions/), applied as an operator would.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from cli.consul_dev import AGENT_CONFIG, INTENTIONS_DIR
from cli.processes import REPO_ROOT, free_ports
from tests.support.consul_agent import (
    ConsulAgent,
    SidecarProxy,
    consul_agent,
    consul_validate,
    register_with_sidecar,
    sidecar_proxy,
    wait_for,
)

# func_only: the module fixtures may build consul first (minutes); they have their own deadlines.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60, func_only=True)]

# An intention change reaches the single dev agent in milliseconds; allow for a slow machine.
INTENTION_PROPAGATION_S = 10.0
IO_TIMEOUT_S = 5.0


@dataclass
class Mesh:
    agent: ConsulAgent
    redis_sidecar: SidecarProxy
    gateway_sidecar: SidecarProxy

    @property
    def redis_upstream_port(self) -> int:
        """The plain local port on which the gateway's sidecar carries connections to redis."""
        return self.gateway_sidecar.upstream_ports["redis"]


@pytest.fixture(scope="module")
def agent() -> Iterator[ConsulAgent]:
    with consul_agent() as started:
        started.apply_intentions()
        yield started


@pytest.fixture(scope="module")
def mesh(agent: ConsulAgent, redis_url: str) -> Iterator[Mesh]:
    redis_port = urlparse(redis_url).port
    assert redis_port is not None
    register_with_sidecar(agent, "redis", redis_port)
    # No gateway process runs here: only its sidecar, to carry the test's connections.
    gateway_port, upstream_port = free_ports(2)
    register_with_sidecar(agent, "gateway", gateway_port, upstreams={"redis": upstream_port}, check_tcp=False)
    with sidecar_proxy(agent, "redis") as redis_sidecar, sidecar_proxy(agent, "gateway") as gateway_sidecar:
        agent.wait_mesh_healthy("redis")
        started = Mesh(agent, redis_sidecar, gateway_sidecar)
        # The upstream resolves redis through the agent's cache; wait for the first answer.
        wait_for(
            "a PING through the gateway's upstream", lambda: ping_new(started.redis_upstream_port), 15.0, 0.1
        )
        yield started


def ping(conn: socket.socket) -> bool:
    """PING on an open connection; False once the mesh has closed or refused it.

    Raw sockets, not redis-py: its client retries and reconnects on its own, which would
    hide a closed connection and slow every failing probe down.
    """
    try:
        conn.sendall(b"PING\r\n")
        return conn.recv(64) == b"+PONG\r\n"
    except OSError:
        return False


def ping_new(port: int) -> bool:
    """PING over a new connection to 127.0.0.1:port (a local upstream listener)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as conn:
            return ping(conn)
    except OSError:
        return False


def tls_context(agent: ConsulAgent, service: str | None) -> ssl.SSLContext:
    """A client context that trusts the mesh CA and presents `service`'s leaf (if any).

    Sidecar certificates carry only a SPIFFE URI, no DNS name, so hostname checks are off;
    the chain is still verified against the Connect CA roots.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=agent.roots_pem())
    if service is not None:
        leaf = agent.leaf(service)
        with tempfile.TemporaryDirectory() as directory:
            cert, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
            cert.write_text(leaf["CertPEM"])
            key.write_text(leaf["PrivateKeyPEM"])
            context.load_cert_chain(cert, key)
    return context


def raw_redis_ping(port: int, context: ssl.SSLContext | None) -> bytes:
    """Send PING straight to a sidecar's public listener; return what comes back.

    An empty answer means the peer closed the connection. TLS refusals (an alert after the
    handshake, since TLS 1.3 clients finish before the server checks their certificate)
    and resets are returned as b"" too: all that matters is whether Redis answered.
    """
    conn = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
    try:
        if context is not None:
            conn = context.wrap_socket(conn)  # takes over the plain socket
        conn.sendall(b"PING\r\n")
        return conn.recv(64)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        conn.close()


def test_redis_answers_through_the_gateway_upstream(mesh: Mesh) -> None:
    client = redis.Redis(port=mesh.redis_upstream_port, socket_timeout=IO_TIMEOUT_S)
    try:
        assert client.ping()
        client.set("mesh:probe", b"through the sidecars", ex=60)
        assert client.get("mesh:probe") == b"through the sidecars"
    finally:
        client.close()


def test_plain_tcp_to_the_public_listener_gets_no_redis_answer(mesh: Mesh) -> None:
    assert raw_redis_ping(mesh.redis_sidecar.public_port, None) == b""


def test_tls_without_a_mesh_certificate_is_refused(mesh: Mesh) -> None:
    assert raw_redis_ping(mesh.redis_sidecar.public_port, tls_context(mesh.agent, None)) == b""


def test_a_genuine_certificate_for_an_unallowed_service_is_refused(mesh: Mesh) -> None:
    port = mesh.redis_sidecar.public_port
    # Control: the same client code with an allowed identity reaches Redis, so the refusal
    # below is about identity, not about how the client speaks TLS.
    assert raw_redis_ping(port, tls_context(mesh.agent, "worker")) == b"+PONG\r\n"

    assert raw_redis_ping(port, tls_context(mesh.agent, "intruder")) == b""
    wait_for(
        "the redis sidecar to log the intruder's denial",
        lambda: "Matched L4 intention: default/* => default/*" in mesh.redis_sidecar.log(),
        IO_TIMEOUT_S,
    )


def test_deny_blocks_new_connections_within_seconds_and_allow_restores(mesh: Mesh) -> None:
    agent, port = mesh.agent, mesh.redis_upstream_port
    try:
        agent.set_intention("gateway", "redis", "deny")
        wait_for("gateway -> redis to be denied", lambda: not ping_new(port), INTENTION_PROPAGATION_S)

        agent.set_intention("gateway", "redis", "allow")
        wait_for("gateway -> redis to be allowed again", lambda: ping_new(port), INTENTION_PROPAGATION_S)
    finally:
        agent.write_config_entry(INTENTIONS_DIR / "redis.hcl")


def test_deny_does_not_cut_connections_already_open(mesh: Mesh) -> None:
    """The built-in proxy authorizes once, in the TLS handshake, and never again.

    So a deny stops new connections only: a long-lived client connection (Celery's broker
    link, the gateway's pub/sub subscription) keeps working until it reconnects. Revoking
    access at once means restarting the client or its sidecar as well.
    """
    agent, port = mesh.agent, mesh.redis_upstream_port
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as held:
        try:
            assert ping(held)
            agent.set_intention("gateway", "redis", "deny")
            wait_for("gateway -> redis to be denied", lambda: not ping_new(port), INTENTION_PROPAGATION_S)
            time.sleep(1.0)  # give any re-check a chance to act before asserting it did not
            assert ping(held)
        finally:
            agent.write_config_entry(INTENTIONS_DIR / "redis.hcl")


@pytest.mark.parametrize(
    ("source", "destination", "allowed"),
    [
        ("gateway", "redis", True),
        ("gateway", "couchbase", True),
        ("worker", "redis", True),
        ("worker", "couchbase", True),
        ("intruder", "redis", False),
        ("intruder", "couchbase", False),
        ("gateway", "worker", False),
        ("worker", "gateway", False),
        ("redis", "couchbase", False),
    ],
)
def test_repository_intentions_allow_exactly_the_four_links(
    agent: ConsulAgent, source: str, destination: str, allowed: bool
) -> None:
    assert agent.client.connect.intentions.check(source, destination) is allowed


def test_repository_agent_config_and_service_definitions_validate(tmp_path: Path) -> None:
    done = consul_validate(tmp_path, AGENT_CONFIG, REPO_ROOT / "consul" / "services", dev=True)  # run with -dev
    assert done.returncode == 0, done.stdout + done.stderr
