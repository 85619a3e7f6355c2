"""The `delivery` record of a job (its public document shows it): what each attempt did and what is
next. Built here from an attempt's outcome and the retry policy, so the deliverer only carries it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.delivery.backoff import RetryPolicy
from shared.jobs import parse_rfc3339, rfc3339

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# Attempts the record lists (the latest ones); `attempts` counts them all.
HISTORY_KEPT = 50
Record = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """One attempt: the receiver's status (None: no answer), or why it failed."""

    status: int | None
    error: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def result(self) -> str:
        """delivered, rejected (the receiver answered another status) or unanswered."""
        if self.delivered:
            return "delivered"
        return "unanswered" if self.status is None else "rejected"


def unix_s(at: str) -> float:
    return parse_rfc3339(at).timestamp()


def new_round(previous: Record | None, url: str) -> Record:
    """The record a delivery starts from: a new one, or, for a dead one replayed, its history kept."""
    if previous is not None and previous.get("state") != DEAD:
        return previous
    return {
        "state": PENDING, "url": url, "attempts": 0, "first_attempt_at": None, "last_status": None,
        "last_error": None, "next_try_at": None, "delivered_at": None,
        "replays": 0 if previous is None else previous.get("replays", 0) + 1,
        "history": [] if previous is None else previous.get("history", []),
    }


def after_attempt(record: Record, outcome: Outcome, started_s: float, ended_s: float, policy: RetryPolicy) -> Record:
    attempts = record["attempts"] + 1
    first_s = started_s if record["first_attempt_at"] is None else unix_s(record["first_attempt_at"])
    entry = {"attempt": attempts, "at": rfc3339(started_s), "status": outcome.status, "error": outcome.error,
             "duration_ms": round(outcome.duration_ms, 1)}
    new = {**record, "attempts": attempts, "first_attempt_at": rfc3339(first_s), "last_status": outcome.status,
           "last_error": outcome.error, "history": [*record["history"], entry][-HISTORY_KEPT:], "next_try_at": None}
    if outcome.delivered:
        return {**new, "state": DELIVERED, "delivered_at": rfc3339(ended_s)}
    next_s = policy.next_try(attempts, first_s, ended_s)
    if next_s is None:
        return {**new, "state": DEAD}
    return {**new, "state": PENDING, "next_try_at": rfc3339(next_s)}


def dead_letter(target: str, record: Record) -> dict[str, Any]:
    """What the dead-letter list shows of a delivery given up: `target` is the job's id, or
    batch:<id> (what `asyncinfer webhooks replay` takes)."""
    return {"target": target, "url": record["url"], "attempts": record["attempts"],
            "last_status": record["last_status"], "last_error": record["last_error"],
            "first_attempt_at": record["first_attempt_at"], "dead_at": record["history"][-1]["at"]}
