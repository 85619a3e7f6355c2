"""Public schemas, for the OpenAPI document: what clients see, never internal fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import models_json_schema

from shared.constants import MAX_TOP_K
from shared.jobs import ErrorCode, JobStatus
from shared.sessions import MAX_SESSION_TTL_S


class Public(BaseModel):
    """What the API sends, field for field: an answer with a field the schema lacks fails the
    schema check (tests/integration/test_openapi_conformance.py)."""

    model_config = ConfigDict(extra="forbid")


class Prediction(Public):
    label: str
    class_id: int = Field(ge=0, description="The index of the class in the model's output (its labels)")
    score: float


class JobResult(Public):
    predictions: list[Prediction]
    batch_size: int
    inference_ms: float


class JobError(Public):
    code: ErrorCode
    message: str
    retryable: bool


class JobInput(Public):
    content_type: str
    bytes: int
    sha256: str
    width: int
    height: int


class ModelInfo(Public):
    """The model version a job is for; the worker that ran it adds the rest."""

    name: str
    version: str
    weights: str | None = None
    weights_sha256: str | None = None
    backend: str | None = None
    device: str | None = None


class ModelInput(Public):
    width: int
    height: int
    resize: Literal["bilinear", "bicubic", "nearest"]
    normalisation: Literal["minus_one_to_one", "zero_to_one", "raw"]
    colour: Literal["rgb"]
    preprocessed_at: Literal["gateway", "worker"]


class ModelVersion(Public):
    version: str
    status: Literal["serving", "no_workers"] = Field(description="no_workers: jobs are accepted and wait queued")
    backlog: int = Field(description="Jobs waiting in this version's queue")
    live_workers: int
    input: ModelInput
    runtimes: list[Literal["keras", "onnxruntime"]]
    default_top_k: int
    max_top_k: int
    batch_sizes: dict[str, int]
    source: str = Field(description="Where the catalogue found it: an entry point or a manifest file")


class ModelPanel(Public):
    url: str = Field(description="The ES module the portal imports for this model: /panels/<model>/<file> or a URL")
    problem: str | None = Field(description="Why the portal refuses to import it (its origin is not allowed)")


class ModelPublic(Public):
    name: str
    task: Literal["image-classification"]
    description: str
    default_version: str = Field(description="The version with the largest share of the jobs naming only the model")
    traffic: dict[str, float] = Field(description="Each version's share, in percent, of the jobs that name only the "
                                      "model: its traffic split (`asyncinfer models split`), else 100 for the latest")
    status: Literal["serving", "no_workers"]
    backlog: int
    live_workers: int
    versions: list[ModelVersion]
    panel: ModelPanel | None = Field(description="The latest version's panel in the portal; null: the generic one")


class ModelList(Public):
    default_model: str = Field(description="The model of a job that names none")
    models: list[ModelPublic]


class HistoryEntry(Public):
    seq: int
    status: JobStatus
    at: str


class JobParams(Public):
    top_k: int = Field(ge=1, le=MAX_TOP_K)
    deadline_s: float | None = Field(default=None, gt=0, description="Seconds within which the job had to start")


class DeliveryAttempt(Public):
    attempt: int
    at: str
    status: int | None = Field(description="The receiver's HTTP status; null: no answer")
    error: str | None
    duration_ms: float


class DeliveryRecord(Public):
    """A terminal job's or a finished batch's webhook delivery (api/delivery/); a job's changes are
    `delivery` events on its stream, a batch's show in GET /v1/batches/{id}."""

    state: Literal["pending", "delivered", "dead"]
    url: str
    attempts: int = Field(description="Attempts in this round (a replay starts a new one)")
    first_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    next_try_at: str | None
    delivered_at: str | None
    replays: int
    history: list[DeliveryAttempt] = Field(description="The latest attempts, oldest first")


class JobPublic(Public):
    id: str
    type: Literal["job"] = "job"
    tenant: str
    batch_id: str | None
    request_id: str | None = Field(default=None, description="The X-Request-ID of the request that submitted it")
    trace_id: str | None = Field(default=None, description="The trace of that request, when tracing is on "
                                 "(32 hex digits)")
    status: JobStatus
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    input: JobInput
    params: JobParams
    model: ModelInfo
    result: JobResult | None
    error: JobError | None
    history: list[HistoryEntry]
    callback_url: str | None = Field(default=None, description="Where the job is POSTed, signed, once it has ended")
    session_id: str | None = Field(default=None, description="The session it was submitted in")
    delivery: DeliveryRecord | None = Field(default=None, description="The webhook's delivery, once tried")
    position: QueuePosition | None = Field(default=None, description="Its place in line, while queued "
                                           "(GET /v1/jobs/{id} only, not listings or events)")


class QueuePosition(Public):
    ahead: int = Field(ge=0, description="Jobs the model's workers take before this one (those they hold count)")
    estimated_start_at: str | None = Field(description="When it should start at the measured drain rate; "
                                           "null until jobs of its model have finished lately")
    drain_per_s: float | None = Field(description="Jobs of its model version finished per second lately")
    measured_at: str


class JobPage(Public):
    jobs: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: no more jobs")


