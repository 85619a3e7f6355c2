"""Start and stop CouchbaseMock, a mock Couchbase cluster the real SDK talks to over the wire.

The mock runs as a child JVM with one node and one bucket, ``default``, reached through its
default scope and collection (the mock has no named scopes or collections). It accepts any
user name and password. Its clock can be moved forward with :meth:`CouchbaseMock.time_travel`
so expiry tests need not sleep.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shared.config import Settings

VERSION = "1.5.27"
BUCKET = "default"
USERNAME = "Administrator"
PASSWORD = "password"

_REPO_ROOT = Path(__file__).resolve().parent.parent
_FETCH_SCRIPT = _REPO_ROOT / "scripts" / "fetch-couchbase-mock"
_HOST = "127.0.0.1"
# The REST API answers only with the cluster's admin credentials.
_REST_AUTH = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()


class CouchbaseMockError(RuntimeError):
    """The mock could not be fetched or started."""


@dataclass
class CouchbaseMock:
    """A running mock cluster. ``connstr`` goes to ``Cluster(...)``; call ``stop()`` when done."""

    connstr: str
    rest_url: str
    process: subprocess.Popen[bytes]
    # The mock exits when this socket closes, so it cannot outlive a crashed test run.
    _monitor: socket.socket = field(repr=False)
    _log: IO[bytes] = field(repr=False)

    def time_travel(self, seconds: int) -> None:
        """Move the mock's clock by ``seconds`` (may be negative): documents expire against it."""
        self._control("time_travel", Offset=seconds)

    def app_env(self) -> dict[str, str]:
        """Environment that points a gateway or worker at this mock."""
        return {
            "ASYNCINFER_STORE": self.connstr,
            "ASYNCINFER_COUCHBASE_BUCKET": BUCKET,
            "ASYNCINFER_COUCHBASE_SCOPE": "_default",
            "ASYNCINFER_COUCHBASE_COLLECTION": "_default",
            "ASYNCINFER_COUCHBASE_USERNAME": USERNAME,
            "ASYNCINFER_COUCHBASE_PASSWORD": PASSWORD,
        }

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The mock stops answering but keeps its connections open, like a hung node."""
        self.process.send_signal(signal.SIGSTOP)
        try:
            # The signal stops the JVM's threads asynchronously: on a busy machine a thread still
            # running on another core could answer one more request. Go on once all are stopped.
            deadline = time.monotonic() + 5
            while not self._all_threads_stopped():
                if time.monotonic() > deadline:
                    raise CouchbaseMockError("the mock's JVM did not stop within 5 s of SIGSTOP")
                time.sleep(0.005)
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def _all_threads_stopped(self) -> bool:
        states = []
        for stat in Path(f"/proc/{self.process.pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):  # a thread that just exited
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in ("T", "t") for state in states)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the mock and wait for the JVM to exit. Safe to call twice."""
        self._monitor.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        self._log.close()

    def _control(self, command: str, **params: int | str) -> None:
        query = "&".join(f"{key}={value}" for key, value in params.items())
        with urllib.request.urlopen(f"{self.rest_url}/mock/{command}?{query}", timeout=5) as resp:
            status = json.load(resp).get("status")
        if status != "ok":
            raise CouchbaseMockError(f"mock command {command} answered {status!r}")


def cache_dir() -> Path:
    return Path(Settings().cache_dir).expanduser()


def jar_path() -> Path:
    """The cached jar, fetched by scripts/fetch-couchbase-mock when missing."""
    jar = cache_dir() / "lib" / f"CouchbaseMock-{VERSION}.jar"
    if jar.is_file():
        return jar
    result = subprocess.run([str(_FETCH_SCRIPT)], stdout=subprocess.PIPE, check=False, timeout=600)
    if result.returncode != 0:
        raise CouchbaseMockError(f"{_FETCH_SCRIPT} failed with exit code {result.returncode}")
    return Path(result.stdout.decode().strip())


def start_couchbase_mock(start_timeout_s: float = 30.0) -> CouchbaseMock:
    """Start a fresh, empty mock cluster on free ports and return once it accepts KV requests."""
    jar = jar_path()
    # The mock picks its own REST port (-p 0) and reports it by connecting to this socket
    # ("harakiri monitor"); it also exits by itself when we close the socket.
    listener = socket.create_server((_HOST, 0))
    listener.settimeout(start_timeout_s)
    command = [
        "java",
        "-jar",
        str(jar),
        "--port", "0",
        "--harakiri-monitor", f"{_HOST}:{listener.getsockname()[1]}",
        "--nodes", "1",
        "--replicas", "0",
        # 64 instead of 1024 vBuckets: faster start, and tests never need more.
        "--vbuckets", "64",
        # Config over KV (CCCP): the SDK bootstraps only that way.
        "--cccp",
        "--buckets", f"{BUCKET}:{PASSWORD}:couchbase",
    ]  # fmt: skip
    # A file, not a pipe: nobody drains a pipe while tests run, and a full pipe would block the JVM.
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop(): lives as long as the mock)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    monitor: socket.socket | None = None
    try:
        try:
            monitor, _ = listener.accept()
        except TimeoutError as e:
            raise CouchbaseMockError(
                f"mock did not start within {start_timeout_s} s: {_log_tail(log)}"
            ) from e
        finally:
            listener.close()
        rest_port = _read_rest_port(monitor, start_timeout_s)
        rest_url = f"http://{_HOST}:{rest_port}"
        kv_port = _kv_port(rest_url, deadline=time.monotonic() + start_timeout_s)
        return CouchbaseMock(
            connstr=f"couchbase://{_HOST}:{kv_port}",
            rest_url=rest_url,
            process=process,
            _monitor=monitor,
            _log=log,
        )
    except BaseException:
        if monitor is not None:
            monitor.close()
        process.kill()
        process.wait()
        log.close()
        raise


@contextlib.contextmanager
def couchbase_mock() -> Iterator[CouchbaseMock]:
    """``with couchbase_mock() as mock:`` starts a mock and always stops it."""
    mock = start_couchbase_mock()
    try:
        yield mock
    finally:
        mock.stop()


def _read_rest_port(monitor: socket.socket, timeout_s: float) -> int:
    """The mock writes its REST port as ASCII digits ending with a NUL byte."""
    monitor.settimeout(timeout_s)
    data = b""
    while not data.endswith(b"\0"):
        chunk = monitor.recv(64)
        if not chunk:
            raise CouchbaseMockError(f"mock closed its monitor socket after {data!r}")
        data += chunk
    return int(data.rstrip(b"\0"))


def _kv_port(rest_url: str, deadline: float) -> int:
    """Ask the REST API where the bucket's KV (memcached) service listens."""
    request = urllib.request.Request(
        f"{rest_url}/pools/default/buckets/{BUCKET}", headers={"Authorization": _REST_AUTH}
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                config = json.load(resp)
            return int(config["nodesExt"][0]["services"]["kv"])
        except OSError as e:
            if time.monotonic() > deadline:
                raise CouchbaseMockError(f"mock REST API at {rest_url} did not answer") from e
            time.sleep(0.1)


def _log_tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:] or "(no output)"
