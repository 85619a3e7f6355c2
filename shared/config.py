"""The one typed settings object, read from `ASYNCINFER_*` environment variables."""

from __future__ import annotations

import json
import math
import re
import socket
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, NonNegativeInt, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import SettingsInvalid

if TYPE_CHECKING:
    from shared.models.catalogue import Catalogue

_PLACEHOLDER_SECRETS = {"", "changeme", "password", "secret"}
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _colon_pairs(value: object, usage: str) -> object:
    """`a:b,c:d` (split at each item's first colon) as a dict, or JSON as given; ValueError(usage) otherwise."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("{"):
        return json.loads(value)
    pairs = [item.split(":", 1) for item in value.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(usage)
    return {left.strip(): right.strip() for left, right in pairs}


def _origins(value: object, setting: str, *, wildcard: bool) -> object:
    """`https://a.example,http://b:8080` as a list of origins; ValueError naming `setting` otherwise."""
    if not isinstance(value, str):
        return value
    origins = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
    for origin in origins:
        if not (wildcard and origin == "*") and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ValueError(f"{setting}: {origin!r} is not an origin (scheme://host[:port])")
    return origins


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASYNCINFER_", env_file=None, extra="ignore")

    environment: Literal["development", "production"] = "development"

    # --- services -------------------------------------------------------------------------
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis itself, or with ASYNCINFER_MESH=consul the local sidecar's upstream listener "
        "(e.g. redis://127.0.0.1:16379/0): its port becomes the redis upstream's local bind port.",
    )
    redis_wait_s: float = Field(
        default=30.0, ge=0, description="How long a worker waits at start-up for Redis to answer before it gives up."
    )
    store: str = Field(
        default="sqlite:///./asyncinfer-data/jobs.db",
        description="`sqlite:///path` (embedded) or `couchbase://host` / `couchbases://host`.",
    )
    couchbase_username: str = "Administrator"
    couchbase_password: SecretStr = SecretStr("password")
    couchbase_bucket: str = "asyncinfer"
    couchbase_scope: str = "_default"
    couchbase_collection: str = "_default"
    couchbase_kv_timeout_s: float = 2.5
    couchbase_connect_timeout_s: float = 10.0
    # --- service mesh (ASYNCINFER_MESH=consul; see shared/mesh.py) ----------------------
    # The gateway and each worker register with the local Consul agent, with a sidecar whose
    # upstreams are the ports of ASYNCINFER_REDIS_URL (and, with Couchbase, ASYNCINFER_STORE).
    mesh: Literal["none", "consul"] = "none"
    consul_url: str = "http://127.0.0.1:8500"
    # With ACLs on (default deny), the token this process registers itself and its sidecar with: a
    # token with the service's identity (service "<name>" and "<name>-sidecar-proxy" write). Required
    # in production with the mesh; empty: none sent (an agent with ACLs off).
    consul_token: SecretStr = SecretStr("")
    # In both, `%h` stands for this host's name (Celery's --hostname convention): replicas of one
    # container with one setting (`docker compose up --scale worker=N`, worker-%h) get one each.
    consul_service_id: str = Field(
        default="", description="This process's registration id, `%h` replaced by the host name; empty: its "
        "service name (gateway or worker)."
    )
    consul_service_address: str = Field(
        default="", description="Where the agent's checks and other sidecars reach this process, `%h` replaced "
        "by the host name; empty: ASYNCINFER_HOST (127.0.0.1 when that is a wildcard, and for workers)."
    )
    consul_sidecar_port: int = Field(
        default=0, ge=0, le=65535, description="The sidecar's public mTLS listener; 0: Consul picks one."
    )
    consul_check_interval_s: float = Field(default=10.0, gt=0)
    # A worker's check is a TTL its consumer loop refreshes every third of this: it turns
    # critical when the worker stops consuming, not only when the process is gone.
    consul_worker_ttl_s: float = Field(default=30.0, gt=0)
    # How long start-up waits for the agent before giving up.
    consul_wait_s: float = Field(default=60.0, ge=0)

    # --- gateway --------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    gateway_processes: int = Field(
        default=1, ge=1, le=64, description="Gateway processes sharing the port (`asyncinfer api`, `asyncinfer up`); "
        "each has its own event subscription, and /metrics answers for all of them together."
    )
    max_image_bytes: int = 10 * 1024 * 1024
    # Pillow's own bomb guard warns at ~89 MP; we refuse earlier, before decoding anything.
    max_image_pixels: int = 40_000_000
    min_image_side_px: int = 8
    max_batch_files: int = 256
    # All the files of one batch request together; the gateway holds them in memory while it checks them.
    max_batch_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # Header fields: their bytes together and their number (more: 431). h11 also refuses, with a
    # plain 400 before any app code runs, a head that grows past the byte limit while it arrives.
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=1)
    backlog_limit: int = 10_000
    # Each tenant's jobs accepted and not yet ended (api/admission/tenant_limits.py); over it, that
    # tenant alone gets 429. 0: no limit per tenant (the backlog limit still holds).
    tenant_max_outstanding: int = Field(
        default=0, ge=0, description="Most jobs one tenant may have queued or running; 0: no limit per tenant."
    )
    # NoDecode: the env value is `tenant:limit,…` (or JSON), parsed by _parse_tenant_limits below.
    tenant_limits: Annotated[dict[str, NonNegativeInt], NoDecode] = Field(
        default_factory=dict, description="Per-tenant exceptions to ASYNCINFER_TENANT_MAX_OUTSTANDING: "
        "`tenant:limit,…`; 0 lifts a tenant's limit.",
    )
    max_sse_streams: int = 10_000
    sse_ping_s: float = Field(
        default=15.0, gt=0, description="Longest time between an event stream's keep-alive comments; each "
        "stream picks its own interval between half this and this, so streams opened together do not ping together."
    )
    # A stream or long poll that hears nothing for this long re-reads the store: a lost publish
    # (Redis blip) delays its client by at most this, at one store read per idle interval.
    stream_resync_s: float = Field(
        default=5.0, gt=0, description="Longest wait before an idle event stream or long poll re-reads the job."
    )
    position_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often a queued job's event stream sends its `position` (and "
        "the longest a position read from Redis is reused)."
    )
    # NoDecode: the env value is `key:tenant,…` (or JSON), parsed by _parse_api_keys below.
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="`key:tenant,…`, the keys themselves: for development and tests "
        "(refused in production; use hashed entries). All three key settings empty: no authentication."
    )
    # Hashed entries (shared/api_keys.py): `key-id:sha256:<hex>:tenant`; `asyncinfer keys new` prints one.
    api_key_entries: str = Field(
        default="", description="Hashed API key entries, `key-id:sha256:<hex>:tenant`, separated by `,` or new lines."
    )
    api_keys_file: str = Field(
        default="", description="A file of hashed API key entries, one a line (`#` comments), read again on "
        "SIGHUP and within a second of a change."
    )
    # Event stream tokens (api/stream_tokens.py): HMAC-signed, so that every gateway verifies any gateway's.
    stream_token_secret: SecretStr = Field(
        default=SecretStr(""), description="The key stream tokens are signed with; every gateway needs the same. "
        "Empty: in development, a random one kept in Redis for every gateway of that Redis; required in production "
        "when API keys are on."
    )
    stream_token_ttl_s: float = Field(
        default=300.0, gt=0, le=3600, description="How long a stream token may be used to open an event stream."
    )
    # `none`: the gateway authenticates no one, on purpose (behind a proxy that does); production
    # refuses to start without keys unless this says so (api/start_checks.py).
    auth: Literal["keys", "none"] = "keys"
    # --- operational endpoints and request rates ------------------------------------------
    metrics_token: SecretStr | None = Field(
        default=None, description="When set, GET /metrics answers only `Authorization: Bearer <token>`."
    )
    api_docs: bool | None = Field(
        default=None, description="Serve /docs and /openapi.json; unset: in development, not in production."
    )
    rate_limit_per_s: float = Field(
        default=0.0, ge=0, description="Requests per second each API key (each client address when there are no "
        "keys) may make to /v1, on all gateways together; 0: no limit."
    )
    rate_limit_burst: int = Field(
        default=0, ge=0, description="How many requests a client may make at once before its rate applies; "
        "0: twice the rate (at least 1)."
    )

    # `json`: one JSON object per line (time, level, logger, message, request_id, job_id, trace_id), for a log
    # pipeline; `text` (default): for people (shared/logs.py).
    log_format: Literal["text", "json"] = "text"
    # Browser origins allowed to call the API from another origin (CORS); empty: none (same origin only).
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed cross-origin requests, separated by `,`; empty: none.",
    )

    # Origins (beside the gateway's own) the portal may import model panels from (shared/models/panel.py); a
    # panel declared at another origin shows an error card instead, and the page's CSP admits only these.
    panel_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins model panels may be loaded from, separated by `,`; empty: "
        "panels shipped with their plugins (served by the gateway) only.",
    )

    # --- models (shared/models/): plugins from the `asyncinfer.models` entry points, and manifests ---
    default_model: str = Field(
        default="mobilenet_v2", description="The model of a job that names none: `name` or `name@version`."
    )
    model_dirs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Directories of model manifests (`*.toml`), separated by `:`; read again "
        "whenever one changes.",
    )

    # Where uploads become the model's pixels (its declared size and resize). `gateway` (default): the gateway decodes
    # every upload anyway to validate it, so it finishes preprocessing and stores 150 KB of pixels;
    # workers only infer. `worker`: the original upload is stored and each worker decodes it.
    preprocess_at: Literal["gateway", "worker"] = "gateway"

    # --- jobs -----------------------------------------------------------------------------
    job_ttl_s: int = 7 * 24 * 3600
    # A session's life when its creator names none (POST /v1/sessions `ttl_s`, at most 30 days).
    session_ttl_s: int = Field(default=7 * 24 * 3600, ge=1, le=30 * 24 * 3600)
    max_attempts: int = 3
    sweep_interval_s: float = 60.0
    # Recovery of stranded jobs (api/recovery.py): a gateway holding the recoverer's lease looks,
    # this often, for open jobs that no message in Redis will deliver. A job must have stood still
    # this long, and be seen without a message on two passes in a row, before it is queued again.
    recovery_interval_s: float = Field(default=15.0, gt=0)
    recovery_grace_s: float = Field(default=30.0, ge=0)

    # --- webhooks (api/delivery/): a job's end POSTed, signed, to its callback_url ------------
    webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="The key deliveries are signed with (Standard Webhooks): `whsec_` and "
        "base64, or any text; empty: a submit with a callback_url is refused.",
    )
    webhook_allow_http: bool = Field(
        default=False, description="Accept `http` callback URLs (development and tests only; refused in production)."
    )
    # NoDecode: the env value is `host,10.0.0.0/8,…`, parsed by _parse_allowed_hosts below.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host names, addresses and networks (CIDR) a callback may reach although "
        "they are private, loopback or link-local, separated by `,`.",
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=50, description="Attempts before a delivery is dead.")
    webhook_max_total_s: float = Field(
        default=3600.0, gt=0, description="Longest time from a delivery's first attempt to its last."
    )
    webhook_attempt_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Longest one attempt may take.")
    webhook_backoff_base_s: float = Field(default=1.0, gt=0, description="The wait after the first failed attempt.")
    webhook_backoff_max_s: float = Field(default=300.0, gt=0, description="The longest wait between two attempts.")
    # A claimed delivery is invisible to other gateways this long; one whose gateway died comes back after it.
    webhook_lease_s: float = Field(default=30.0, gt=0)
    webhook_poll_interval_s: float = Field(default=0.5, gt=0, description="How often a gateway looks for due "
                                           "deliveries when it found none.")
    webhook_batch_check_s: float = Field(default=2.0, gt=0, le=300, description="How often a batch's webhook "
                                         "looks whether every member has ended (it is sent once they all have).")
    webhook_concurrency: int = Field(default=4, ge=1, le=64, description="Deliveries in flight per gateway.")

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _parse_allowed_hosts(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_webhook_bounds(self) -> Settings:
        if self.webhook_lease_s <= self.webhook_attempt_timeout_s:
            raise ValueError(f"ASYNCINFER_WEBHOOK_LEASE_S ({self.webhook_lease_s:g}) must exceed "
                             f"ASYNCINFER_WEBHOOK_ATTEMPT_TIMEOUT_S ({self.webhook_attempt_timeout_s:g}), or a "
                             "slow attempt's delivery would be claimed twice")
        if self.environment == "production" and self.webhook_allow_http:
            raise ValueError("ASYNCINFER_WEBHOOK_ALLOW_HTTP is for development and tests; unset it in production")
        return self

    # --- queue ----------------------------------------------------------------------------
    # Longer than the slowest batch (a few seconds on CPU), short enough that a crashed
    # worker's unacknowledged jobs come back within about a minute.
    visibility_timeout_s: int = 60

    # --- autoscaling signal -----------------------------------------------------------------
    # The gateway's /metrics says how many workers the unfinished work needs (shared/scaling.py):
    # ceil(outstanding jobs / target per worker), within min..max, for an external autoscaler.
    # The default target is about two batches of a CPU worker: one running, one waiting.
    scale_target_jobs_per_worker: int = Field(
        default=32, gt=0, description="Outstanding jobs (waiting, held by workers, being admitted) per worker."
    )
    scale_min_workers: int = Field(default=1, ge=0, description="Fewest workers desired (0: scale to zero).")
    scale_max_workers: int = Field(default=10, ge=1, description="Most workers desired, however long the backlog.")
    # Each worker refreshes its entry in Redis every third of this (workers/presence.py); one not
    # heard from for this long no longer counts as live.
    worker_presence_ttl_s: float = Field(default=15.0, gt=0)
    # The local autoscaler (cli/autoscale.py: `asyncinfer autoscale`, `asyncinfer up --workers MIN..MAX`)
    # scales up at once, down only after the desired count stayed lower for this long, and to zero
    # only after nothing was outstanding for the longer idle period.
    scale_down_after_s: float = Field(default=30.0, ge=0)
    scale_to_zero_after_s: float = Field(default=120.0, ge=0)
    autoscaler_interval_s: float = Field(default=1.0, gt=0)
    autoscaler_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Port of the local autoscaler's /metrics; unset: not served."
    )

    @model_validator(mode="after")
    def _check_keras_options(self) -> Settings:
        if self.runtime != "keras" and (self.xla or self.mixed_precision):
            raise ValueError("ASYNCINFER_XLA and ASYNCINFER_MIXED_PRECISION apply to ASYNCINFER_RUNTIME=keras only")
        if self.mixed_precision and self.device == "cpu":
            raise ValueError("ASYNCINFER_MIXED_PRECISION=true needs a GPU, not ASYNCINFER_DEVICE=cpu")
        return self

    @model_validator(mode="after")
    def _check_scaling_bounds(self) -> Settings:
        if self.scale_min_workers > self.scale_max_workers:
            raise ValueError(f"ASYNCINFER_SCALE_MIN_WORKERS ({self.scale_min_workers}) is above "
                             f"ASYNCINFER_SCALE_MAX_WORKERS ({self.scale_max_workers})")
        return self

    # --- worker ---------------------------------------------------------------------------
    model: str = Field(
        default="", description="The one model this worker serves, `name` or `name@version` (its latest); empty: "
        "ASYNCINFER_DEFAULT_MODEL. `asyncinfer worker --model` sets it."
    )
    weights: str = Field(
        default="default", description="`default` (the model's own: ImageNet's file in Keras' cache for the built-in "
        "models, `imagenet` is the same), `random` (explicit random weights, for tests) or a file path."
    )
    random_seed: int = 1234
    runtime: Literal["keras", "onnxruntime"] = Field(
        default="keras",
        description="`keras` (Keras on TensorFlow) or `onnxruntime` (the same weights exported to ONNX).",
    )
    # Exported ONNX models live here, one file per weights hash (workers/model/onnx_runtime.py).
    cache_dir: str = "~/.cache/asyncinfer"
    intra_op_threads: int = Field(
        default=0, ge=0, le=256, description="Threads inside one inference call; 0: one per core."
    )
    device: Literal["auto", "cpu", "gpu"] = "auto"
    max_batch_size: int = Field(default=0, ge=0, le=1024, description="0: chosen by device.")
    # With max_batch_size 0: measure images/s per batch size at start-up and take the smallest
    # batch within 95% of the best, cached per model, weights, runtime and device
    # (workers/model/batch_sweep.py). Off by default, so that a CPU worker starts fast.
    batch_size_sweep: bool = False
    # Keras only, off by default: XLA-compiled forward pass; `mixed_float16` (GPU only: refused on CPU).
    xla: bool = False
    mixed_precision: bool = False
    max_batch_wait_ms: int = 20
    # A batch also starts once no job arrived for this long: under load jobs come a Redis round
    # trip apart and batches fill.
    batch_idle_ms: int = Field(default=2, ge=0, le=1000)
    # A batch's first job starts at once when nothing else waits in the model's queues, so a lone
    # job waits neither the idle time nor the batch wait (workers/idle_flush.py). Off: it waits
    # for company that has not been queued yet, as a pool tuned for full batches may want.
    batch_start_alone: bool = True
    # Prometheus metrics of this worker process (workers/metrics.py) at http://host:port/metrics.
    # Off by default: several workers on one host would collide on one port.
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Port of the worker's /metrics; unset: not served."
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Address the worker's /metrics listens on (0.0.0.0: every interface)."
    )
    # A store outage shorter than this does not lose a result: the worker keeps retrying its
    # writes. Past it, the job goes back on the queue (workers/worker.py).
    store_retry_s: float = Field(default=300.0, ge=0)
    # Longest a forward pass may run. A runtime stuck in native code cannot be interrupted, so
    # past this the worker notes the timeout on the pass's jobs and exits; they come back each
    # alone, and the one that hangs fails with `timeout` after its attempts (workers/time_limit.py).
    inference_timeout_s: float = Field(default=120.0, gt=0)

    # --- fault injection (tests only; refused in production) --------------------------------
    # A worker exits at once, as if the image killed it, when it is about to infer the image
    # with this sha256 (workers/faults.py).
    fault_crash_on_sha256: str = ""
    # A worker's forward pass hangs (sleeps for an hour) when it holds the image with this sha256.
    fault_hang_on_sha256: str = ""
    # A worker sleeps this long before each forward pass (a slow or hung inference).
    fault_inference_delay_s: float = Field(default=0.0, ge=0)
    # `on`: the gateway serves routes that fail on purpose, hidden from the schema (api/routes/faults.py).
    fault_injection: Literal["off", "on"] = "off"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        """Accept `key1:tenant1,key2:tenant2` as well as JSON."""
        return _colon_pairs(value, "ASYNCINFER_API_KEYS: use key:tenant,key2:tenant2")

    @field_validator("api_key_entries")
    @classmethod
    def _check_api_key_entries(cls, value: str) -> str:
        from shared.api_keys import parse_entries

        parse_entries(value, "ASYNCINFER_API_KEY_ENTRIES")  # KeyEntryInvalid is a ValueError
        return value

    @model_validator(mode="after")
    def _refuse_plain_keys_in_production(self) -> Settings:
        """A leaked production configuration must not leak keys: only their hashes are accepted there."""
        if self.environment != "production":
            return self
        if self.api_keys:
            raise ValueError("ASYNCINFER_API_KEYS holds plain keys, refused in production: use hashed entries "
                             "(ASYNCINFER_API_KEYS_FILE or ASYNCINFER_API_KEY_ENTRIES; `asyncinfer keys new`)")
        if self.keys_configured and not self.stream_token_secret.get_secret_value():
            raise ValueError("ASYNCINFER_STREAM_TOKEN_SECRET is empty: set one secret shared by every gateway")
        return self

    @field_validator("tenant_limits", mode="before")
    @classmethod
    def _parse_tenant_limits(cls, value: object) -> object:
        """Accept `tenant1:100,tenant2:0` as well as JSON (pydantic then checks each limit is a number)."""
        return _colon_pairs(value, "ASYNCINFER_TENANT_LIMITS: use tenant:limit,tenant2:limit2 (0: no limit)")

    def outstanding_limit_of(self, tenant: str) -> int:
        """The most jobs `tenant` may have open; 0: no limit."""
        return self.tenant_limits.get(tenant, self.tenant_max_outstanding)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return _origins(value, "ASYNCINFER_CORS_ORIGINS", wildcard=True)

    @field_validator("panel_origins", mode="before")
    @classmethod
    def _split_panel_origins(cls, value: object) -> object:
        return _origins(value, "ASYNCINFER_PANEL_ORIGINS", wildcard=False)

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_model_dirs(cls, value: object) -> object:
        return [part for part in value.split(":") if part.strip()] if isinstance(value, str) else value

    @field_validator("default_model", "model")
    @classmethod
    def _check_model_ref(cls, value: str) -> str:
        from shared.errors import BadRequest
        from shared.models.spec import ModelRef

        try:
            return str(ModelRef.parse(value)) if value else value
        except BadRequest as e:
            raise ValueError(e.detail) from None

    @field_validator("consul_service_id", "consul_service_address")
    @classmethod
    def _expand_hostname(cls, value: str) -> str:
        return value.replace("%h", socket.gethostname())

    @field_validator("store")
    @classmethod
    def _check_store_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "couchbase://", "couchbases://")):
            raise ValueError(f"{value!r}: use sqlite:///path or couchbase://host (couchbases:// with TLS)")
        return value

    @model_validator(mode="after")
    def _refuse_faults_in_production(self) -> Settings:
        if self.environment == "production" and (
            self.fault_crash_on_sha256 or self.fault_hang_on_sha256 or self.fault_inference_delay_s
            or self.fault_injection == "on"
        ):
            raise ValueError("ASYNCINFER_FAULT_* settings are for tests; unset them in production")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        """Outside development, a placeholder password is a configuration mistake, not a default."""
        if (
            self.environment == "production"
            and self.store_kind == "couchbase"
            and self.couchbase_password.get_secret_value() in _PLACEHOLDER_SECRETS
        ):
            raise ValueError("ASYNCINFER_COUCHBASE_PASSWORD is a placeholder; set a real one")
        return self

    @model_validator(mode="after")
    def _refuse_plain_couchbase_to_another_host_in_production(self) -> Settings:
        """Couchbase's own protocol carries the password and every document in the clear without TLS;
        on this host (a mesh sidecar's listener, which adds mTLS) that is fine."""
        if self.environment == "production" and self.store.startswith("couchbase://"):
            host = urlsplit(self.store).hostname or ""
            if host not in _LOCAL_HOSTS:
                raise ValueError(f"ASYNCINFER_STORE={self.store} reaches {host} without TLS; use couchbases://, or "
                                 "a mesh sidecar's local listener")
        return self

    @model_validator(mode="after")
    def _refuse_the_mesh_without_a_token_in_production(self) -> Settings:
        """The mesh's whole security is its intentions; an agent that takes registrations without a token
        (ACLs off) lets anyone rewrite them."""
        if self.environment == "production" and self.mesh == "consul" and not self.consul_token.get_secret_value():
            raise ValueError("ASYNCINFER_MESH=consul in production needs ASYNCINFER_CONSUL_TOKEN: a Consul ACL token "
                             "with this service's identity (the agent must run with ACLs, default deny)")
        return self

    @model_validator(mode="after")
    def _refuse_keys_with_auth_none(self) -> Settings:
        if self.auth == "none" and self.keys_configured:
            raise ValueError("ASYNCINFER_AUTH=none and API keys are both set; choose one")
        return self

    @property
    def keys_configured(self) -> bool:
        """Whether any source of API keys is set (shared/api_keys.py reads them)."""
        return bool(self.api_keys or self.api_key_entries or self.api_keys_file)

    @property
    def api_docs_served(self) -> bool:
        return self.environment == "development" if self.api_docs is None else self.api_docs

    @property
    def rate_limit_burst_size(self) -> int:
        return self.rate_limit_burst or max(1, math.ceil(2 * self.rate_limit_per_s))

    @property
    def store_kind(self) -> Literal["sqlite", "couchbase"]:
        return "sqlite" if self.store.startswith("sqlite:///") else "couchbase"

    @property
    def sqlite_path(self) -> str:
        return self.store.removeprefix("sqlite:///")

    def catalogue(self) -> Catalogue:
        """The models this installation serves (plugins and the manifests of model_dirs)."""
        from shared.models.catalogue import Catalogue

        return Catalogue.discover(default_model=self.default_model, manifest_dirs=self.model_dirs)

    def with_overrides(self, **overrides: object) -> Settings:
        """A copy with some fields changed, validated like the original (model_copy would not be)."""
        return type(self).model_validate({**self.model_dump(), **overrides})


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each setting that is wrong, by its environment variable."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        name = f"ASYNCINFER_{field.upper()}" if field else "settings"
        problems.append(f"{name}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


@lru_cache
def get_settings() -> Settings:
    """The process's settings from its environment; SettingsInvalid names what is wrong."""
    try:
        return Settings()
    except ValidationError as e:
        raise SettingsInvalid(describe_validation_error(e)) from None
