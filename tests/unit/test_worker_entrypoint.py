"""deploy/worker-with-sidecar.sh, the entrypoint of a compose worker replica, with a stand-in
`consul` that records how it is called (tests/integration/test_compose_scale.py runs the real one)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cli.processes import REPO_ROOT

ENTRYPOINT = REPO_ROOT / "deploy" / "worker-with-sidecar.sh"


@dataclass
class Run:
    pid: int
    returncode: int
    stdout: str
    stderr: str
    calls: Path  # one line per start of the stand-in consul: its arguments


def run_entrypoint(tmp_path: Path, worker: str, **settings: str) -> Run:
    """Run the entrypoint with `sh -c worker` as the worker, and these settings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    stub = bin_dir / "consul"
    stub.write_text('#!/bin/sh\necho "$@" >> "$CALLS"\nsleep 30\n')
    stub.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASYNCINFER_")}
    env.update(settings, CALLS=str(calls),
               PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")]))
    # Files, not pipes: the sidecar loop keeps its copies open after the worker exited.
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(["sh", str(ENTRYPOINT), "sh", "-c", worker], cwd=REPO_ROOT, env=env,
                                   stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        process.wait(60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the sidecar loop this test started
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return Run(process.pid, process.returncode, out.read_text(), err.read_text(), calls)


def test_it_runs_the_sidecar_for_this_hosts_id_then_becomes_the_worker(tmp_path: Path) -> None:
    # The worker waits until the sidecar was started, then prints its pid.
    run = run_entrypoint(tmp_path, 'until [ -s "$CALLS" ]; do sleep 0.05; done; echo "worker $$"',
                         ASYNCINFER_CONSUL_SERVICE_ID="worker-%h", ASYNCINFER_CONSUL_URL="http://consul:8500")
    assert run.returncode == 0, run.stderr
    assert run.calls.read_text().splitlines()[0] == (
        f"connect proxy -sidecar-for worker-{socket.gethostname()} -http-addr=http://consul:8500")
    # The script's own pid: it exec'd the worker, so a signal to the container's main process
    # (docker-init passes SIGTERM to it) reaches the worker, not a shell.
    assert run.stdout == f"worker {run.pid}\n"


def test_without_an_id_the_sidecar_is_for_the_service_name(tmp_path: Path) -> None:
    run = run_entrypoint(tmp_path, 'until [ -s "$CALLS" ]; do sleep 0.05; done')
    assert run.returncode == 0, run.stderr
    assert run.calls.read_text().split()[:4] == ["connect", "proxy", "-sidecar-for", "worker"]


def test_settings_that_do_not_validate_are_left_to_the_worker_to_report(tmp_path: Path) -> None:
    run = run_entrypoint(tmp_path, 'echo "worker ran"; exit 2', ASYNCINFER_MAX_ATTEMPTS="many")
    assert (run.returncode, run.stdout, run.stderr) == (2, "worker ran\n", "")
    assert not run.calls.exists()  # no sidecar without a registration id


def test_it_is_plain_sh() -> None:
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=False).returncode == 0
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
