"""A real Consul dev agent and built-in Connect sidecar proxies, started and stopped for tests.

`consul_agent()` runs `consul agent -dev` with consul/agent-dev.hcl on free ports in a temporary
directory, so it never collides with an agent started by hand (8500) or by another test run.
`sidecar_proxy()` runs `consul connect proxy -sidecar-for <id>` for a registered service and
returns once its listeners accept connections. The binary comes from scripts/build-consul,
which builds it once (minutes) and afterwards only prints its cached path.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import consul

from cli import consul_dev
from cli.consul_dev import (
    INTENTIONS_DIR,
    DevTokens,
    dev_agent_command,
    grant_agent_token,
    new_dev_tokens,
    service_token,
    sidecar_command,
    sidecar_env,
    sidecar_ports,
)
from cli.processes import StartFailed, free_port, free_ports, log_tail, port_accepts, stop_process, wait_until
from shared.config import Settings
from shared.mesh import Upstream, register

AGENT_START_TIMEOUT_S = 30.0
PROXY_START_TIMEOUT_S = 15.0
# Health checks registered by tests run every second, so "passing" arrives within a few.
HEALTHY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

T = TypeVar("T")


class ConsulTestError(RuntimeError):
    """A Consul process did not start, or a condition was not reached before its deadline."""


def consul_binary() -> Path:
    """Path of the pinned consul binary, built by scripts/build-consul if missing."""
    return consul_dev.consul_binary(Settings())


def consul_validate(workdir: Path, *paths: Path, dev: bool = False) -> subprocess.CompletedProcess[str]:
    """`consul validate` the config files and directories `paths`.

    The command wants a complete agent config: a file in `workdir` adds the data_dir that the
    agent gets from -data-dir, and with `dev` also the server mode that -dev implies.
    """
    flags = workdir / "validate-flags.hcl"
    flags.write_text(f'data_dir = "{workdir / "data"}"\n' + ("server = true\n" if dev else ""))
    return subprocess.run([str(consul_binary()), "validate", *map(str, paths), str(flags)],
                          capture_output=True, text=True, check=False, timeout=60)


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.05) -> T:
    """`wait_until`, with the agent's errors (OSError, ConsulException) read as "not yet"."""
    errors: list[Exception] = []

    def attempt() -> T | None:
        try:
            return probe()
        except (OSError, consul.ConsulException) as e:  # requests' errors are OSErrors
            errors.append(e)
            return None

    try:
        result = wait_until(attempt, timeout_s, what, interval_s)
    except StartFailed as e:
        detail = f" (last error: {errors[-1]!r})" if errors else ""
        raise ConsulTestError(f"{e}{detail}") from e
    assert result is not None
    return result


