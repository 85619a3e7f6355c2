"""One JSON object per line for everything a process writes, not only its log records.

Native libraries (TensorFlow's C++ logging through absl, CUDA) write to file descriptor 2 directly,
around Python's logging. With ASYNCINFER_LOG_FORMAT=json the worker routes its descriptors 1 and 2
through a pipe to a small forked relay process, which passes lines that are JSON objects already
through and wraps every other non-empty line as a record of logger `native` (level INFO, the line as
`message`). The relay is a process, not a thread: it drains the pipe to its end whatever way the
worker exits (os._exit, a crash, SIGKILL), then exits.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime

NATIVE_LOGGER = "native"


def as_json_line(line: str) -> str:
    """`line` itself when it is a JSON object already, else a record of logger `native` carrying it."""
    if line.startswith("{") and line.endswith("}"):
        try:
            json.loads(line)
            return line
        except ValueError:
            pass
    return json.dumps({
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": "INFO", "logger": NATIVE_LOGGER, "message": line,
        "request_id": None, "job_id": None, "trace_id": None,
    }, ensure_ascii=False)


def _relay(source: int, sink: int) -> None:
    pending = b""
    while chunk := os.read(source, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            _write(sink, raw)
    _write(sink, pending)


def _write(sink: int, raw: bytes) -> None:
    line = raw.decode(errors="replace").rstrip("\r")
    if line.strip():
        os.write(sink, (as_json_line(line) + "\n").encode())


def relay_output_as_json() -> None:
    """From here on, every line this process writes to descriptors 1 and 2 reaches descriptor 2 as
    JSON. Call it early, before threads start (it forks)."""
    sink = os.dup(2)
    source, pipe_in = os.pipe()
    if os.fork() == 0:  # the relay: it ends when every writer has gone
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the group: drain, then go
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.close(pipe_in)
            os.dup2(sink, 1)
            os.dup2(sink, 2)
            _relay(source, sink)
        finally:
            os._exit(0)
    os.close(source)
    os.close(sink)
    os.dup2(pipe_in, 1)
    os.dup2(pipe_in, 2)
    os.close(pipe_in)
