"""Retry-After parsing, the wait between retries, and the typed errors of the client library (the
submit command's too)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from tenacity import RetryCallState

from asyncinfer_client.errors import (
    NotFound,
    Problem,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedImage,
    problem_of,
)
from asyncinfer_client.retry import MAX_RETRY_AFTER_S, WaitRetryAfter, is_retryable, parse_retry_after

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
    assert wait(state_after(TooManyRequests(429, "busy", retry_after_s=7.0), attempt=1)) == 7.0
    assert wait(state_after(ServiceUnavailable(503, "down", retry_after_s=3600.0), attempt=1)) == MAX_RETRY_AFTER_S


def test_wait_backs_off_exponentially_with_jitter_without_retry_after() -> None:
    wait = WaitRetryAfter(initial_s=1.0, max_s=8.0)
    error = httpx.ConnectError("refused")
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waited = wait(state_after(error, attempt))
        assert ceiling / 2 <= waited <= ceiling


def test_what_is_retried() -> None:
    assert is_retryable(ServiceUnavailable(503, "down"))
    assert is_retryable(TooManyRequests(429, "busy"))
    assert not is_retryable(NotFound(404, "gone"))
    assert is_retryable(httpx.ConnectError("refused"))
    assert is_retryable(httpx.ReadTimeout("slow"))
    assert not is_retryable(ValueError("bad"))


def test_an_error_answer_becomes_its_typed_problem() -> None:
    body = {"type": "https://asyncinfer.dev/problems/415", "title": "Unsupported image type", "status": 415,
            "detail": "the bytes are not an image"}
    response = httpx.Response(415, json=body, headers={"X-Request-ID": "r-1"})

    problem = problem_of(response, retry_after_s=None)

    assert isinstance(problem, UnsupportedImage)
    assert (problem.status, problem.title, problem.detail, problem.request_id) == (
        415, "Unsupported image type", "the bytes are not an image", "r-1")
    assert not problem.retryable


def test_a_plain_text_answer_still_becomes_a_problem() -> None:
    problem = problem_of(httpx.Response(500, text="Internal   Server\nError"), retry_after_s=None)
    assert isinstance(problem, ServerError) and problem.detail == "Internal Server Error"
    other = problem_of(httpx.Response(418, text=""), retry_after_s=None)
    assert type(other) is Problem and other.status == 418