@dataclass
class ConsulAgent:
    """A running dev agent (ACLs on, default deny): its HTTP port, a py-consul client and the consul CLI
    for HCL config entries, both with the operator's (management) token, and a token per service."""

    binary: Path
    http_port: int
    workdir: Path
    tokens: DevTokens
    _service_tokens: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def url(self) -> str:
        return f"http://{self.http_addr}"

    @cached_property
    def client(self) -> consul.Consul:
        """With the management token: the operator's view, allowed everything."""
        return consul.Consul(host="127.0.0.1", port=self.http_port, token=self.tokens.management)

    def client_with(self, token: str | None) -> consul.Consul:
        """A client that sends `token` (None: no token at all)."""
        return consul.Consul(host="127.0.0.1", port=self.http_port, token=token)

    def token_for(self, service: str) -> str:
        """The token with `service`'s identity (made once), as a deployment hands each service its own."""
        if service not in self._service_tokens:
            self._service_tokens[service] = service_token(self.client, service)
        return self._service_tokens[service]

    def cli(self, *args: str) -> str:
        """Run a consul CLI command against this agent; return its stdout."""
        done = subprocess.run(
            [str(self.binary), *args],
            env={**os.environ, "CONSUL_HTTP_ADDR": self.http_addr, "CONSUL_HTTP_TOKEN": self.tokens.management},
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise ConsulTestError(f"consul {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def write_config_entry(self, path: Path) -> None:
        """Apply one config entry file (HCL or JSON), exactly as an operator would."""
        self.cli("config", "write", str(path))

    def apply_intentions(self, directory: Path = INTENTIONS_DIR) -> None:
        """Apply every service-intentions file of the repository (default deny first)."""
        for path in consul_dev.intention_files(directory):
            self.write_config_entry(path)

    def set_intention(self, source: str, destination: str, action: str) -> None:
        """Set one source's action inside the destination's service-intentions entry."""
        self.client.connect.intentions.upsert(source, destination, action=action)

    def roots_pem(self) -> str:
        """The Connect CA root certificates (PEM) every sidecar trusts."""
        roots = self.client.agent.connect.ca.roots()
        return "\n".join(root["RootCert"] for root in roots["Roots"])

    def leaf(self, service: str) -> dict[str, Any]:
        """A leaf certificate (CertPEM, PrivateKeyPEM, ServiceURI) for any service name.

        With the management token the agent signs one for a name nobody registered, so tests can
        play an intruder that holds a genuine mesh certificate.
        """
        leaf: dict[str, Any] = self.client.agent.connect.ca.leaf(service)
        return leaf

    def wait_mesh_healthy(self, service: str, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
        """Wait until `service` has a passing Connect-capable instance (its sidecar and itself).

        Upstream listeners resolve only passing instances, so until then a dial through the
        mesh fails with "no healthy instances found".
        """
        wait_for(
            f"a passing mesh instance of {service!r}",
            lambda: bool(self.client.health.connect(service, passing=True)[1]),
            timeout_s,
            interval_s=0.2,
        )


@contextmanager
def consul_agent(workdir: Path | None = None) -> Iterator[ConsulAgent]:
    """Start a dev agent on free ports, wait until its API answers and the Connect CA has a
    root (leaf certificates can be issued), yield it, then stop it."""
    binary = consul_binary()
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="consul-")))
        log_path = workdir / "agent.log"
        (http_port,) = free_ports(1)
        node = f"asyncinfer-test-{http_port}"
        tokens = new_dev_tokens(workdir)
        command = dev_agent_command(binary, http_port, node, workdir / "data", tokens)
        log = stack.enter_context(log_path.open("wb"))
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        stack.callback(stop_process, "consul agent", process, STOP_TIMEOUT_S)
        agent = ConsulAgent(binary=binary, http_port=http_port, workdir=workdir, tokens=tokens)

        def ready() -> bool:
            if process.poll() is not None:
                raise ConsulTestError(f"consul agent exited ({process.returncode})")
            return consul_dev.connect_ca_ready(agent.client)

        try:
            wait_for("the consul agent's Connect CA", ready, AGENT_START_TIMEOUT_S, interval_s=0.1)
        except ConsulTestError as e:
            raise ConsulTestError(f"{e}\n{log_tail(log_path)}") from e
        grant_agent_token(agent.client, node, tokens)
        yield agent


@dataclass
class SidecarProxy:
    """A running `consul connect proxy -sidecar-for` process and the ports it listens on."""

    service_id: str
    public_port: int
    upstream_ports: dict[str, int]
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return log_tail(self.log_path, lines=200)


@contextmanager
def sidecar_proxy(agent: ConsulAgent, service_id: str) -> Iterator[SidecarProxy]:
    """Run the built-in proxy for a service registered with `connect.sidecar_service`, with that
    service's own token. Returns once the public listener and every upstream listener accept TCP
    connections."""
    public_port, upstream_ports = sidecar_ports(agent.client, service_id)
    service = agent.client.agent.services()[service_id]["Service"]
    log_path = agent.workdir / f"proxy-{service_id}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            sidecar_command(agent.binary, agent.http_addr, service_id),
            env=sidecar_env(agent.token_for(service)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> bool:
            if process.poll() is not None:
                raise ConsulTestError(
                    f"proxy for {service_id} exited ({process.returncode}):\n{log_tail(log_path)}"
                )
            return all(port_accepts(port) for port in [public_port, *upstream_ports.values()])

        wait_for(f"the sidecar proxy of {service_id!r} to listen", listening, PROXY_START_TIMEOUT_S)
        yield SidecarProxy(service_id, public_port, upstream_ports, process, log_path)
    finally:
        stop_process(f"sidecar of {service_id}", process, STOP_TIMEOUT_S)


def register_with_sidecar(
    agent: ConsulAgent,
    name: str,
    port: int,
    upstreams: dict[str, int] | None = None,
    check_tcp: bool = True,
) -> int:
    """Register `name` on 127.0.0.1:`port` with a sidecar on a free port; return that port.

    `upstreams` maps destination service name to local bind port. Checks run every second
    (the sidecar's defaults run every 10 s) so tests reach "passing" quickly.
    """
    sidecar_port = free_port()
    check = consul.Check.tcp("127.0.0.1", port, "1s", timeout="1s") if check_tcp else None
    register(
        agent.client_with(agent.token_for(name)),
        name=name,
        service_id=name,
        address="127.0.0.1",
        port=port,
        check=check,
        upstreams=[Upstream(destination, bind_port) for destination, bind_port in (upstreams or {}).items()],
        sidecar_port=sidecar_port,
        check_interval_s=1.0,
    )
    return sidecar_port
