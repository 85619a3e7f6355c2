"""Names shared by the gateway and the workers, each with the reason it is what it is."""

from typing import Final

# Key prefixes follow docs/contract.md's `job::{id}` so a Couchbase bucket can hold jobs, images
# and batches side by side and be told apart by key alone (no query service needed).
JOB_KEY_PREFIX: Final = "job::"
IMAGE_KEY_PREFIX: Final = "image::"
BATCH_KEY_PREFIX: Final = "batch::"
IDEMPOTENCY_KEY_PREFIX: Final = "idem::"
# A session (shared/sessions.py): one user's multi-step analysis, the jobs it ran.
SESSION_KEY_PREFIX: Final = "session::"
# The store's record of open jobs (shared/store/open_jobs.py) and the recoverer's lease.
OPEN_INDEX_PREFIX: Final = "open::"
LEASE_KEY_PREFIX: Final = "lease::"
# Each tenant's jobs, newest first, for GET /v1/jobs (shared/store/tenant_jobs.py).
TENANT_INDEX_PREFIX: Final = "jobs-of::"

# Celery queues per model version, `asyncinfer.infer.<name>.<version>.<lane>` (shared/queue_names.py):
# its workers consume them alone, so a job never reaches a worker of another model, and Redis keeps
# each as one list, whose lengths are the backlog that admission control and autoscaling read.
INFER_QUEUE_PREFIX: Final = "asyncinfer.infer."
INFER_TASK: Final = "asyncinfer.infer"
# Where kombu's Redis transport keeps delivered, unacknowledged messages (its default name).
UNACKED_KEY: Final = "unacked"

# Jobs being admitted, not yet on the queue (api/admission/backlog.py): counted with the queue's
# length so that concurrent submits on any number of gateways cannot overshoot the backlog limit.
ADMISSION_RESERVATIONS_KEY: Final = "asyncinfer:admitting"
# Longer than storing and queueing a whole batch takes; a leaked reservation blocks no longer.
RESERVATION_TTL_S: Final = 30.0
# Each tenant's open jobs, one sorted set per tenant (api/admission/tenant_limits.py).
TENANT_OPEN_JOBS_PREFIX: Final = "asyncinfer:open-jobs-of:"
# Each client's request bucket (api/rate_limit.py): `key:<digest of its API key>` or `address:<ip>`.
RATE_LIMIT_PREFIX: Final = "asyncinfer:rate:"

# The workers that are alive (shared/presence.py): workers run without Celery's heartbeats and
# gossip, so this sorted set, one entry per worker scored with the time it lapses, is how a gateway
# counts them for the autoscaling signal (shared/scaling.py).
WORKERS_PRESENT_KEY: Final = "asyncinfer:workers"

# One pub/sub channel for every status change: each gateway process holds exactly one
# subscription and fans events out in memory, whatever the number of SSE clients.
EVENTS_CHANNEL: Final = "asyncinfer:events"

# One line per record in the gateway's and the workers' logs.
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Tenant used when no API keys are configured (single-user, local deployments).
DEFAULT_TENANT: Final = "public"

# Content types the workers decode, by the magic bytes the gateway sniffs.
SUPPORTED_IMAGE_TYPES: Final = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif")

# The most predictions any model may return per job (each model declares its own default and
# maximum, shared/models/spec.py): each one is stored in the job document and sent with every event.
MAX_TOP_K: Final = 20