class BatchMember(Public):
    id: str
    status: JobStatus


class BatchPublic(Public):
    id: str
    type: Literal["batch"] = "batch"
    created_at: str
    status: Literal["running", "done"]
    counts: dict[str, int]
    jobs: list[BatchMember]
    callback_url: str | None = Field(default=None, description="Where the batch is POSTed, signed, once every "
                                     "member has ended")
    delivery: DeliveryRecord | None = Field(default=None, description="The batch webhook's delivery, once tried")


class SessionCreate(BaseModel):
    """The body of POST /v1/sessions (optional)."""

    model_config = ConfigDict(extra="forbid")
    ttl_s: int | None = Field(default=None, ge=1, le=MAX_SESSION_TTL_S,
                              description="Seconds the session lives; default ASYNCINFER_SESSION_TTL_S (7 days)")

    @field_validator("ttl_s", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        """JSON's `true` is no number of seconds (pydantic would take it for 1); 60.0 is 60, as JSON Schema says."""
        if isinstance(value, bool):
            raise ValueError("a whole number of seconds, not true or false")
        return value


class SessionInput(Public):
    content_type: str
    bytes: int
    sha256: str
    width: int
    height: int
    filename: str | None = Field(description="The upload's file name, when it had one")


class SessionModel(Public):
    name: str
    version: str


class SessionEntry(Public):
    """One job of a session, in the order they were submitted."""

    job_id: str
    model: SessionModel
    input: SessionInput
    submitted_at: str
    status: JobStatus = Field(description="The job's live status while its document exists, else its last")
    top_prediction: Prediction | None
    error_code: ErrorCode | None
    finished_at: str | None


class SessionPublic(Public):
    id: str
    type: Literal["session"] = "session"
    created_at: str
    expires_at: str = Field(description="When the session and its history are gone (appending never extends it)")
    history: list[SessionEntry]
    counts: dict[str, int] = Field(description="Its jobs by status, and `total`")


class SessionProgress(Public):
    """The data of a session stream's `session` event: its jobs by status, and `total`."""

    session_id: str
    counts: dict[str, int]


class SessionEnded(Public):
    """The data of a session stream's last event, `session-ended`: the session has expired."""

    session_id: str


class StreamTokenPublic(Public):
    token: str = Field(description="Send as `?token=` on this job's (or batch's) event stream, instead of the API key")
    expires_at: int = Field(description="Unix time (seconds) after which the token no longer opens a stream")


class Problem(Public):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, object]] | None = None
    # Sent with a 500, and in the X-Request-ID header of every answer: the id the gateway logged it under.
    request_id: str | None = None


class JobChange(Public):
    """A replayed step of a job's history (a stream resumed with Last-Event-ID); the newest step
    is sent as the whole document instead."""

    id: str
    batch_id: str | None
    session_id: str | None = None
    seq: int
    status: JobStatus
    at: str


class BatchProgress(Public):
    """The data of a batch stream's `progress` event."""

    batch_id: str
    counts: dict[str, int]
    done: bool


class StatusEvent(BaseModel):
    """The data of a `status` event: the job document, or a replayed step of its history."""

    data: JobPublic | JobChange


# The data of each server-sent event, by event name, as components of the OpenAPI document.
EVENT_DATA_SCHEMAS = {"status": "StatusEventData", "progress": "BatchProgress", "delivery": "DeliveryRecord",
                      "position": "QueuePosition", "session": "SessionProgress", "session-ended": "SessionEnded"}


def extra_components() -> dict[str, Any]:
    """Component schemas that no route's return type brings in: the events' data (OpenAPI has no
    way to say it per event) and problems (sent as application/problem+json, which FastAPI's
    `model=` would document as application/json)."""
    models: list[type[BaseModel]] = [StatusEvent, BatchProgress, DeliveryRecord, QueuePosition, SessionProgress,
                                      SessionEnded, Problem]
    _, top = models_json_schema([(model, "serialization") for model in models],
                                ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = top["$defs"]
    components["StatusEventData"] = components.pop("StatusEvent")["properties"]["data"]
    return components


def problem_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """The `responses` of a route that answers these statuses with a problem."""
    return {
        status: {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for status in statuses
    }


# Any route can answer these: too many header fields, an unexpected error (api/problems.py).
ANY_ROUTE_PROBLEMS = (431, 500)
PROBLEM_RESPONSES = problem_responses(400, 401, 404, 409, 413, 415, 422, 429, 503, *ANY_ROUTE_PROBLEMS)


_BINARY = {"type": "string", "format": "binary", "minLength": 1}  # an empty file is refused (400)


def upload_body(field: str, *, many: bool, raw_image: bool) -> dict[str, object]:
    """The OpenAPI request body of an upload route (FastAPI cannot infer it: the handlers read
    the request themselves to accept a raw image body too)."""
    content: dict[str, object] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [field],
                "properties": {
                    field: {"type": "array", "items": _BINARY, "minItems": 1} if many else _BINARY,
                    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                },
            }
        }
    }
    if raw_image:
        content["image/*"] = {"schema": _BINARY}
    return {"requestBody": {"required": True, "content": content}}
