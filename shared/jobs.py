"""The job document and its state machine: the only place transitions are decided."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.errors import IllegalTransition

JobDoc = dict[str, Any]


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# running → running is a redelivered task (the worker that held it died); attempts grows.
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class ErrorCode(StrEnum):
    DECODE_ERROR = "decode_error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    INTERNAL = "internal"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def new_job(
    *,
    tenant: str,
    input_info: dict[str, Any],
    model: dict[str, str],
    top_k: int,
    batch_id: str | None = None,
    job_id: str | None = None,
    deadline_s: float | None = None,
    request_id: str | None = None,
    callback_url: str | None = None,
    trace_id: str | None = None,
    session_id: str | None = None,
) -> JobDoc:
    """A queued job for `model` ({name, version}: the worker that runs it adds its weights, their
    sha256, backend and device); with `deadline_s`, one that must start within that many seconds;
    `request_id`: the request that submitted it (its X-Request-ID), for finding its log lines, and
    `trace_id` its trace when tracing is on (shared/tracing.py); with
    `callback_url`, one whose end the gateway POSTs there (api/delivery/); with `session_id`, one
    of that session's jobs (shared/sessions.py)."""
    at = now_rfc3339()
    params: dict[str, Any] = {"top_k": top_k}
    if deadline_s is not None:
        params["deadline_s"] = deadline_s
    doc: JobDoc = {
        "id": job_id or new_id(),
        "type": "job",
        "tenant": tenant,
        "batch_id": batch_id,
        "request_id": request_id,
        "trace_id": trace_id,
        "status": JobStatus.QUEUED.value,
        "created_at": at,
        "updated_at": at,
        "started_at": None,
        "finished_at": None,
        "attempts": 0,
        "input": input_info,
        "params": params,
        "model": dict(model),
        "result": None,
        "error": None,
        "history": [{"seq": 1, "status": JobStatus.QUEUED.value, "at": at}],
    }
    if callback_url is not None:
        doc["callback_url"] = callback_url
    if session_id is not None:
        doc["session_id"] = session_id
    return doc


def parse_rfc3339(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def start_deadline(doc: JobDoc) -> float | None:
    """The unix time by which the job must have started, when its client set `deadline_s`."""
    deadline_s = doc["params"].get("deadline_s")
    return None if deadline_s is None else parse_rfc3339(doc["created_at"]).timestamp() + deadline_s


def missed_its_start(doc: JobDoc, now_s: float) -> bool:
    """Still queued past its start deadline: it ends `cancelled` with error code `timeout`."""
    deadline = start_deadline(doc)
    return status_of(doc) is JobStatus.QUEUED and deadline is not None and now_s > deadline


def status_of(doc: JobDoc) -> JobStatus:
    return JobStatus(doc["status"])


def seq_of(doc: JobDoc) -> int:
    return int(doc["history"][-1]["seq"])


def transition(doc: JobDoc, to: JobStatus, **fields: Any) -> JobDoc:
    """Return a new document moved to `to`, or raise IllegalTransition.

    `fields` (result, error, model) are merged in. Entering `running` counts an attempt.
    """
    current = status_of(doc)
    if to not in ALLOWED[current]:
        raise IllegalTransition(f"job {doc['id']} is {current.value}; it cannot become {to.value}")
    at = now_rfc3339()
    new = {**doc, **fields, "status": to.value, "updated_at": at}
    if to is JobStatus.RUNNING:
        new["attempts"] = doc["attempts"] + 1
        new["started_at"] = doc["started_at"] or at
    if to.terminal:
        new["finished_at"] = at
    new["history"] = [*doc["history"], {"seq": seq_of(doc) + 1, "status": to.value, "at": at}]
    return new


def error_info(code: ErrorCode, message: str, *, retryable: bool = False) -> dict[str, Any]:
    return {"code": code.value, "message": message, "retryable": retryable}


def public_view(doc: JobDoc) -> JobDoc:
    """The document as clients see it (internal bookkeeping removed)."""
    return {key: value for key, value in doc.items() if not key.startswith("_")}


def canonical_json(doc: dict[str, Any]) -> str:
    """One spelling of a document, for telling whether two are the same."""
    return json.dumps(doc, sort_keys=True)
