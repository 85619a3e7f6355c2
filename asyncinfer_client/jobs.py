"""A job as the gateway returns it: typed fields over the document (`doc` keeps all of it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Prediction:
    label: str
    class_id: int
    score: float


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
    def model(self) -> str:
        """`name@version` of the model version the job is for."""
        model = self.doc.get("model") or {}
        return f"{model.get('name')}@{model.get('version')}"

    @property
    def error_code(self) -> str | None:
        """decode_error, timeout, worker_lost or internal for a job that failed (or timed out queued)."""
        return (self.doc.get("error") or {}).get("code")
