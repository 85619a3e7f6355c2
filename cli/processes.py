"""Local process supervision: start processes in order, watch them, stop them in reverse order.

`asyncinfer up`, `up --mesh consul`, the tests' fixtures and the benchmark all start their
processes through a `Supervisor`, so there is one way to spawn, wait for, and stop them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import httpx

from shared.parent_death import end_with_parent

REPO_ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 15.0
# How an asyncinfer process says its settings or a dependency are wrong (one line on stderr):
# starting it again would fail the same way.
EXIT_STARTUP = 2
RESTART_DELAY_S = 1.0

T = TypeVar("T")


class StartFailed(TimeoutError):
    """A condition was not reached in time, or a process it depended on exited first; the message
    says which, and where the logs are."""


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    return free_ports(1, udp=False)[0]


def free_ports(count: int, *, udp: bool = True) -> list[int]:
    """Distinct loopback ports free now, for TCP and (with `udp`, for Consul's Serf gossip) UDP too."""
    with ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            if udp:
                datagram = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                try:
                    datagram.bind(("127.0.0.1", port))
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


def child_pids(pid: int) -> list[int]:
    """The running processes that `pid`'s main thread started (Linux)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True when `url` answers 200."""
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(done: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.2, *,
               failed: Callable[[], str | None] = lambda: None) -> T:
    """Poll `done` until it returns something true and return that. StartFailed after `timeout_s`,
    or as soon as `failed` returns a reason."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = done()
        if result:
            return result
        reason = failed()
        if reason:
            raise StartFailed(f"{reason} (while waiting for {what})")
        if time.monotonic() > deadline:
            raise StartFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def asyncinfer_command(*args: str) -> list[str]:
    """The `asyncinfer` command with this interpreter, whatever is on PATH."""
    return [sys.executable, "-m", "cli", *args]


def stop_on_sigterm() -> None:
    """A service manager's SIGTERM stops the supervisor as Ctrl-C does, instead of orphaning its children."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def stop_process(name: str, process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL if it outlives `grace_s`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        print(f"asyncinfer: {name} did not stop in time; killing it", file=sys.stderr)
        process.kill()
        process.wait()


def _die_with(parent_pid: int) -> Callable[[], None]:
    """For the child, before exec: the kernel sends it SIGTERM when the supervisor dies, even by
    SIGKILL, so that no worker outlives the process that was scaling it (Linux)."""
    return lambda: end_with_parent(parent_pid)


class Supervisor:
    """Named processes, kept in the order they must stop in reversed.

    With a `log_dir`, each process writes to `<log_dir>/<name>.log`; without one, it shares this
    process's stdout and stderr. Each child runs in a session of its own: Ctrl-C reaches only
    the supervisor, which then stops the children in order. With `children_die_with_it`, a child
    also gets SIGTERM when the supervisor dies without stopping it (SIGKILL, a crash).
    """

    def __init__(self, log_dir: Path | None = None, *, cwd: Path | None = None,
                 children_die_with_it: bool = False) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        self.children_die_with_it = children_die_with_it
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._relaunch: dict[str, Callable[[], subprocess.Popen[bytes]]] = {}
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{name}.log"

    def logs(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def start(self, name: str, command: list[str], *, env: dict[str, str] | None = None,
              before: str | None = None, to_terminal: bool = False, restart: bool = False) -> subprocess.Popen[bytes]:
        """Run `command` as `name`; with `before`, it is stopped just after that one. With
        `to_terminal`, its output goes to this process's, whatever the log directory. With
        `restart`, `watch` starts it again when it exits (unless with EXIT_STARTUP)."""
        process = self._spawn(name, command, env, to_terminal)
        self.adopt(name, process, before=before)
        if restart:
            self._relaunch[name] = lambda: self._spawn(name, command, env, to_terminal)
        return process

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None,
               to_terminal: bool) -> subprocess.Popen[bytes]:
        path = None if to_terminal else self.log_path(name)
        with ExitStack() as stack:
            log = stack.enter_context(path.open("ab")) if path is not None else None  # the child keeps its copy
            process = subprocess.Popen(command, env=env if env is not None else os.environ.copy(), cwd=self.cwd,
                                       stdout=log, stderr=subprocess.STDOUT if log else None,
                                       start_new_session=True,
                                       preexec_fn=_die_with(os.getpid()) if self.children_die_with_it else None)
        return process

    def start_asyncinfer(self, name: str, *args: str, env: dict[str, str] | None = None,
                         to_terminal: bool = False, restart: bool = False) -> subprocess.Popen[bytes]:
        return self.start(name, asyncinfer_command(*args), env=env, to_terminal=to_terminal, restart=restart)

    def adopt(self, name: str, process: subprocess.Popen[bytes], *, before: str | None = None) -> None:
        """Supervise a process started elsewhere (Redis, by cli/redis_server.py)."""
        index = [n for n, _ in self.processes].index(before) if before else len(self.processes)
        self.processes.insert(index, (name, process))

    def gone(self, name: str, process: subprocess.Popen[bytes]) -> str | None:
        """How `process` exited, with the end of its log; None while it runs."""
        if process.poll() is None:
            return None
        path = self.log_path(name)
        tail = f"; the end of {path}:\n{log_tail(path)}" if path else ""
        return f"{name} exited with code {process.returncode}{tail}"

    def exited(self, ignore: Collection[subprocess.Popen[bytes]] = ()) -> str | None:
        """Which supervised process (other than those in `ignore`) has exited, and how; None while all run."""
        return next(filter(None, (self.gone(name, process) for name, process in self.processes
                                  if process not in ignore)), None)

    def wait_until(self, done: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
        """`wait_until`, failing at once when any supervised process exits."""
        return wait_until(done, timeout_s, what, interval_s, failed=self.exited)

    def watch(self, interval_s: float = 0.5) -> int:
        """Block until a supervised process exits; its exit code (1 when it was 0). One started
        with `restart` is started again instead (a worker that timed out or crashed), unless it
        exited with EXIT_STARTUP."""
        while True:
            for index, (name, process) in enumerate(self.processes):
                code = process.poll()
                if code is None:
                    continue
                relaunch = self._relaunch.get(name)
                if relaunch is None or code == EXIT_STARTUP:
                    print(f"asyncinfer: {name} exited with code {code}", file=sys.stderr)
                    return code or 1
                print(f"asyncinfer: {name} exited with code {code}; starting it again", file=sys.stderr)
                time.sleep(RESTART_DELAY_S)
                self.processes[index] = (name, relaunch())
            time.sleep(interval_s)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop in reverse start order, each before the next, so nothing loses what it depends
        on (a gateway its Redis, a service its sidecar) while it shuts down."""
        for name, process in reversed(self.processes):
            stop_process(name, process, grace_s)
