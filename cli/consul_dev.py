"""Consul for local runs: the pinned binary, a dev agent, the repository's intentions, sidecars.

`asyncinfer up --mesh consul` (cli/up_mesh.py) and the tests' Consul agent start them with
these same commands.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import consul

from cli.processes import REPO_ROOT, StartFailed, free_ports
from shared.config import Settings

# Keep in step with scripts/build-consul, which builds exactly this release (tests check).
CONSUL_VERSION = "1.16.3"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-consul"
AGENT_CONFIG = REPO_ROOT / "consul" / "agent-dev.hcl"
INTENTIONS_DIR = REPO_ROOT / "consul" / "intentions"


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
        raise StartFailed(f"scripts/build-consul failed (exit {done.returncode}); see its output above")
    return Path(done.stdout.strip().splitlines()[-1])


def dev_agent_command(binary: Path, http_port: int, node: str, data_dir: Path | None = None) -> list[str]:
    """`consul agent -dev` with the repository's agent config, on `http_port` and free ports for
    everything else, so it never collides with another agent on this host."""
    server, serf_lan, serf_wan = free_ports(3)
    command = [
        str(binary), "agent", "-dev", "-config-file", str(AGENT_CONFIG), "-node", node,
        f"-http-port={http_port}", f"-server-port={server}", f"-serf-lan-port={serf_lan}",
        f"-serf-wan-port={serf_wan}",
        # The built-in proxy needs only the HTTP API: no xDS (gRPC) or DNS listeners to collide.
        "-grpc-port=-1", "-dns-port=-1",
    ]
    if data_dir is not None:
        command += ["-data-dir", str(data_dir)]
    return command


def connect_ca_ready(client: consul.Consul) -> bool:
    """Whether the agent has a leader and its Connect CA an active root, so leaf certificates
    (which every sidecar needs) can be issued. The agent's errors propagate."""
    if not client.status.leader():
        return False
    roots = client.connect.ca.roots()
    return bool(roots.get("ActiveRootID")) and bool(roots.get("Roots"))


def intention_files(directory: Path = INTENTIONS_DIR) -> list[Path]:
    """The service-intentions files in the order to apply them: the default deny first, then by name."""
    return sorted(directory.glob("*.hcl"), key=lambda path: (path.name != "default-deny.hcl", path.name))


def write_config_entry(binary: Path, http_addr: str, path: Path) -> None:
    """`consul config write` one file, exactly as an operator would."""
    done = subprocess.run([str(binary), "config", "write", f"-http-addr={http_addr}", str(path)],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise StartFailed(f"consul config write {path.name}: {done.stderr.strip()}")


def sidecar_command(binary: Path, http_addr: str, service_id: str) -> list[str]:
    """Consul's built-in proxy for a service registered with a sidecar."""
    return [str(binary), "connect", "proxy", "-sidecar-for", service_id, f"-http-addr={http_addr}"]


def sidecar_ports(client: consul.Consul, service_id: str) -> tuple[int, dict[str, int]]:
    """The registered sidecar's public port and its upstreams' local ports, by destination."""
    registration = client.agent.services()[f"{service_id}-sidecar-proxy"]
    upstreams = (registration.get("Proxy") or {}).get("Upstreams") or []
    return int(registration["Port"]), {u["DestinationName"]: int(u["LocalBindPort"]) for u in upstreams}
