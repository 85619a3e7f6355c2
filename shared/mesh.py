"""Joining the Consul Connect mesh (ASYNCINFER_MESH=consul): register with the local agent, with a sidecar.

Imported only when the mesh is on, so a deployment without Consul needs none of this.

The gateway and each worker register themselves, together with a sidecar proxy whose upstreams
are the local ports the settings already point at: the port of ASYNCINFER_REDIS_URL becomes the
redis upstream's local bind port, and with a Couchbase store the port of ASYNCINFER_STORE the
couchbase upstream's. The application then connects to 127.0.0.1:<that port> as to any Redis;
the sidecar (started for the registration, e.g. `consul connect proxy -sidecar-for gateway`)
carries each connection over mTLS to the destination's sidecar, which asks the intentions in
consul/intentions/ whether this service may connect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import consul
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.config import Settings
from shared.errors import MeshUnavailable

log = logging.getLogger(__name__)

# Service names are identities: the mesh certificates carry them and the intentions in
# consul/intentions/ allow or deny by them, so they are fixed, unlike the registration ids.
GATEWAY_SERVICE = "gateway"
WORKER_SERVICE = "worker"
REDIS_SERVICE = "redis"
COUCHBASE_SERVICE = "couchbase"

# Agent calls are local and small; a stuck agent must not stall start-up, readiness or the
# worker's consumer loop for long.
AGENT_TIMEOUT_S = 2.0

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_AGENT_ERRORS = (consul.ConsulException, requests.RequestException, OSError)


@dataclass(frozen=True)
class Upstream:
    """A destination this process reaches through its sidecar, on a local port."""

    destination: str
    local_bind_port: int


def upstreams_for(settings: Settings) -> list[Upstream]:
    """The sidecar's upstreams, read from the URLs the application connects to.

    Raises ValueError when a URL cannot be a sidecar's local listener, so a process never
    registers with the mesh while it would reach Redis or Couchbase directly.
    """
    redis = urlparse(settings.redis_url)
    if redis.hostname not in _LOOPBACK_HOSTS or not redis.port:
        raise ValueError(
            f"ASYNCINFER_REDIS_URL={settings.redis_url!r}: with ASYNCINFER_MESH=consul it must name the "
            "sidecar's local redis upstream, e.g. redis://127.0.0.1:16379/0"
        )
    upstreams = [Upstream(REDIS_SERVICE, redis.port)]
    if settings.store_kind == "couchbase":
        store = urlparse(settings.store)
        if store.hostname not in _LOOPBACK_HOSTS or not store.port or "external" not in parse_qs(store.query).get(
            "network", []
        ):
            # The cluster map names node addresses; only the node's alternate address (the
            # upstream's port on 127.0.0.1) keeps the SDK on the sidecar. See consul/services/couchbase.hcl.
            raise ValueError(
                f"ASYNCINFER_STORE={settings.store!r}: with ASYNCINFER_MESH=consul it must name the sidecar's "
                "local couchbase upstream with alternate addresses, e.g. couchbase://127.0.0.1:21210?network=external"
            )
        upstreams.append(Upstream(COUCHBASE_SERVICE, store.port))
    return upstreams


def agent_client(consul_url: str, timeout_s: float = AGENT_TIMEOUT_S, token: str = "") -> consul.Consul:
    """A client of the agent at `consul_url`, sending `token` (an ACL token) with every request when set."""
    parsed = urlparse(consul_url)
    return consul.Consul(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 8500,
        scheme=parsed.scheme or "http",
        connections_timeout=timeout_s,
        token=token or None,
    )


def wait_for_agent(client: consul.Consul, consul_url: str, wait_s: float) -> None:
    """Return once the agent answers; MeshUnavailable after `wait_s` seconds."""

    def say_once(state: RetryCallState) -> None:
        # A warning, so it shows even where only the root logger's default handler is set up.
        if state.attempt_number == 1 and state.outcome is not None:
            error = state.outcome.exception()
            log.warning("waiting for the Consul agent at %s (%s)", consul_url, type(error).__name__)

    retrying = Retrying(
        retry=retry_if_exception_type(_AGENT_ERRORS),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_delay(wait_s),
        before_sleep=say_once,
        reraise=True,
    )
    try:
        retrying(_agent_answers, client)
    except _AGENT_ERRORS as e:
        raise MeshUnavailable(f"no Consul agent answered at {consul_url} within {wait_s:g} s: {e}") from e


def _agent_answers(client: consul.Consul) -> None:
    """Raises unless the agent answers and knows its cluster's leader. /v1/status/leader needs no ACL
    token, unlike /v1/agent/self (agent:read, which a service's own token does not grant)."""
    if not client.status.leader():
        raise consul.ConsulException("the agent knows no leader yet")


def _duration(seconds: float) -> str:
    """Consul's Go duration syntax."""
    return f"{seconds:g}s"


def sidecar_definition(
    service_id: str, upstreams: list[Upstream], address: str, port: int, check_interval_s: float
) -> dict[str, Any]:
    """`connect` of a registration: a sidecar with these upstreams (port 0: Consul picks one)."""
    sidecar: dict[str, Any] = {
        "Proxy": {
            "Upstreams": [
                {"DestinationName": u.destination, "LocalBindPort": u.local_bind_port} for u in upstreams
            ],
        },
    }
    if port:
        sidecar["Port"] = port
        # Consul's defaults are the same two checks every 10 s; named here to follow the
        # configured interval, so a local run reaches "passing" in seconds.
        sidecar["Checks"] = [
            {"Name": "sidecar listening", "TCP": f"{address}:{port}", "Interval": _duration(check_interval_s)},
            {"Name": f"aliasing {service_id}", "AliasService": service_id},
        ]
    return {"SidecarService": sidecar}


@dataclass
class MeshRegistration:
    """This process's registration with its local agent, kept for the process's lifetime."""

    client: consul.Consul
    service_id: str

    @property
    def check_id(self) -> str:
        # Consul's id for the single check given at registration.
        return f"service:{self.service_id}"

    def agent_answers(self) -> None:
        """Readiness probe: raises unless the agent answers."""
        _agent_answers(self.client)

    def report_consuming(self) -> None:
        """Refresh the TTL check (workers, from their consumer loop)."""
        self.client.agent.check.ttl_pass(self.check_id, "the consumer loop is running")

    def deregister(self) -> None:
        """Remove the service and its sidecar from the agent; an agent already gone is only logged."""
        try:
            self.client.agent.service.deregister(self.service_id)
            log.info("deregistered %s from the Consul agent", self.service_id)
        except _AGENT_ERRORS as e:
            log.warning("could not deregister %s from the Consul agent: %s", self.service_id, e)


def register(
    client: consul.Consul,
    *,
    name: str,
    service_id: str,
    address: str,
    port: int,
    check: dict[str, Any] | None,
    upstreams: list[Upstream],
    sidecar_port: int,
    check_interval_s: float,
) -> MeshRegistration:
    """Register `name` with the agent behind `client`, with its sidecar and `check`."""
    connect = sidecar_definition(service_id, upstreams, address, sidecar_port, check_interval_s)
    try:
        client.agent.service.register(
            name,
            service_id=service_id,
            address=address,
            port=port,
            check=check,
            connect=connect,
            # A restarted process replaces its old registration, checks included.
            replace_existing_checks=True,
        )
    except _AGENT_ERRORS as e:
        raise MeshUnavailable(f"the Consul agent refused to register {service_id}: {e}") from e
    log.info(
        "registered %s with the Consul agent; upstreams: %s",
        service_id,
        ", ".join(f"{u.destination} on 127.0.0.1:{u.local_bind_port}" for u in upstreams) or "none",
    )
    return MeshRegistration(client, service_id)


def settings_agent_client(settings: Settings) -> consul.Consul:
    return agent_client(settings.consul_url, token=settings.consul_token.get_secret_value())


def agent_probe(settings: Settings) -> Callable[[], None]:
    """A readiness probe of the local agent, for a process that shares another's registration
    (one of several gateway processes, api/processes.py)."""
    client = settings_agent_client(settings)
    return lambda: _agent_answers(client)


def _join(settings: Settings, name: str, address: str, port: int, check: dict[str, Any]) -> MeshRegistration:
    """Register this process as `name`, waiting for the agent first; ids and ports from settings."""
    upstreams = upstreams_for(settings)  # before touching the agent: a bad URL is a settings error
    client = settings_agent_client(settings)
    wait_for_agent(client, settings.consul_url, settings.consul_wait_s)
    return register(
        client,
        name=name,
        service_id=settings.consul_service_id or name,
        address=address,
        port=port,
        check=check,
        upstreams=upstreams,
        sidecar_port=settings.consul_sidecar_port,
        check_interval_s=settings.consul_check_interval_s,
    )


def _own_address(settings: Settings, default: str) -> str:
    return settings.consul_service_address or default


def join_as_gateway(settings: Settings) -> MeshRegistration:
    """Register the gateway, checked over HTTP on /healthz."""
    wildcard = settings.host in {"0.0.0.0", "::", ""}
    address = _own_address(settings, "127.0.0.1" if wildcard else settings.host)
    check = {
        "Name": "gateway /healthz",
        "HTTP": f"http://{address}:{settings.port}/healthz",
        "Interval": _duration(settings.consul_check_interval_s),
        "Timeout": _duration(min(2.0, settings.consul_check_interval_s)),
    }
    return _join(settings, GATEWAY_SERVICE, address, settings.port, check)


def join_as_worker(settings: Settings) -> MeshRegistration:
    """Register a worker with a TTL check it must keep refreshing while it consumes.

    A worker listens on no port (0; no intention lets anyone connect to it), so there is
    nothing to probe from outside; the check starts critical and turns passing once the
    consumer loop reports in (workers/heartbeat.py).
    """
    check = {"Name": "worker consumes", "TTL": _duration(settings.consul_worker_ttl_s)}
    return _join(settings, WORKER_SERVICE, _own_address(settings, "127.0.0.1"), 0, check)
