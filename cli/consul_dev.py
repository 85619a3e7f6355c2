"""Consul for local runs: the pinned binary, a dev agent, the repository's intentions, sidecars.

`asyncinfer up --mesh consul` (cli/up_mesh.py) and the tests' Consul agent start them with
these same commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import consul

from cli.processes import REPO_ROOT, StartFailed, free_ports
from shared.config import Settings

# Keep in step with scripts/build-consul, which builds exactly this release (tests check).
CONSUL_VERSION = "1.16.3"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-consul"
AGENT_CONFIG = REPO_ROOT / "consul" / "agent-dev.hcl"
DATACENTER = "dc1"  # as consul/agent-dev.hcl names it
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


@dataclass(frozen=True)
class DevTokens:
    """The ACL tokens a dev agent starts with, new for every run (never in a file of the repository)."""

    management: str  # the operator's: intentions, policies and tokens; only the tools that set up use it
    agent: str  # the agent's own, with its node's identity (node registration, anti-entropy)
    config_file: Path  # the agent config that hands them to the agent (mode 600)


def read_dev_tokens(config_file: Path) -> DevTokens:
    """The tokens of a config file new_dev_tokens wrote (for the operator of a local run)."""
    found = dict(re.findall(r'(initial_management|agent) = "([0-9a-f-]+)"', config_file.read_text()))
    return DevTokens(found["initial_management"], found["agent"], config_file)


def new_dev_tokens(directory: Path) -> DevTokens:
    """Two fresh tokens and the agent config file (in `directory`) that sets them."""
    management, agent = str(uuid.uuid4()), str(uuid.uuid4())
    path = directory / "acl-tokens.hcl"
    directory.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(f'acl {{\n  tokens {{\n    initial_management = "{management}"\n    agent = "{agent}"\n  }}\n}}\n')
    return DevTokens(management, agent, path)


def grant_agent_token(management: consul.Consul, node: str, tokens: DevTokens) -> None:
    """Create the agent's own token (the secret its config names), with the node identity of `node`:
    until then the agent's own updates are denied (and logged), since the default is deny."""
    management.acl.token.create(secret_id=tokens.agent, node_identities=[f"{node}:{DATACENTER}"],
                                description=f"the agent of node {node}")


def service_token(management: consul.Consul, service: str) -> str:
    """A new token with `service`'s identity: it may register `service` and `service`-sidecar-proxy
    (and get their certificates) and read the catalog, nothing else."""
    token = management.acl.token.create(service_identities=[{"ServiceName": service}],
                                        description=f"asyncinfer {service}")
    return str(token["SecretID"])


def dev_agent_command(binary: Path, http_port: int, node: str, data_dir: Path | None = None,
                      tokens: DevTokens | None = None) -> list[str]:
    """`consul agent -dev` with the repository's agent config (ACLs on, default deny) and the run's
    `tokens`, on `http_port` and free ports for everything else, so it never collides with another
    agent on this host."""
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
    if tokens is not None:
        command += ["-config-file", str(tokens.config_file)]
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


def write_config_entry(binary: Path, http_addr: str, path: Path, token: str) -> None:
    """`consul config write` one file, exactly as an operator would, with the operator's `token`
    (in the environment, not the command line, which other users of the host can read)."""
    done = subprocess.run([str(binary), "config", "write", f"-http-addr={http_addr}", str(path)],
                          env={**os.environ, "CONSUL_HTTP_TOKEN": token},
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise StartFailed(f"consul config write {path.name}: {done.stderr.strip()}")


def sidecar_command(binary: Path, http_addr: str, service_id: str) -> list[str]:
    """Consul's built-in proxy for a service registered with a sidecar. Its ACL token (the service's)
    goes in its environment: sidecar_env."""
    return [str(binary), "connect", "proxy", "-sidecar-for", service_id, f"-http-addr={http_addr}"]


def sidecar_env(token: str) -> dict[str, str]:
    """The environment of a sidecar that acts with `token`."""
    return {**os.environ, "CONSUL_HTTP_TOKEN": token}


def sidecar_ports(client: consul.Consul, service_id: str) -> tuple[int, dict[str, int]]:
    """The registered sidecar's public port and its upstreams' local ports, by destination."""
    registration = client.agent.services()[f"{service_id}-sidecar-proxy"]
    upstreams = (registration.get("Proxy") or {}).get("Upstreams") or []
    return int(registration["Port"]), {u["DestinationName"]: int(u["LocalBindPort"]) for u in upstreams}
