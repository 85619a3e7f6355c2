"""docker-compose.yml's Consul Connect mesh as Compose v2 reads it: a server, intentions applied at
start, a sidecar in each service's network namespace, and apps that reach Redis and Couchbase
only through their sidecar's upstream ports (the same ports as consul/services/)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cli.consul_dev import CONSUL_VERSION
from cli.processes import REPO_ROOT
from tests.integration.test_compose import compose_command, run_compose
from tests.support.consul_agent import consul_validate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # a cold compose build: ~6 min

# A worker runs its sidecar inside its own container instead, so that it scales
# (tests/integration/test_compose_scale.py); Couchbase's is a container on two networks (below).
SIDECARS = {"gateway-sidecar": "gateway", "redis-sidecar": "redis", "couchbase-sidecar": "couchbase"}
IN_THE_NAMESPACE_OF_THEIR_SERVICE = ("gateway-sidecar", "redis-sidecar")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    result = run_compose(compose_command(), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]  # type: ignore[no-any-return]


def upstream_ports(service: str) -> dict[str, int]:
    """destination → local bind port, as consul/services/<service>.hcl declares them."""
    text = (REPO_ROOT / "consul" / "services" / f"{service}.hcl").read_text()
    pairs = re.findall(r'destination_name\s*=\s*"(\w+)"\s*local_bind_port\s*=\s*(\d+)', text)
    return {name: int(port) for name, port in pairs}


def test_a_consul_server_of_the_pinned_release_starts_first(services: dict[str, Any]) -> None:
    consul = services["consul"]
    assert consul["image"] == f"hashicorp/consul:{CONSUL_VERSION}"
    assert "/asyncinfer/consul" in {volume["target"] for volume in consul["volumes"]}
    assert services["consul-init"]["depends_on"]["consul"]["condition"] == "service_healthy"


def test_consul_init_applies_the_repositorys_intentions_default_deny_first(services: dict[str, Any]) -> None:
    init = services["consul-init"]
    mounts = {mount["target"]: Path(mount["source"]) for mount in init["volumes"]}
    assert mounts == {"/intentions": REPO_ROOT / "consul" / "intentions",
                      "/services": REPO_ROOT / "deploy" / "consul" / "services"}
    script = " ".join(init["command"])
    assert script.index("consul config write /intentions/default-deny.hcl") < script.index("for entry in")
    assert init["restart"] == "no" and init["healthcheck"]["disable"] is True


def test_consul_runs_with_acls_and_each_part_holds_only_its_own_token(services: dict[str, Any]) -> None:
    server = (REPO_ROOT / "deploy" / "consul" / "server.hcl").read_text()
    assert re.search(r'acl\s*{\s*enabled\s*=\s*true\s*default_policy\s*=\s*"deny"', server)
    assert "initial_management" in " ".join(services["consul"]["command"])
    assert services["consul"]["environment"]["CONSUL_MANAGEMENT_TOKEN"]
    init = services["consul-init"]
    script = " ".join(init["command"])
    assert "-service-identity=" in script and "consul acl set-agent-token agent" in script
    assert init["environment"]["CONSUL_HTTP_TOKEN"] == services["consul"]["environment"]["CONSUL_MANAGEMENT_TOKEN"]
    tokens = {name: init["environment"][f"CONSUL_{name.upper()}_TOKEN"] for name in SIDECARS.values()}
    tokens["worker"] = init["environment"]["CONSUL_WORKER_TOKEN"]
    assert len(set(tokens.values()) | {init["environment"]["CONSUL_HTTP_TOKEN"]}) == 5  # all different
    for sidecar, service in SIDECARS.items():
        assert services[sidecar]["environment"]["CONSUL_HTTP_TOKEN"] == tokens[service], sidecar
    for app in ("gateway", "worker"):
        assert services[app]["environment"]["ASYNCINFER_CONSUL_TOKEN"] == tokens[app], app
    assert services["worker"]["environment"]["CONSUL_HTTP_TOKEN"] == tokens["worker"]  # its sidecar process
    for name, spec in services.items():  # the operator's token goes to the server and consul-init only
        if name not in ("consul", "consul-init"):
            assert init["environment"]["CONSUL_HTTP_TOKEN"] not in json.dumps(spec), name


def test_each_service_has_a_sidecar(services: dict[str, Any]) -> None:
    for sidecar, service in SIDECARS.items():
        spec = services[sidecar]
        if sidecar in IN_THE_NAMESPACE_OF_THEIR_SERVICE:
            assert spec["network_mode"] == f"service:{service}"
        assert spec["environment"]["SIDECAR_FOR"] == service
        assert "consul connect proxy -sidecar-for" in " ".join(spec["command"])
        assert spec["healthcheck"]["test"]


def test_the_apps_reach_redis_and_couchbase_only_through_their_upstreams(services: dict[str, Any]) -> None:
    for app in ("gateway", "worker"):
        env = services[app]["environment"]
        ports = upstream_ports(app)
        assert env["ASYNCINFER_MESH"] == "consul" and env["ASYNCINFER_CONSUL_URL"] == "http://consul:8500"
        assert env["ASYNCINFER_REDIS_URL"] == f"redis://127.0.0.1:{ports['redis']}/0"
        assert env["ASYNCINFER_STORE"] == f"couchbase://127.0.0.1:{ports['couchbase']}?network=external"
        assert not any(direct in value for value in env.values() for direct in ("redis:6379", "couchbase:11210"))
        conditions = {dep: spec["condition"] for dep, spec in services[app]["depends_on"].items()}
        assert conditions["consul-init"] == "service_completed_successfully"
        assert conditions["redis-sidecar"] == conditions["couchbase-sidecar"] == "service_healthy"
        assert conditions["couchbase-alternate-address"] == "service_completed_successfully"


def test_redis_listens_on_loopback_only(services: dict[str, Any]) -> None:
    command = services["redis"]["command"]
    assert command[command.index("--bind") + 1] == "127.0.0.1"
    assert "ports" not in services["redis"]


def test_couchbase_advertises_the_upstream_port_as_its_alternate_address(services: dict[str, Any]) -> None:
    step = services["couchbase-alternate-address"]["entrypoint"]
    assert "--hostname=127.0.0.1" in step
    assert f"--ports=kv={upstream_ports('gateway')['couchbase']}" in step


def test_the_compose_agent_config_and_service_definitions_validate(tmp_path: Path) -> None:
    done = consul_validate(tmp_path, REPO_ROOT / "deploy" / "consul",  # the image's entrypoint passes -data-dir
                           REPO_ROOT / "deploy" / "consul" / "services")
    assert done.returncode == 0, done.stdout + done.stderr


def test_couchbases_ports_are_reachable_only_through_its_sidecar(services: dict[str, Any]) -> None:
    """Couchbase is on an internal network of its own, with its sidecar and its set-up steps only; the
    sidecar's listener is registered under a name that exists on the apps' network alone."""
    config = json.loads(run_compose(compose_command(), "config", "--format", "json").stdout)
    on_couchbase_data = {name for name, spec in services.items() if "couchbase-data" in (spec.get("networks") or {})}

    assert config["networks"]["couchbase-data"]["internal"] is True
    assert set(services["couchbase"]["networks"]) == {"couchbase-data"}
    assert not services["couchbase"].get("ports")  # nothing published on the host either
    assert on_couchbase_data == {"couchbase", "couchbase-init", "couchbase-alternate-address", "couchbase-sidecar"}
    for name, spec in services.items():
        assert spec.get("network_mode") != "service:couchbase", name
    sidecar_networks = services["couchbase-sidecar"]["networks"]
    assert sidecar_networks["default"]["aliases"] == ["couchbase-mesh"]
    assert not (sidecar_networks["couchbase-data"] or {}).get("aliases")
    registration = (REPO_ROOT / "deploy" / "consul" / "services" / "couchbase.hcl").read_text()
    assert re.search(r'sidecar_service\s*{\s*address\s*=\s*"couchbase-mesh"', registration)
    assert re.search(r'local_service_address\s*=\s*"couchbase"', registration)
