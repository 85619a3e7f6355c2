"""When and how long to wait before asking the gateway again: `Retry-After`, then backoff."""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime

import httpx
from tenacity import RetryCallState
from tenacity.wait import wait_base

from asyncinfer_client.errors import Problem

# A server may ask for a long pause; past this we ask again anyway (the retry budget still ends it).
MAX_RETRY_AFTER_S = 60.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP date (RFC 9110).
    None when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a zone-less one is read the same way
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_retryable(error: BaseException) -> bool:
    """429/502/503/504 answers and connection failures: worth asking again."""
    return (isinstance(error, Problem) and error.retryable) or isinstance(error, httpx.TransportError)


class WaitRetryAfter(wait_base):
    """Wait what the server asked for; without a `Retry-After`, exponential backoff with jitter."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 10.0) -> None:
        self.initial_s = initial_s
        self.max_s = max_s

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, Problem) and error.retry_after_s is not None:
            return min(error.retry_after_s, MAX_RETRY_AFTER_S)
        backoff = min(self.max_s, self.initial_s * 2 ** (retry_state.attempt_number - 1))
        # Full jitter, so that many files retrying together do not come back together.
        return random.uniform(backoff / 2, backoff)
