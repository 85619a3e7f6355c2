"""One exception class per kind of failure at a boundary; the gateway maps them to problem+json."""

from __future__ import annotations


class AsyncInferError(Exception):
    """Base class: `status` and `title` say how the gateway reports it."""

    status = 500
    title = "Internal error"
    retry_after_s: int | None = None

    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class BadRequest(AsyncInferError):
    status, title = 400, "Malformed request"


class InvalidApiKey(AsyncInferError):
    status, title = 401, "Missing or wrong API key"


class InvalidMetricsToken(AsyncInferError):
    status, title = 401, "Missing or wrong metrics token"


class RateLimited(AsyncInferError):
    """This client (its API key, or its address without keys) made more requests than its rate allows."""

    status, title = 429, "Too many requests from this client"
    retry_after_s = 1


class NotFound(AsyncInferError):
    """An id that names nothing this tenant may see (also another tenant's: never reveal it exists)."""

    status, title = 404, "Not found"


class JobNotFound(NotFound):
    pass


class BatchNotFound(NotFound):
    pass


class SessionNotFound(NotFound):
    """A session that does not exist, has expired, or is another tenant's."""


class UnknownModel(NotFound):
    """A model name, or a version of it, that no plugin declares; refused before anything is stored."""


class ClaimExpired(NotFound):
    """An Idempotency-Key whose claim, or the job it named, has expired."""


class IdempotencyConflict(AsyncInferError):
    status, title = 409, "Idempotency key reused with a different request"


class IllegalTransition(AsyncInferError):
    status, title = 409, "Conflict with the job's status"


class SessionFull(AsyncInferError):
    status, title = 409, "The session is full"


class NotPurgeable(AsyncInferError):
    status, title = 409, "Only a finished job can be purged"


class BadCursor(BadRequest):
    """A listing cursor that no page of this gateway returned."""


class ImageTooLarge(AsyncInferError):
    status, title = 413, "Image too large"


class RequestTooLarge(ImageTooLarge):
    """A request body over its limit, refused while it streams in (before all of it is read)."""

    title = "Request too large"


class UnsupportedImageType(AsyncInferError):
    status, title = 415, "Unsupported image type"


class UndecodableImage(AsyncInferError):
    status, title = 422, "Image does not decode"


class CallbackRefused(AsyncInferError):
    """A callback_url the gateway will not POST to: not https, not resolvable, or an address that is
    private, loopback, link-local, multicast or unspecified and not allow-listed. Nothing is stored."""

    status, title = 422, "Callback URL refused"


class BacklogFull(AsyncInferError):
    status, title = 429, "Too many queued jobs"
    retry_after_s = 5


class TenantBusy(AsyncInferError):
    """The tenant has as many jobs open as it may; other tenants are not affected."""

    status, title = 429, "Too many open jobs for this tenant"
    retry_after_s = 5


class DeadlineUnreachable(AsyncInferError):
    """At the measured drain rate, the job could not start within the deadline its client set."""

    status, title = 429, "The job could not start within its deadline"
    retry_after_s = 5


class TooManyStreams(AsyncInferError):
    status, title = 503, "Too many open event streams"
    retry_after_s = 5


class DependencyUnavailable(AsyncInferError):
    status, title = 503, "A dependency is unavailable"
    retry_after_s = 5


class StoreUnavailable(DependencyUnavailable):
    """The job store did not answer (timeout, unreachable)."""


class StartupError(Exception):
    """A process cannot start as configured. The `asyncinfer` command prints the message as one
    line on stderr and exits with code 2, so each subclass's message names what to change."""


class SettingsInvalid(StartupError):
    """The ASYNCINFER_* settings do not validate."""


class StoreMisconfigured(StartupError):
    """The job store refused our settings (credentials, bucket); the message names the one to fix."""


class WeightsUnavailable(StartupError):
    """The configured weights cannot be loaded; the message says how to provide them."""


class ModelUnavailable(StartupError):
    """The worker's ASYNCINFER_MODEL names no model the catalogue has (or its plugin failed to load)."""


class RedisUnreachable(StartupError):
    """No Redis answered at ASYNCINFER_REDIS_URL within the start-up wait."""


class CasMismatch(Exception):
    """A compare-and-swap lost against another writer; the caller re-reads and retries."""


class DocumentExists(Exception):
    """An insert found the key already there."""


class DocumentMissing(Exception):
    """A replace found the key gone; the store turns it into the NotFound of what the key holds."""


class MeshUnavailable(StartupError):
    """ASYNCINFER_MESH=consul and the local Consul agent did not answer in time, or refused a registration."""
