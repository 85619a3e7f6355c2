"""The measured drain rate and the Retry-After computed from it (api/drain_rate.py)."""

from __future__ import annotations

import pytest

from api.drain_rate import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, DrainRate, seconds_to_drain


def test_no_rate_until_enough_jobs_have_finished() -> None:
    rate = DrainRate(window_s=30, min_events=5)
    for at in range(4):
        rate.record(100.0 + at)
    assert rate.per_s(104.0) is None
    rate.record(104.0)
    assert rate.per_s(105.0) == pytest.approx(1.0)  # 5 jobs in the 5 s since the first


def test_the_rate_falls_once_finishing_stops_and_forgets_the_old_window() -> None:
    rate = DrainRate(window_s=30, min_events=5)
    for tenth in range(50):
        rate.record(100.0 + tenth / 10)  # 10 jobs/s for 5 s
    assert rate.per_s(105.0) == pytest.approx(10.0)
    assert rate.per_s(125.0) == pytest.approx(2.0)  # the same 50 over 25 s
    assert rate.per_s(140.0) is None  # all of them left the window


def test_retry_after_is_the_time_to_drain_what_is_too_many() -> None:
    assert seconds_to_drain(30, 4.0) == 8
    assert seconds_to_drain(0.1, 4.0) == 1
    assert seconds_to_drain(1e9, 1.0) == MAX_RETRY_AFTER_S
    assert seconds_to_drain(30, None) == DEFAULT_RETRY_AFTER_S
