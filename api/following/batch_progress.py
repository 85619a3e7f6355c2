"""A batch's progress: counts by status and whether every member is terminal."""

from __future__ import annotations

from typing import Any

from shared.jobs import JobDoc, JobStatus


def batch_counts(statuses: dict[str, str]) -> dict[str, int]:
    counts = {status.value: 0 for status in JobStatus}
    for status in statuses.values():
        counts[status] += 1
    counts["total"] = len(statuses)
    return counts


def batch_is_done(statuses: dict[str, str]) -> bool:
    return all(JobStatus(status).terminal for status in statuses.values())



def batch_view(batch: dict[str, Any], docs: list[JobDoc]) -> dict[str, Any]:
    """The public batch document: each member's status and the counts."""
    statuses = {doc["id"]: doc["status"] for doc in docs}
    view = {
        "id": batch["id"],
        "type": "batch",
        "created_at": batch["created_at"],
        "status": "done" if batch_is_done(statuses) else "running",
        "counts": batch_counts(statuses),
        "jobs": [{"id": doc["id"], "status": doc["status"]} for doc in docs],
    }
    return view | {key: batch[key] for key in ("callback_url", "delivery") if batch.get(key)}
