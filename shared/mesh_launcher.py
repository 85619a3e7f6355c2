"""`asyncinfer up --mesh consul`: the pipeline on one machine with every Redis link through Consul Connect.

Started in this order, stopped in reverse (each sidecar just after its service):
1. a Consul dev agent, the pinned binary that scripts/build-consul builds once, on the port of
   ASYNCINFER_CONSUL_URL;
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
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import consul
import httpx

from shared.config import Settings
from shared.errors import MeshUnavailable
from shared.launcher import spawn_asyncinfer, stop_in_reverse_order, stop_on_sigterm
from shared.mesh import (
    GATEWAY_SERVICE,
    REDIS_SERVICE,
    WORKER_SERVICE,
    agent_client,
    register,
)
from shared.redis_server import start_redis

# Keep in step with scripts/build-consul, which builds exactly this release (tests check).
CONSUL_VERSION = "1.16.3"
REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-consul"
AGENT_CONFIG = REPO_ROOT / "consul" / "agent-dev.hcl"
INTENTIONS_DIR = REPO_ROOT / "consul" / "intentions"

# Local checks every 2 s instead of 10: the mesh is usable a few seconds after start.
CHECK_INTERVAL_S = 2.0
AGENT_START_S = 30.0
REGISTRATION_S = 120.0  # a worker registers after importing TensorFlow
SIDECAR_START_S = 15.0
READY_S = 60.0

Processes = list[tuple[str, subprocess.Popen[bytes]]]


class MeshStartFailed(RuntimeError):
    """A part of the local mesh did not start; the message says which and where its log is."""


def consul_binary(settings: Settings) -> Path:
    """The pinned consul binary in the cache, built by scripts/build-consul when missing."""
    cache_dir = Path(settings.cache_dir).expanduser()
    binary = cache_dir / "bin" / f"consul-{CONSUL_VERSION}"
    if binary.is_file():
        return binary
    print(f"asyncinfer: building Consul {CONSUL_VERSION} once into {binary} (a cold build takes about 10 minutes)")
    env = {**os.environ, "ASYNCINFER_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([str(BUILD_SCRIPT)], env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise MeshStartFailed(f"scripts/build-consul failed (exit {done.returncode}); see its output above")
    return Path(done.stdout.strip().splitlines()[-1])


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free for TCP and UDP now (the agent's Serf gossips on both)."""
    with ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
        return ports


def port_accepts(port: int) -> bool:
    """True once something accepts TCP connections on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def intention_files(directory: Path = INTENTIONS_DIR) -> list[Path]:
    """The service-intentions files in the order to apply them: the default deny first, then by name."""
    return sorted(directory.glob("*.hcl"), key=lambda path: (path.name != "default-deny.hcl", path.name))


def connect_ca_ready(client: consul.Consul) -> bool:
    """Whether the agent has a leader and its Connect CA an active root, so leaf certificates
    (which every sidecar needs) can be issued. The agent's errors propagate."""
    if not client.status.leader():
        return False
    roots = client.connect.ca.roots()
    return bool(roots.get("ActiveRootID")) and bool(roots.get("Roots"))


def _wait(what: str, done: Callable[[], bool], timeout_s: float, watched: Processes, log_dir: Path) -> None:
    """Poll `done` until true; MeshStartFailed after the deadline or as soon as a watched process exits."""
    deadline = time.monotonic() + timeout_s
    while not done():
        for name, process in watched:
            if process.poll() is not None:
                raise MeshStartFailed(f"{name} exited with code {process.returncode} (logs in {log_dir})")
        if time.monotonic() > deadline:
            raise MeshStartFailed(f"timed out after {timeout_s:.0f} s waiting for {what} (logs in {log_dir})")
        time.sleep(0.2)


