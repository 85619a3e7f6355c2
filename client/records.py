"""What the submit command records for each file: one `FileResult`, whatever happened to it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shared.jobs import JobStatus

# Job statuses, as the gateway reports them.
SUCCEEDED = JobStatus.SUCCEEDED.value
FAILED = JobStatus.FAILED.value
CANCELLED = JobStatus.CANCELLED.value
# The gateway refused the file itself (413, 415, 422, 400): sending it again changes nothing.
REJECTED = "rejected"
# Nothing final is known (unreadable file, retries exhausted, timed out): worth another run.
ERROR = "error"

# Predictions per file unless --top-k says otherwise (within the model's own maximum).
SUBMIT_TOP_K = 5


@dataclass(frozen=True)
class FileResult:
    file: str
    status: str
    sha256: str | None = None
    job_id: str | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    error_code: str | None = None
    error: str | None = None
    model: str | None = None  # name@version of the model that answered

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def reason(self) -> str:
        """One line saying why it did not succeed."""
        code = f"{self.error_code}: " if self.error_code else ""
        return f"{self.status} ({code}{self.error or 'no detail'})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileResult:
        return cls(
            file=str(data["file"]),
            status=str(data["status"]),
            sha256=data.get("sha256"),
            job_id=data.get("job_id"),
            model=data.get("model"),
            predictions=list(data.get("predictions") or []),
            error_code=data.get("error_code"),
            error=data.get("error"),
        )


def one_line(text: str) -> str:
    """Messages go into one JSONL or CSV line each, so a cut-off last line is easy to spot."""
    return " ".join(text.split())


def from_job(file: str, sha256: str, doc: dict[str, Any]) -> FileResult:
    """The result of a terminal job document."""
    error = doc.get("error") or {}
    result = doc.get("result") or {}
    model = doc.get("model") or {}
    return FileResult(
        file=file,
        status=str(doc["status"]),
        sha256=sha256,
        job_id=str(doc["id"]),
        model=f"{model['name']}@{model['version']}" if model.get("name") else None,
        predictions=list(result.get("predictions") or []),
        error_code=error.get("code"),
        error=one_line(str(error["message"])) if error.get("message") else None,
    )
