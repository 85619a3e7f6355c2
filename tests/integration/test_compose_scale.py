"""`docker compose up --scale worker=N`: each worker replica runs its own Consul sidecar inside its
own container (deploy/worker-with-sidecar.sh) and registers as worker-<its hostname>.

No Docker engine runs here, so Compose v2's own `config` shows that the worker scaled to 3 is
accepted (and that what would forbid it, a fixed container_name, is refused), the compose file, the
image and the entrypoint are checked to fit together, and the entrypoint itself runs twice on this
machine against a real Consul dev agent and the real built-in proxy, each run in a UTS namespace
of its own with its own hostname, as two containers have.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.consul_dev import CONSUL_VERSION
from cli.processes import REPO_ROOT, free_ports, port_accepts
from shared.mesh import WORKER_SERVICE
from tests.integration.test_compose import compose_command, run_compose
from tests.support.consul_agent import ConsulAgent, consul_agent, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # a cold compose build: ~6 min

ENTRYPOINT = REPO_ROOT / "deploy" / "worker-with-sidecar.sh"
REPLICAS = ("3f2a9c1d7b4e", "8b0e6d5a1c2f")  # hostnames as Docker gives them: short container ids

# Stands in for `asyncinfer worker`: it registers exactly as the worker does (shared/mesh.py), and
# on SIGTERM deregisters and exits.
FAKE_WORKER = """
import signal
from shared.config import get_settings
from shared.mesh import join_as_worker

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
registration = join_as_worker(get_settings())
print(registration.service_id, flush=True)
signal.sigtimedwait({signal.SIGTERM}, 120)
registration.deregister()
"""


@pytest.fixture(scope="module")
def command() -> list[str]:
    return compose_command()


@pytest.fixture(scope="module")
def services(command: list[str]) -> dict[str, Any]:
    result = run_compose(command, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]  # type: ignore[no-any-return]


def scaled(command: list[str], tmp_path: Path, worker: str) -> subprocess.CompletedProcess[str]:
    """Compose's `config` with an override file that sets the worker's `scale` (what --scale sets)."""
    override = tmp_path / "override.yml"
    override.write_text(f"services:\n  worker:\n{worker}")
    return run_compose(command, "-f", str(override), "config", "--format", "json")


def test_compose_accepts_three_workers(command: list[str], tmp_path: Path) -> None:
    result = scaled(command, tmp_path, "    scale: 3\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["services"]["worker"]["scale"] == 3


def test_compose_refuses_three_workers_with_one_container_name(command: list[str], tmp_path: Path) -> None:
    # The check above has teeth: Compose itself refuses a scaled service with a fixed name.
    result = scaled(command, tmp_path, "    scale: 3\n    container_name: asyncinfer-worker\n")
    assert result.returncode != 0
    assert "container_name" in result.stderr


def test_nothing_ties_the_worker_to_one_container(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    # A service in the worker's network namespace would join one replica only: no worker-sidecar.
    for name, spec in services.items():
        assert spec.get("network_mode") != "service:worker", name
        assert "worker" not in spec.get("depends_on", {}), name


def test_each_worker_replica_runs_its_own_sidecar_under_its_own_id(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["entrypoint"] == ["sh", f"/app/deploy/{ENTRYPOINT.name}"]
    assert worker["command"] == ["asyncinfer", "worker"]
    # docker-init passes SIGTERM to the worker alone: its sidecar carries the drain's last writes.
    assert worker["init"] is True
    env = worker["environment"]
    assert env["ASYNCINFER_CONSUL_SERVICE_ID"] == "worker-%h" and env["ASYNCINFER_CONSUL_SERVICE_ADDRESS"] == "%h"
    assert env["ASYNCINFER_CONSUL_SIDECAR_PORT"]


def test_the_image_has_the_pinned_consul_and_the_entrypoint() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert f"FROM hashicorp/consul:{CONSUL_VERSION} AS consul\n" in dockerfile
    assert "COPY --from=consul /bin/consul /usr/local/bin/consul\n" in dockerfile
    assert "WORKDIR /app\n" in dockerfile and f"COPY deploy/{ENTRYPOINT.name} ./deploy/\n" in dockerfile
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert not any(pattern.strip("/") in {"deploy", "deploy/*", "*.sh"} for pattern in ignored)
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=False).returncode == 0


# --- the entrypoint, for real ------------------------------------------------------------------


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    with consul_agent(tmp_path_factory.mktemp("consul")) as running:
        yield running


def start_replica(agent: ConsulAgent, hostname: str, bin_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The entrypoint with the compose file's id settings, as a container with this hostname runs
    it; returns the process (the worker, once the script exec'd it) and its redis upstream port.
    Loopback stands in for the container's address, and every replica gets its own ports, since
    they share this machine's network."""
    redis_port, sidecar_port = free_ports(2)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASYNCINFER_")}
    env.update(
        PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")]),
        ASYNCINFER_MESH="consul",
        ASYNCINFER_CONSUL_URL=agent.url,
        ASYNCINFER_CONSUL_SERVICE_ID="worker-%h",
        ASYNCINFER_CONSUL_SERVICE_ADDRESS="127.0.0.1",
        ASYNCINFER_CONSUL_SIDECAR_PORT=str(sidecar_port),
        ASYNCINFER_CONSUL_CHECK_INTERVAL_S="1",
        ASYNCINFER_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        # One token of the worker identity for the worker and its sidecar, as the compose file gives.
        ASYNCINFER_CONSUL_TOKEN=agent.token_for("worker"),
        CONSUL_HTTP_TOKEN=agent.token_for("worker"),
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname,
             "sh", str(ENTRYPOINT), sys.executable, "-c", FAKE_WORKER],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return process, redis_port


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """End what this test started: the replica's process group (its sidecar loop included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_two_replicas_register_two_ids_each_with_its_own_running_sidecar(agent: ConsulAgent, tmp_path: Path) -> None:
    if subprocess.run(["unshare", "--uts", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("needs unshare --uts (root), to give each replica its own hostname")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "consul").symlink_to(agent.binary)  # the image has it as /usr/local/bin/consul
    replicas = {name: start_replica(agent, name, bin_dir, tmp_path / f"{name}.log") for name in REPLICAS}
    try:
        def logs() -> str:
            return "\n".join(f"--- {name}\n{(tmp_path / f'{name}.log').read_text()}" for name in REPLICAS)

        ids = {f"worker-{name}" for name in REPLICAS}
        wanted = ids | {f"{service_id}-sidecar-proxy" for service_id in ids}
        wait_for("both replicas' registrations", lambda: wanted <= set(agent.client.agent.services()), 30)
        services = agent.client.agent.services()
        # One identity for the intentions, one registration per replica.
        assert {services[service_id]["Service"] for service_id in ids} == {WORKER_SERVICE}
        # Each replica's own proxy runs: its redis upstream listens on that replica's port.
        for process, redis_port in replicas.values():
            wait_for("the replica's sidecar to listen", lambda port=redis_port: port_accepts(port), 30)
            assert process.poll() is None, logs()
        # SIGTERM to the worker alone (docker-init's way): it deregisters itself and its sidecar.
        for process, _ in replicas.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in replicas.values():
            assert process.wait(30) == 0, logs()
        wait_for("the registrations to go", lambda: not wanted & set(agent.client.agent.services()), 30)
        for name in REPLICAS:
            assert f"worker-{name}\n" in (tmp_path / f"{name}.log").read_text()
    finally:
        for process, _ in replicas.values():
            stop_group(process)
