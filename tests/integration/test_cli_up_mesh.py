"""`asyncinfer up --mesh consul` serves jobs through the mesh (two gateway processes behind one
registration and sidecar), then stops every part on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import consul
import httpx
import pytest

from cli.consul_dev import CONSUL_VERSION, read_dev_tokens
from cli.processes import free_ports, wait_until
from tests.support import images
from tests.support.consul_agent import consul_binary
from tests.support.http import submit, wait_terminal
from tests.support.pipeline import clean_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def processes_mentioning(*needles: str) -> list[str]:
    """Command lines of running processes that contain any of `needles`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if any(needle in text for needle in needles):
            found.append(text)
    return found


def test_up_with_the_mesh_serves_a_job_through_sidecars_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    consul_binary()  # built before the clock starts (a cold build takes minutes)
    port, consul_port = free_ports(2)
    env = clean_env("ASYNCINFER_CACHE_DIR")
    env.update(ASYNCINFER_WEIGHTS="random", ASYNCINFER_PORT=str(port), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
               ASYNCINFER_CONSUL_URL=f"http://127.0.0.1:{consul_port}")
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "cli", "up", "--mesh", "consul", "--gateway-processes", "2"], cwd=tmp_path, env=env,
                              stdout=log, stderr=log)
    try:
        wait_until(lambda: "ready at" in log_path.read_text() or up.poll() is not None, 150, "asyncinfer up")
        output = log_path.read_text()
        assert up.poll() is None, output
        tokens = read_dev_tokens(tmp_path / "asyncinfer-data" / "mesh-logs" / "acl-tokens.hcl")
        assert "the operator's token in asyncinfer-data/mesh-logs/acl-tokens.hcl" in output
        assert consul.Consul(port=consul_port).catalog.services()[1] == {}  # default deny: no token, nothing seen
        agent = consul.Consul(port=consul_port, token=tokens.management)
        services = agent.catalog.services()[1]
        assert {"redis", "gateway", "worker"} <= set(services) and "gateway-sidecar-proxy" in services
        # Only the upstream ports reach Redis: the worker and gateway never see Redis's own.
        redis_port = re.search(r"Redis on 127\.0\.0\.1:(\d+)", output)
        assert redis_port is not None, output
        for service in ("worker", "gateway"):
            upstream = re.search(rf"{service} → redis through its sidecar's upstream 127\.0\.0\.1:(\d+)", output)
            assert upstream is not None and upstream.group(1) != redis_port.group(1), output
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            job = submit(client, images.jpeg(seed=52))
            assert wait_terminal(client, job["id"])["status"] == "succeeded"
        for _ in range(4):  # a connection each, to either gateway process: each asks the agent too
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["checks"]["consul"] == "ok"
        assert len(agent.catalog.service("gateway")[1]) == 1  # the processes share one registration

        up.send_signal(signal.SIGINT)

        assert up.wait(90) == 0, log_path.read_text()
    finally:
        if up.poll() is None:  # a failed assertion: stop it the way Ctrl-C does, so its agent and sidecars go too
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
    output = log_path.read_text()
    assert f"Consul {CONSUL_VERSION} dev agent" in output and "Couchbase is not part of the local mesh run" in output
    assert "stopping" in output
    # Agent, sidecars (all name the agent's address), Redis, gateway and worker are all gone.
    assert processes_mentioning(f"127.0.0.1:{consul_port}", f"-http-port={consul_port}",
                                f"127.0.0.1:{redis_port.group(1)}") == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")
    assert (tmp_path / "asyncinfer-data" / "mesh-logs" / "consul-agent.log").exists()
