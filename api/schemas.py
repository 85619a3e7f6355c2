"""Public schemas, for the OpenAPI document: what clients see, never internal fields."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    label: str
    class_id: int = Field(ge=0, lt=1000)
    score: float


class JobResult(BaseModel):
    predictions: list[Prediction]
    batch_size: int
    inference_ms: float


class JobError(BaseModel):
    code: Literal["decode_error", "timeout", "worker_lost", "internal"]
    message: str
    retryable: bool


class JobInput(BaseModel):
    content_type: str
    bytes: int
    sha256: str
    width: int
    height: int


class ModelInfo(BaseModel):
    name: str
    weights: str
    backend: str
    device: str


class HistoryEntry(BaseModel):
    seq: int
    status: str
    at: str


JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobPublic(BaseModel):
    id: str
    type: Literal["job"] = "job"
    tenant: str
    batch_id: str | None
    status: JobStatusName
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    input: JobInput
    params: dict[str, int]
    model: ModelInfo | None
    result: JobResult | None
    error: JobError | None
    history: list[HistoryEntry]


class BatchMember(BaseModel):
    id: str
    status: JobStatusName


class BatchPublic(BaseModel):
    id: str
    type: Literal["batch"] = "batch"
    created_at: str
    status: Literal["running", "done"]
    counts: dict[str, int]
    jobs: list[BatchMember]


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, object]] | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 404, 409, 413, 415, 422, 429, 503)
}


_BINARY = {"type": "string", "format": "binary"}


def upload_body(field: str, *, many: bool, raw_image: bool) -> dict[str, object]:
    """The OpenAPI request body of an upload route (FastAPI cannot infer it: the handlers read
    the request themselves to accept a raw image body too)."""
    content: dict[str, object] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [field],
                "properties": {
                    field: {"type": "array", "items": _BINARY} if many else _BINARY,
                    "top_k": {"type": "integer", "minimum": 1, "maximum": 20},
                },
            }
        }
    }
    if raw_image:
        content["image/*"] = {"schema": _BINARY}
    return {"requestBody": {"required": True, "content": content}}
