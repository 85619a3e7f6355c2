"""A session: one user's multi-step analysis, the jobs it ran in the order they were submitted.

The stored document keeps a `log` that is only ever appended to (Couchbase sub-document
array_append, a SQLite transaction: concurrent jobs of a session never lose each other's entry):
a `submitted` entry when a job of the session is accepted, an `ended` entry with its status and
top prediction when it ends. What clients see (`session_view`) folds the log into one entry per
job, with the job's live status while its document exists, so a running job shows as running.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from shared.jobs import JobDoc, JobStatus, new_id, parse_rfc3339, rfc3339

# The most jobs one session holds: each adds two log entries (about 600 bytes) to its document.
MAX_SESSION_JOBS = 1000
# What a session id may be: the UUIDs the gateway makes fit it.
SESSION_ID_PATTERN = r"[A-Za-z0-9-]{1,64}"
# The longest a client may ask a session to live.
MAX_SESSION_TTL_S = 30 * 24 * 3600

Session = dict[str, Any]


def new_session(tenant: str, ttl_s: int, now_s: float | None = None) -> Session:
    now_s = time.time() if now_s is None else now_s
    return {
        "id": new_id(),
        "type": "session",
        "tenant": tenant,
        "created_at": rfc3339(now_s),
        "expires_at": rfc3339(now_s + ttl_s),
        "log": [],
    }


def expires_at_s(session: Session) -> float:
    return parse_rfc3339(session["expires_at"]).timestamp()


def submitted_entry(doc: JobDoc, filename: str | None) -> dict[str, Any]:
    """What a session notes of a job when it is accepted: its model and a summary of its input."""
    summary = {key: doc["input"][key] for key in ("content_type", "bytes", "sha256", "width", "height")}
    return {
        "event": "submitted",
        "job_id": doc["id"],
        "model": {"name": doc["model"]["name"], "version": doc["model"]["version"]},
        "input": summary | {"filename": filename},
        "at": doc["created_at"],
    }


def ended_entry(doc: JobDoc) -> dict[str, Any]:
    """What a session notes of a job when it ends, so its result outlives the job's document."""
    return {
        "event": "ended",
        "job_id": doc["id"],
        "status": doc["status"],
        "top_prediction": top_prediction(doc),
        "error_code": (doc.get("error") or {}).get("code"),
        "at": doc["finished_at"] or doc["updated_at"],
    }


def top_prediction(doc: JobDoc) -> dict[str, Any] | None:
    predictions = (doc.get("result") or {}).get("predictions") or []
    return dict(predictions[0]) if predictions else None


def jobs_in(session: Session) -> list[str]:
    """The session's jobs in the order they were submitted."""
    return [entry["job_id"] for entry in session["log"] if entry["event"] == "submitted"]


def session_view(session: Session, live: dict[str, JobDoc]) -> dict[str, Any]:
    """The session as clients see it: one history entry per job, in submission order. A job's
    status and top prediction are its live document's (`live`, by id) while it exists, else those
    its `ended` entry kept. A `submitted` entry with neither belongs to a submission that was not
    accepted after all (its enqueue failed, or an idempotent replay named an earlier job): left out."""
    ended = {entry["job_id"]: entry for entry in session["log"] if entry["event"] == "ended"}
    history = []
    for entry in session["log"]:
        if entry["event"] != "submitted":
            continue
        job_id = entry["job_id"]
        doc, end = live.get(job_id), ended.get(job_id)
        if doc is not None:
            state = {"status": doc["status"], "top_prediction": top_prediction(doc),
                     "error_code": (doc.get("error") or {}).get("code"),
                     "finished_at": doc["finished_at"]}
        elif end is not None:
            state = {"status": end["status"], "top_prediction": end["top_prediction"],
                     "error_code": end["error_code"], "finished_at": end["at"]}
        else:
            continue
        history.append({"job_id": job_id, "model": entry["model"], "input": entry["input"],
                        "submitted_at": entry["at"], **state})
    return {
        "id": session["id"],
        "type": "session",
        "created_at": session["created_at"],
        "expires_at": session["expires_at"],
        "history": history,
        "counts": {status.value: sum(item["status"] == status.value for item in history) for status in JobStatus}
        | {"total": len(history)},
    }


CSV_COLUMNS = ("job_id", "submitted_at", "filename", "model", "version", "status", "label", "class_id", "score",
               "error_code", "finished_at", "content_type", "bytes", "width", "height", "sha256")


def session_csv(view: dict[str, Any]) -> str:
    """A session's history (session_view) as CSV, one row per job, for a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in view["history"]:
        best = entry["top_prediction"] or {}
        source = entry["input"]
        writer.writerow([entry["job_id"], entry["submitted_at"], _cell(source.get("filename")),
                         entry["model"]["name"], entry["model"]["version"], entry["status"], _cell(best.get("label")),
                         best.get("class_id", ""), best.get("score", ""), entry["error_code"] or "",
                         entry["finished_at"] or "", source["content_type"], source["bytes"], source["width"],
                         source["height"], source["sha256"]])
    return out.getvalue()


def _cell(text: str | None) -> str:
    """Text as a spreadsheet shows it, never runs it: a leading = + - @ makes a formula (CSV injection)."""
    if not text:
        return ""
    return f"'{text}" if text[0] in "=+-@\t\r" else text
