"""The mesh's doors on a real Consul agent with ACLs on and default deny (consul/agent-dev.hcl): without a
token nothing can be registered or allowed; a service's own token registers that service and its sidecar
only, and changes no intention; only the operator's token changes intentions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import consul
import pytest

from cli.processes import free_port
from shared.errors import MeshUnavailable
from shared.mesh import Upstream, register
from tests.support.consul_agent import ConsulAgent, consul_agent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    with consul_agent(tmp_path_factory.mktemp("consul-acls")) as running:
        yield running


def register_as(client: consul.Consul, name: str) -> None:
    """Register `name` with a sidecar, as shared/mesh.py registers the gateway and the workers."""
    register(client, name=name, service_id=name, address="127.0.0.1", port=free_port(), check=None,
             upstreams=[Upstream("redis", free_port())], sidecar_port=free_port(), check_interval_s=1.0)


def allow(client: consul.Consul, source: str, destination: str) -> None:
    client.connect.intentions.upsert(source, destination, action="allow")


def test_without_a_token_nothing_registers_and_nothing_is_allowed(agent: ConsulAgent) -> None:
    anonymous = agent.client_with(None)

    with pytest.raises(MeshUnavailable, match=r"refused to register worker.*Permission denied"):
        register_as(anonymous, "worker")
    with pytest.raises(consul.ACLPermissionDenied):
        allow(anonymous, "intruder", "redis")
    with pytest.raises(consul.ACLPermissionDenied):
        anonymous.agent.service.register("redis", service_id="redis-impostor", address="127.0.0.1", port=6379)
    assert "worker" not in agent.client.agent.services()
    assert anonymous.catalog.services()[1] == {}  # and the catalog shows it nothing


def test_a_services_token_registers_that_service_and_its_sidecar_only(agent: ConsulAgent) -> None:
    as_worker = agent.client_with(agent.token_for("worker"))

    register_as(as_worker, "worker")
    with pytest.raises(MeshUnavailable, match=r"refused to register gateway.*Permission denied"):
        register_as(as_worker, "gateway")  # a worker's token cannot pose as the gateway
    with pytest.raises(consul.ACLPermissionDenied):
        allow(as_worker, "worker", "couchbase")  # nor open a way the intentions do not give it

    services = agent.client.agent.services()
    assert {"worker", "worker-sidecar-proxy"} <= set(services) and "gateway" not in services
    with pytest.raises(consul.ACLPermissionDenied):
        agent.client_with(agent.token_for("worker")).agent.connect.ca.leaf("gateway")  # nor get its certificate


def test_only_the_operators_token_changes_intentions(agent: ConsulAgent, tmp_path: Path) -> None:
    with pytest.raises(consul.ACLPermissionDenied):
        allow(agent.client_with(agent.token_for("gateway")), "gateway", "couchbase")

    allow(agent.client, "gateway", "couchbase")  # the management token

    assert agent.client.connect.intentions.check("gateway", "couchbase") is True
    (tmp_path / "deny.hcl").write_text('Kind = "service-intentions"\nName = "couchbase"\n'
                                       'Sources = [{ Name = "*", Action = "deny" }]\n')
    agent.write_config_entry(tmp_path / "deny.hcl")  # the consul CLI, with the operator's token
    assert agent.client.connect.intentions.check("gateway", "couchbase") is False
