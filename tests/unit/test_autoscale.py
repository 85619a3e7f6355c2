"""The local autoscaler's decisions (cli/autoscale.py): up at once, down only after a whole window
of lower demand, to zero only after the longer idle period; and its --workers bounds."""

from __future__ import annotations

import pytest

from cli.autoscale import Bounds, Stabiliser, parse_workers, threads_per_worker

BOUNDS = Bounds(min_workers=0, max_workers=4, scale_down_after_s=10, scale_to_zero_after_s=30)


def run(stabiliser: Stabiliser, desired_by_second: list[int], current: int = 0) -> list[int]:
    """Feed one desired count per second; the pool follows each target at once."""
    targets = []
    for second, desired in enumerate(desired_by_second):
        current = stabiliser.target(float(second), desired, current)
        targets.append(current)
    return targets


def test_a_step_up_is_followed_at_once_and_bounded() -> None:
    targets = run(Stabiliser(BOUNDS, started_at=0.0), [0, 3, 9, 9])
    assert targets == [0, 3, 4, 4]


def test_a_step_down_waits_a_whole_window_of_lower_demand() -> None:
    targets = run(Stabiliser(BOUNDS, started_at=0.0), [4] * 3 + [1] * 15)
    assert targets[:3] == [4, 4, 4]
    assert set(targets[3:12]) == {4}  # the 4s are still inside the last 10 s
    assert targets[13:] == [1] * 5


def test_a_short_dip_does_not_scale_in() -> None:
    targets = run(Stabiliser(BOUNDS, started_at=0.0), [3] * 12 + [1] * 5 + [3] * 5)
    assert set(targets) == {3}


def test_to_zero_only_after_the_idle_period() -> None:
    targets = run(Stabiliser(BOUNDS, started_at=0.0), [2] * 2 + [0] * 40)
    assert targets[:31] == [2] * 31  # the 10 s window passed, but the 30 s idle period had not
    assert targets[32:] == [0] * 10


def test_the_first_job_on_an_empty_pool_starts_a_worker_at_once() -> None:
    stabiliser = Stabiliser(BOUNDS, started_at=0.0)
    assert run(stabiliser, [0] * 40 + [1]) [-1] == 1


def test_nothing_scales_in_before_a_whole_window_was_watched() -> None:
    """A restarted autoscaler finds workers running and no history: it keeps them a window long."""
    stabiliser = Stabiliser(BOUNDS, started_at=0.0)
    assert [stabiliser.target(float(t), 1, 3) for t in range(12)][:10] == [3] * 10


def test_the_minimum_holds() -> None:
    bounds = Bounds(min_workers=2, max_workers=4, scale_down_after_s=1, scale_to_zero_after_s=1)
    assert run(Stabiliser(bounds, started_at=0.0), [0] * 5) == [2] * 5


@pytest.mark.parametrize(("text", "bounds"), [("0..3", (0, 3)), ("2", (2, 2)), ("1..1", (1, 1))])
def test_workers_bounds(text: str, bounds: tuple[int, int]) -> None:
    assert parse_workers(text) == bounds


@pytest.mark.parametrize("text", ["3..1", "0", "a..b", "-1..2", "0..0", ""])
def test_bad_workers_bounds_say_why(text: str) -> None:
    with pytest.raises(ValueError, match="--workers"):
        parse_workers(text)


def test_workers_on_one_host_split_its_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert [threads_per_worker(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
