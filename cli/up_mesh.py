"""`asyncinfer up --mesh consul`: the pipeline on one machine with every Redis link through Consul Connect.

Started in this order, stopped in reverse (each sidecar just after its service):
1. a Consul dev agent (cli/consul_dev.py), the pinned binary that scripts/build-consul builds
   once, on the port of ASYNCINFER_CONSUL_URL, with ACLs on (default deny) and this run's tokens;
   each service then gets a token of its own identity, for registering itself and its sidecar;
2. the repository's intentions, consul/intentions/ (default deny, then the allowed links);
3. redis-server on a free loopback port, registered as "redis", and its sidecar;
4. a worker, then the gateway: each registers itself (shared/mesh.py) and gets its sidecar; their
   ASYNCINFER_REDIS_URL names their sidecar's upstream port, never Redis's own.

The job store stays the embedded SQLite file: Couchbase is not part of the local mesh run. Its
cluster map names one alternate port that every client's upstream must bind, so gateway and
worker cannot both reach it through sidecars on one host (consul/services/couchbase.hcl).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import consul

from cli.consul_dev import (
    CONSUL_VERSION,
    DevTokens,
    connect_ca_ready,
    consul_binary,
    dev_agent_command,
    grant_agent_token,
    intention_files,
    new_dev_tokens,
    service_token,
    sidecar_command,
    sidecar_env,
    sidecar_ports,
    write_config_entry,
)
from cli.processes import StartFailed, Supervisor, free_ports, http_ok, port_accepts, stop_on_sigterm
from cli.redis_server import start_redis
from shared.config import Settings
from shared.errors import MeshUnavailable
from shared.mesh import (
    GATEWAY_SERVICE,
    REDIS_SERVICE,
    WORKER_SERVICE,
    agent_client,
    register,
)

# Local checks every 2 s instead of 10: the mesh is usable a few seconds after start.
CHECK_INTERVAL_S = 2.0
AGENT_START_S = 30.0
REGISTRATION_S = 120.0  # a worker registers after importing TensorFlow
SIDECAR_START_S = 15.0
READY_S = 60.0
NODE = "asyncinfer-up"


@dataclass
class LocalMesh:
    """The dev agent and the processes started around it, supervised in the order they must stop (reversed)."""

    binary: Path
    http_port: int
    log_dir: Path
    supervisor: Supervisor = field(init=False)
    tokens: DevTokens = field(init=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.log_dir)
        # The run's operator and agent tokens, in the log directory (mode 600): the operator's is what
        # changes intentions (`CONSUL_HTTP_TOKEN=… consul intention …`) while this run lasts.
        self.tokens = new_dev_tokens(self.log_dir)

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def client(self) -> consul.Consul:
        """The operator's: with the management token."""
        return agent_client(f"http://{self.http_addr}", token=self.tokens.management)

    def start_agent(self) -> None:
        self.supervisor.start("consul-agent", dev_agent_command(self.binary, self.http_port, NODE, tokens=self.tokens))
        client = self.client

        def ca_ready() -> bool:
            try:
                return connect_ca_ready(client)
            except (consul.ConsulException, OSError):  # requests' errors are OSErrors
                return False

        self.supervisor.wait_until(ca_ready, AGENT_START_S, "the agent's Connect CA")
        grant_agent_token(client, NODE, self.tokens)

    def apply_intentions(self) -> None:
        """Each file of consul/intentions/, the default deny first, with the operator's token."""
        for path in intention_files():
            write_config_entry(self.binary, self.http_addr, path, self.tokens.management)

    def start_sidecar(self, service_id: str, token: str) -> None:
        """Run the built-in proxy once the service registered it; it stops just after its service."""
        client = self.client
        self.supervisor.wait_until(lambda: f"{service_id}-sidecar-proxy" in client.agent.services(), REGISTRATION_S,
                                   f"{service_id} to register with the agent")
        public_port, upstreams = sidecar_ports(client, service_id)
        # Just before its service in the list: stopped right after it, so the service keeps its
        # links to Redis while it shuts down.
        self.supervisor.start(f"sidecar-{service_id}", sidecar_command(self.binary, self.http_addr, service_id),
                              env=sidecar_env(token), before=service_id)
        ports = [public_port, *upstreams.values()]
        self.supervisor.wait_until(lambda: all(port_accepts(p) for p in ports), SIDECAR_START_S,
                                   f"the sidecar of {service_id} to listen")

    def start_redis(self, data_dir: Path) -> None:
        redis_port, sidecar_port = free_ports(2)
        # Loopback only: other hosts can reach it solely through its sidecar's mTLS listener.
        self.supervisor.adopt(REDIS_SERVICE, start_redis(f"redis://127.0.0.1:{redis_port}/0", data_dir))
        token = service_token(self.client, REDIS_SERVICE)
        register(
            agent_client(f"http://{self.http_addr}", token=token),
            name=REDIS_SERVICE,
            service_id=REDIS_SERVICE,
            address="127.0.0.1",
            port=redis_port,
            check={"Name": "redis accepts TCP", "TCP": f"127.0.0.1:{redis_port}",
                   "Interval": f"{CHECK_INTERVAL_S:g}s", "Timeout": "1s"},
            upstreams=[],
            sidecar_port=sidecar_port,
            check_interval_s=CHECK_INTERVAL_S,
        )
        self.start_sidecar(REDIS_SERVICE, token)
        print(f"asyncinfer: Redis on 127.0.0.1:{redis_port}, reached only through its sidecar (mTLS :{sidecar_port})")

    def start_service(self, service: str, *args: str) -> None:
        """Start `asyncinfer <args>` registered as `service` with a sidecar carrying its Redis link."""
        upstream_port, sidecar_port = free_ports(2)
        token = service_token(self.client, service)  # it may register itself and its sidecar, nothing else
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("ASYNCINFER_CONSUL_", "ASYNCINFER_MESH"))}
        env.update(
            ASYNCINFER_MESH="consul",
            ASYNCINFER_CONSUL_URL=f"http://{self.http_addr}",
            ASYNCINFER_CONSUL_TOKEN=token,
            # The sidecar's upstream listener, not Redis: the one way this service reaches Redis.
            ASYNCINFER_REDIS_URL=f"redis://127.0.0.1:{upstream_port}/0",
            ASYNCINFER_CONSUL_SIDECAR_PORT=str(sidecar_port),
            ASYNCINFER_CONSUL_CHECK_INTERVAL_S=f"{CHECK_INTERVAL_S:g}",
        )
        self.supervisor.start_asyncinfer(service, *args, env=env, to_terminal=True, restart=service == WORKER_SERVICE)
        self.start_sidecar(service, token)
        print(f"asyncinfer: {service} → redis through its sidecar's upstream 127.0.0.1:{upstream_port}")


