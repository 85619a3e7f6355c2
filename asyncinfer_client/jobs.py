"""A job as the gateway returns it: typed fields over the document (`doc` keeps all of it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Prediction:
    label: str
    class_id: int
    score: float


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Position:
    """A queued job's place in line: `ahead` jobs go before it; it should start at
    `estimated_start_at` (None until the gateway has measured its model's drain rate)."""

    ahead: int
    estimated_start_at: datetime | None
    drain_per_s: float | None
    measured_at: datetime

    @classmethod
    def of(cls, data: dict[str, Any]) -> Position:
        start = data.get("estimated_start_at")
        return cls(int(data["ahead"]), None if start is None else _time(start), data.get("drain_per_s"),
                   _time(data["measured_at"]))


OnPosition = Callable[[str, Position], None]
"""Called with the job's id and its position, as each one arrives."""


@dataclass(frozen=True)
class Job:
    id: str
    status: str  # queued, running, succeeded, failed or cancelled
    attempts: int
    doc: dict[str, Any]  # the whole job document (docs/contract.md)

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Job:
        return cls(doc["id"], doc["status"], int(doc.get("attempts", 0)), doc)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def predictions(self) -> list[Prediction]:
        """The top predictions of a succeeded job; empty otherwise."""
        result = self.doc.get("result") or {}
        return [Prediction(p["label"], int(p["class_id"]), float(p["score"])) for p in result.get("predictions", [])]

    @property
    def position(self) -> Position | None:
        """Its place in line when it was read queued (GET answers carry it; events send it apart)."""
        data = self.doc.get("position")
        return None if data is None else Position.of(data)

    @property
    def model(self) -> str:
        """`name@version` of the model version the job is for."""
        model = self.doc.get("model") or {}
        return f"{model.get('name')}@{model.get('version')}"

    @property
    def session_id(self) -> str | None:
        """The session it was submitted in (AsyncClient.create_session), if any."""
        return self.doc.get("session_id")

    @property
    def error_code(self) -> str | None:
        """decode_error, timeout, worker_lost or internal for a job that failed (or timed out queued)."""
        return (self.doc.get("error") or {}).get("code")
