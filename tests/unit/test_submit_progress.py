"""The submit command's progress line shows where its queued files stand in line."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from asyncinfer_client import Position
from client.progress import SubmitProgress, in_line
from client.records import FileResult

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def position(ahead: int, starts_in_s: float | None) -> Position:
    start = None if starts_in_s is None else NOW + timedelta(seconds=starts_in_s)
    return Position(ahead, start, 2.0, NOW)


def test_the_nearest_queued_file_is_shown_with_its_estimated_start() -> None:
    assert in_line({}, NOW) == ""
    assert in_line({"a": position(9, 4.5), "b": position(3, 1.6)}, NOW) == " · queued: 3 ahead, starts in ~2 s"
    assert in_line({"a": position(3, None)}, NOW) == " · queued: 3 ahead"


def test_a_file_leaves_the_line_when_it_starts_or_finishes() -> None:
    progress = SubmitProgress(2, Console(file=io.StringIO()))
    progress.position("job-1", position(5, 3))
    progress.position("job-2", position(7, 4))
    progress.position("job-1", position(0, 0))  # starting
    assert set(progress.positions) == {"job-2"}

    progress.finished(FileResult("b.jpg", "succeeded", job_id="job-2"))
    assert progress.positions == {}
    assert progress.progress.tasks[0].fields["queued"] == ""
