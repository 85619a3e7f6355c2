"""How every process logs: readable text by default, one JSON object per line with
ASYNCINFER_LOG_FORMAT=json; each record carries the request id and job id of what it is about.

The ids live in context variables: the gateway sets the request's for the whole request (api/problems.py),
including the threads it hands work to (they copy the context), and the worker sets a job's while it works on
that job (workers/inference.py). A log call needs no extra arguments to be traceable.

`trace_id` is, when tracing is on (shared/tracing.py), the trace of the job a worker line is about (the trace
its request began, which the worker's batch span links to), else the current span's: on the gateway the
request's trace. Null when tracing is off or no span is current.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from shared.constants import LOG_FORMAT
from shared.tracing import current_trace_id

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)
# The trace of the job a worker works on (its message's); else a line carries the current span's trace.
trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)

CONTEXT_FIELDS = {"request_id": request_id_var, "job_id": job_id_var, "trace_id": trace_id_var}


class ContextFilter(logging.Filter):
    """Copies the context's ids onto each record (None where unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in CONTEXT_FIELDS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        if getattr(record, "trace_id", None) is None:
            record.trace_id = current_trace_id()
        return True


class TextFormatter(logging.Formatter):
    """LOG_FORMAT, then the ids that are set, as `key=value`."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={value}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None)))
        return f"{line} [{ids}]" if ids else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC, ms), level, logger, message, the ids, and the
    traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            entry[name] = getattr(record, name, None)
        for name in ("method", "path", "status", "duration_ms"):  # the access log's fields
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str | int = "INFO", log_format: Literal["text", "json"] = "text",
                      path: Path | None = None) -> None:
    """The root logger's one handler, on stderr (appending to `path` when given), replacing whatever
    was there."""
    handler: logging.Handler = logging.StreamHandler() if path is None else logging.FileHandler(path)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # With JSON, a warning (Celery's about running as root, a library's deprecation) is one record too.
    logging.captureWarnings(log_format == "json")


@contextmanager
def about_job(job_id: str, request_id: str | None = None, trace_id: str | None = None) -> Iterator[None]:
    """Log lines inside the block name the job (and the request that submitted it, and its trace)."""
    job_token = job_id_var.set(job_id)
    request_token = request_id_var.set(request_id)
    trace_token = trace_id_var.set(trace_id)
    try:
        yield
    finally:
        trace_id_var.reset(trace_token)
        request_id_var.reset(request_token)
        job_id_var.reset(job_token)
