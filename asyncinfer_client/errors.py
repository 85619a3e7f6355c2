"""Typed errors: one class per problem+json status the gateway answers, carrying its fields."""

from __future__ import annotations

from typing import Any

import httpx

# Statuses that mean "not now" rather than "never": backlog full, a dependency down, or a
# proxy in front of a gateway that is restarting. The client retries them.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class AsyncinferError(Exception):
    """Base class of this library's errors."""


class GatewayUnavailable(AsyncinferError):
    """The gateway kept refusing ("retry later") or not answering for the whole retry budget."""


class Problem(AsyncinferError):
    """An error answer (RFC 9457 problem+json): `status`, `title`, `detail`, `type`, the
    validation `errors` when there are any, `request_id` for the gateway's logs, and
    `retry_after_s` when the gateway said when to come back."""

    def __init__(self, status: int, detail: str, *, title: str = "", type: str = "about:blank",
                 errors: list[dict[str, Any]] | None = None, request_id: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.title = title
        self.type = type
        self.errors = errors or []
        self.request_id = request_id
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES


class BadRequest(Problem):
    """400: a malformed request or parameter."""


class Unauthorized(Problem):
    """401: a missing or wrong API key; no request can succeed with it."""


class NotFound(Problem):
    """404: no such job or batch (for this API key's tenant)."""


class Conflict(Problem):
    """409: the job's status does not allow it (cancel after it started, purge while it runs), or an
    idempotency key reused for another image."""


class PayloadTooLarge(Problem):
    """413: the image (or the batch) is over the gateway's size limit."""


class UnsupportedImage(Problem):
    """415: the bytes are not an image type the gateway accepts."""


class UndecodableImage(Problem):
    """422: the image does not decode, or is too small."""


class CallbackRefused(Problem):
    """422: the gateway will not send webhooks to this callback_url (not https, private address, …); nothing stored."""

    title_sent = "Callback URL refused"


class TooManyRequests(Problem):
    """429: the backlog is full, or the job could not start within its deadline; retried."""


class ServerError(Problem):
    """500 (and other 5xx that are not retried): the gateway failed."""


class ServiceUnavailable(Problem):
    """502/503/504: the gateway or a dependency is not available now; retried."""


_BY_STATUS: dict[int, type[Problem]] = {
    400: BadRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
    415: UnsupportedImage, 422: UndecodableImage, 429: TooManyRequests,
    502: ServiceUnavailable, 503: ServiceUnavailable, 504: ServiceUnavailable,
}


def problem_of(response: httpx.Response, retry_after_s: float | None) -> Problem:
    """The typed error of an error answer, with the problem's fields when its body is one."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": " ".join(response.text.split())[:300] or response.reason_phrase}
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else Problem)
    if status == 422 and body.get("title") == CallbackRefused.title_sent:
        kind = CallbackRefused
    return kind(status, str(body.get("detail") or response.reason_phrase), title=str(body.get("title", "")),
                type=str(body.get("type", "about:blank")), errors=body.get("errors"),
                request_id=response.headers.get("x-request-id"), retry_after_s=retry_after_s)