def _agent_port(consul_url: str) -> int:
    parsed = urlparse(consul_url)
    if parsed.hostname not in {"127.0.0.1", "localhost"}:
        raise ValueError(f"ASYNCINFER_CONSUL_URL={consul_url!r}: `up --mesh consul` runs its agent on 127.0.0.1")
    return parsed.port or 8500


def run_mesh_pipeline(settings: Settings) -> int:
    if settings.store_kind != "sqlite":
        print("asyncinfer up --mesh consul: runs the embedded SQLite store only (Couchbase is not part of the "
              "local mesh run); unset ASYNCINFER_STORE", file=sys.stderr)
        return 2
    http_port = _agent_port(settings.consul_url)
    if port_accepts(http_port):
        print(f"asyncinfer up --mesh consul: something already answers at {settings.consul_url}; this command "
              "starts its own dev agent: stop that one or set ASYNCINFER_CONSUL_URL to a free port", file=sys.stderr)
        return 2
    data_dir = Path(settings.sqlite_path).parent
    log_dir = data_dir / "mesh-logs"
    mesh = LocalMesh(consul_binary(settings), http_port, log_dir)
    stop_on_sigterm()
    try:
        mesh.start_agent()
        print(f"asyncinfer: Consul {CONSUL_VERSION} dev agent at http://{mesh.http_addr} (logs in {log_dir}), ACLs "
              f"on, default deny; the operator's token in {mesh.tokens.config_file}")
        mesh.apply_intentions()
        print("asyncinfer: intentions from consul/intentions/: deny by default; gateway and worker may reach redis")
        mesh.start_redis(data_dir / "redis")
        mesh.start_service(WORKER_SERVICE, "worker")
        mesh.start_service(GATEWAY_SERVICE, "api")
        print("asyncinfer: job store: embedded SQLite (Couchbase is not part of the local mesh run)")
        url = f"http://{settings.host}:{settings.port}"
        # /readyz dials Redis afresh through the gateway's sidecar: ready means the gateway is up
        # and the mesh carries its link (and the wait ends early if the gateway exits).
        mesh.supervisor.wait_until(lambda: http_ok(f"{url}/readyz", timeout_s=5.0), READY_S,
                                   "the gateway to reach Redis through the mesh")
        print(f"asyncinfer: ready at {url}  (web page {url}/, API docs {url}/docs); Ctrl-C stops")
        return mesh.supervisor.watch()
    except (StartFailed, MeshUnavailable) as e:
        print(f"asyncinfer: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nasyncinfer: stopping")
        return 0
    finally:
        mesh.supervisor.stop()