@dataclass
class LocalMesh:
    """The dev agent and the processes started around it, in the order they must stop (reversed)."""

    binary: Path
    http_port: int
    log_dir: Path
    processes: Processes = field(default_factory=list)

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def client(self) -> consul.Consul:
        return agent_client(f"http://{self.http_addr}")

    def _log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start_agent(self) -> None:
        server, serf_lan, serf_wan = free_ports(3)
        command = [
            str(self.binary), "agent", "-dev", "-config-file", str(AGENT_CONFIG), "-node", "asyncinfer-up",
            f"-http-port={self.http_port}", f"-server-port={server}", f"-serf-lan-port={serf_lan}",
            f"-serf-wan-port={serf_wan}",
            # The built-in proxy needs only the HTTP API: no xDS (gRPC) or DNS listeners to collide.
            "-grpc-port=-1", "-dns-port=-1",
        ]
        with self._log("consul-agent").open("wb") as log:
            agent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(("consul agent", agent))
        client = self.client

        def ca_ready() -> bool:
            try:
                return connect_ca_ready(client)
            except (consul.ConsulException, OSError):  # requests' errors are OSErrors
                return False

        _wait("the agent's Connect CA", ca_ready, AGENT_START_S, self.processes, self.log_dir)

    def apply_intentions(self) -> None:
        """`consul config write` each file, the default deny first, exactly as an operator would."""
        for path in intention_files():
            done = subprocess.run(
                [str(self.binary), "config", "write", f"-http-addr={self.http_addr}", str(path)],
                capture_output=True, text=True, timeout=30, check=False,
            )
            if done.returncode != 0:
                raise MeshStartFailed(f"consul config write {path.name}: {done.stderr.strip()}")

    def start_sidecar(self, service_id: str) -> None:
        """Run `consul connect proxy -sidecar-for` once the service registered it; stop it after the service."""
        proxy_id = f"{service_id}-sidecar-proxy"
        client = self.client
        _wait(f"{service_id} to register with the agent", lambda: proxy_id in client.agent.services(),
              REGISTRATION_S, self.processes, self.log_dir)
        registration = client.agent.services()[proxy_id]
        ports = [registration["Port"]] + [u["LocalBindPort"] for u in registration["Proxy"].get("Upstreams") or []]
        command = [str(self.binary), "connect", "proxy", "-sidecar-for", service_id, f"-http-addr={self.http_addr}"]
        with self._log(f"sidecar-{service_id}").open("wb") as log:
            proxy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # Just before its service in the list: stopped right after it, so the service keeps its
        # links to Redis while it shuts down.
        index = [name for name, _ in self.processes].index(service_id)
        self.processes.insert(index, (f"{service_id} sidecar", proxy))
        _wait(f"the sidecar of {service_id} to listen", lambda: all(port_accepts(p) for p in ports),
              SIDECAR_START_S, self.processes, self.log_dir)

    def start_redis(self, data_dir: Path) -> None:
        redis_port, sidecar_port = free_ports(2)
        # Loopback only: other hosts can reach it solely through its sidecar's mTLS listener.
        self.processes.append((REDIS_SERVICE, start_redis(f"redis://127.0.0.1:{redis_port}/0", data_dir)))
        register(
            self.client,
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
        self.start_sidecar(REDIS_SERVICE)
        print(f"asyncinfer: Redis on 127.0.0.1:{redis_port}, reached only through its sidecar (mTLS :{sidecar_port})")

    def start_service(self, service: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `asyncinfer <args>` registered as `service` with a sidecar carrying its Redis link."""
        upstream_port, sidecar_port = free_ports(2)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("ASYNCINFER_CONSUL_", "ASYNCINFER_MESH"))}
        env.update(
            ASYNCINFER_MESH="consul",
            ASYNCINFER_CONSUL_URL=f"http://{self.http_addr}",
            # The sidecar's upstream listener, not Redis: the one way this service reaches Redis.
            ASYNCINFER_REDIS_URL=f"redis://127.0.0.1:{upstream_port}/0",
            ASYNCINFER_CONSUL_SIDECAR_PORT=str(sidecar_port),
            ASYNCINFER_CONSUL_CHECK_INTERVAL_S=f"{CHECK_INTERVAL_S:g}",
        )
        process = spawn_asyncinfer(*args, env=env)
        self.processes.append((service, process))
        self.start_sidecar(service)
        print(f"asyncinfer: {service} → redis through its sidecar's upstream 127.0.0.1:{upstream_port}")
        return process


def _agent_port(consul_url: str) -> int:
    parsed = urlparse(consul_url)
    if parsed.hostname not in {"127.0.0.1", "localhost"}:
        raise ValueError(f"ASYNCINFER_CONSUL_URL={consul_url!r}: `up --mesh consul` runs its agent on 127.0.0.1")
    return parsed.port or 8500


def _agent_already_answers(http_port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{http_port}/v1/agent/self", timeout=0.5)
        return True
    except httpx.HTTPError:
        return False


def _gateway_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def run_mesh_pipeline(settings: Settings) -> int:
    if settings.store_kind != "sqlite":
        print("asyncinfer up --mesh consul: runs the embedded SQLite store only (Couchbase is not part of the "
              "local mesh run); unset ASYNCINFER_STORE", file=sys.stderr)
        return 2
    http_port = _agent_port(settings.consul_url)
    if _agent_already_answers(http_port):
        print(f"asyncinfer up --mesh consul: something already answers at {settings.consul_url}; this command "
              "starts its own dev agent: stop that one or set ASYNCINFER_CONSUL_URL to a free port", file=sys.stderr)
        return 2
    data_dir = Path(settings.sqlite_path).parent
    log_dir = data_dir / "mesh-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    mesh = LocalMesh(consul_binary(settings), http_port, log_dir)
    stop_on_sigterm()
    try:
        mesh.start_agent()
        print(f"asyncinfer: Consul {CONSUL_VERSION} dev agent at http://{mesh.http_addr} (logs in {log_dir})")
        mesh.apply_intentions()
        print("asyncinfer: intentions from consul/intentions/: deny by default; gateway and worker may reach redis")
        mesh.start_redis(data_dir / "redis")
        mesh.start_service(WORKER_SERVICE, "worker")
        mesh.start_service(GATEWAY_SERVICE, "api")
        print("asyncinfer: job store: embedded SQLite (Couchbase is not part of the local mesh run)")
        url = f"http://{settings.host}:{settings.port}"
        # /readyz dials Redis afresh through the gateway's sidecar: ready means the gateway is up
        # and the mesh carries its link (and the wait ends early if the gateway exits).
        _wait("the gateway to reach Redis through the mesh", lambda: _gateway_ready(url), READY_S,
              mesh.processes, log_dir)
        print(f"asyncinfer: ready at {url}  (web page {url}/, API docs {url}/docs); Ctrl-C stops")
        while True:
            for name, process in mesh.processes:
                if process.poll() is not None:
                    print(f"asyncinfer: {name} exited with code {process.returncode}", file=sys.stderr)
                    return process.returncode or 1
            time.sleep(0.5)
    except (MeshStartFailed, MeshUnavailable) as e:
        print(f"asyncinfer: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nasyncinfer: stopping")
        return 0
    finally:
        stop_in_reverse_order(mesh.processes)
