"""The autoscaling signal computed from counts (shared/scaling.py), presence counting
(shared/presence.py) and the settings that bound it."""

from __future__ import annotations

import math

import pytest

from shared.config import Settings
from shared.presence import count_live, redis_time_s
from shared.scaling import ScalingPolicy, WorkCounts, desired_workers, scaling_signal

POLICY = ScalingPolicy(target_per_worker=4, min_workers=1, max_workers=5)


def test_outstanding_counts_what_workers_hold_not_only_the_list() -> None:
    """Everything reserved by a busy worker, nothing in the list: not idle (KEDA's list scaler says 0)."""
    busy = WorkCounts(waiting=0, unacknowledged=6, admitting=0, live_workers=1)
    signal = scaling_signal(busy, 2.0, ScalingPolicy(4, 0, 5))
    assert signal.outstanding == 6
    assert signal.desired_workers == 2
    assert signal.predicted_wait_s == pytest.approx(3.0)
    assert not signal.without_capacity


def test_outstanding_adds_waiting_unacknowledged_and_admitting() -> None:
    assert WorkCounts(waiting=3, unacknowledged=8, admitting=2, live_workers=1).outstanding == 13


@pytest.mark.parametrize(
    ("outstanding", "desired"),
    [(0, 1), (1, 1), (4, 1), (5, 2), (8, 2), (9, 3), (20, 5), (21, 5), (10_000, 5)],
)
def test_desired_is_ceil_of_outstanding_per_target_within_bounds(outstanding: int, desired: int) -> None:
    assert desired_workers(outstanding, POLICY) == desired


def test_with_min_zero_the_pool_scales_to_zero_only_when_nothing_is_left() -> None:
    to_zero = ScalingPolicy(target_per_worker=32, min_workers=0, max_workers=3)
    assert desired_workers(0, to_zero) == 0
    assert desired_workers(1, to_zero) == 1


def test_backlog_without_capacity_is_work_and_no_live_worker() -> None:
    stranded = scaling_signal(WorkCounts(2, 0, 0, live_workers=0), None, ScalingPolicy(4, 0, 5))
    assert stranded.without_capacity
    assert stranded.desired_workers == 1  # scale from zero
    assert stranded.predicted_wait_s == math.inf
    # A rate still measured from the last worker does not make the wait finite.
    assert scaling_signal(WorkCounts(2, 0, 0, live_workers=0), 9.0, POLICY).predicted_wait_s == math.inf
    idle = scaling_signal(WorkCounts(0, 0, 0, live_workers=0), None, POLICY)
    assert not idle.without_capacity and idle.predicted_wait_s == 0.0


def test_predicted_wait_is_unknown_until_a_rate_is_measured() -> None:
    assert math.isnan(scaling_signal(WorkCounts(5, 0, 0, live_workers=1), None, POLICY).predicted_wait_s)
    assert scaling_signal(WorkCounts(5, 5, 0, live_workers=2), 4.0, POLICY).predicted_wait_s == pytest.approx(2.5)


def test_presence_counts_entries_that_have_not_lapsed() -> None:
    now = redis_time_s((1_700_000_000, 500_000))
    assert now == 1_700_000_000.5
    entries = [(b"w1", now + 10), (b"w2", now + 0.001), (b"w3", now), (b"w4", now - 5)]
    assert count_live(entries, now) == 2
    assert count_live([], now) == 0


def test_policy_comes_from_settings_and_min_above_max_is_refused() -> None:
    settings = Settings(scale_target_jobs_per_worker=8, scale_min_workers=0, scale_max_workers=3)
    assert ScalingPolicy.from_settings(settings) == ScalingPolicy(8, 0, 3)
    defaults = ScalingPolicy.from_settings(Settings())
    assert (defaults.min_workers, defaults.max_workers) == (1, 10)
    with pytest.raises(ValueError, match=r"ASYNCINFER_SCALE_MIN_WORKERS \(4\) is above ASYNCINFER_SCALE_MAX_WORKERS \(3\)"):
        Settings(scale_min_workers=4, scale_max_workers=3)
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(scale_target_jobs_per_worker=0)
