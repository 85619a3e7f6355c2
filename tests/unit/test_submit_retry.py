"""Retry-After parsing and the wait between retries of the submit command."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from tenacity import RetryCallState

from client.retry import MAX_RETRY_AFTER_S, RetryableResponse, WaitRetryAfter, is_retryable, parse_retry_after

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Thu, 02 Jan 2025 03:04:35 GMT", 30.0),
        ("Thu, 02 Jan 2025 03:00:00 GMT", 0.0),  # in the past: ask again now
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),
        ("1.5", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def state_after(error: BaseException, attempt: int) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_wait_honours_retry_after() -> None:
    wait = WaitRetryAfter()
    assert wait(state_after(RetryableResponse(429, "busy", 7.0), attempt=1)) == 7.0
    assert wait(state_after(RetryableResponse(503, "down", 3600.0), attempt=1)) == MAX_RETRY_AFTER_S


def test_wait_backs_off_exponentially_with_jitter_without_retry_after() -> None:
    wait = WaitRetryAfter(initial_s=1.0, max_s=8.0)
    error = httpx.ConnectError("refused")
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waited = wait(state_after(error, attempt))
        assert ceiling / 2 <= waited <= ceiling


def test_what_is_retried() -> None:
    assert is_retryable(RetryableResponse(503, "down", None))
    assert is_retryable(httpx.ConnectError("refused"))
    assert is_retryable(httpx.ReadTimeout("slow"))
    assert not is_retryable(ValueError("bad"))
