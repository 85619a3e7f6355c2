"""The idle flush of workers/idle_flush.py: a lone job runs at once, a stream of jobs fills a batch."""

from __future__ import annotations

from typing import Any

import pytest

from workers.idle_flush import IdleFlushBatches


class FakeEntry:
    def __init__(self, due_s: float, fun: Any) -> None:
        self.due_s, self.fun, self.cancelled = due_s, fun, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTimer:
    """Kombu's timer, driven by hand: `advance` runs what fell due."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.entries: list[FakeEntry] = []

    def call_after(self, secs: float, fun: Any) -> FakeEntry:
        entry = FakeEntry(self.now_s + secs, fun)
        self.entries.append(entry)
        return entry

    def advance(self, secs: float) -> None:
        self.now_s += secs
        for entry in [e for e in self.entries if e.due_s <= self.now_s and not e.cancelled]:
            self.entries.remove(entry)
            entry.fun()


class Consumer:
    def __init__(self) -> None:
        self.timer = FakeTimer()


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> tuple[IdleFlushBatches, FakeTimer, list[list[str]]]:
    """A task whose parent Strategy only buffers (Celery's request plumbing left out) and whose
    flushes are recorded."""
    flushed: list[list[str]] = []
    task = IdleFlushBatches.__new__(IdleFlushBatches)
    IdleFlushBatches.__init__(task)
    task.flush_idle_s = 0.002

    def parent_strategy(self: IdleFlushBatches, *_: Any) -> Any:
        return lambda message: self._buffer.put(message)

    def record_flush(self: IdleFlushBatches) -> None:
        batch = []
        while not self._buffer.empty():
            batch.append(self._buffer.get())
        flushed.append(batch)

    monkeypatch.setattr(IdleFlushBatches.__mro__[1], "Strategy", parent_strategy)
    monkeypatch.setattr(IdleFlushBatches, "_do_flush", record_flush)
    consumer = Consumer()
    handle = task.Strategy(None, None, consumer)
    task.handle = handle  # type: ignore[attr-defined]
    return task, consumer.timer, flushed


def test_a_lone_job_is_flushed_once_the_queue_goes_quiet(batches) -> None:  # type: ignore[no-untyped-def]
    task, timer, flushed = batches
    task.handle("job-1")
    timer.advance(0.001)
    assert flushed == []
    timer.advance(0.0015)
    assert flushed == [["job-1"]]


def test_jobs_arriving_closer_than_the_idle_time_wait_for_each_other(batches) -> None:  # type: ignore[no-untyped-def]
    task, timer, flushed = batches
    for index in range(5):
        task.handle(f"job-{index}")
        timer.advance(0.001)
    assert flushed == []
    timer.advance(0.002)
    assert flushed == [[f"job-{index}" for index in range(5)]]


def test_an_idle_timer_after_a_flush_finds_nothing_to_do(batches) -> None:  # type: ignore[no-untyped-def]
    task, timer, flushed = batches
    task.handle("job-1")
    task._do_flush()  # e.g. the batch filled up or the batch wait ran out first
    timer.advance(0.01)
    assert flushed == [["job-1"]]


def test_a_first_job_with_nothing_else_waiting_runs_without_the_idle_wait(batches) -> None:  # type: ignore[no-untyped-def]
    task, timer, flushed = batches
    asked: list[bool] = []
    task.queue_is_empty = lambda: asked.append(True) or True
    task.handle("job-1")
    assert flushed == [["job-1"]]
    assert asked == [True]
    assert [entry for entry in timer.entries if not entry.cancelled] == []


def test_a_first_job_with_others_waiting_waits_for_them(batches) -> None:  # type: ignore[no-untyped-def]
    task, timer, flushed = batches
    asked: list[bool] = []
    task.queue_is_empty = lambda: asked.append(True) or False
    for index in range(3):
        task.handle(f"job-{index}")
        timer.advance(0.001)
    assert flushed == []
    assert asked == [True]  # only a batch's first message asks
    timer.advance(0.002)
    assert flushed == [["job-0", "job-1", "job-2"]]
    task.handle("job-3")  # the next batch's first message asks again
    assert asked == [True, True]
