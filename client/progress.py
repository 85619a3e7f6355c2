"""The live progress bar on stderr: submitted, done and failed counts, images per second, and where
the files still queued stand in line."""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from asyncinfer_client import Position
from client.records import FileResult


def in_line(positions: dict[str, Position], now: datetime) -> str:
    """The queued file nearest its start: how many jobs are ahead of it, and when it should start."""
    if not positions:
        return ""
    nearest = min(positions.values(), key=lambda p: p.ahead)
    if nearest.estimated_start_at is None:
        return f" · queued: {nearest.ahead} ahead"
    starts_in_s = max(0.0, (nearest.estimated_start_at - now).total_seconds())
    return f" · queued: {nearest.ahead} ahead, starts in ~{starts_in_s:.0f} s"


class ImagesPerSecond(ProgressColumn):
    """The average since the start: steadier than rich's windowed speed for bursty batches."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:.1f} images/s", style="progress.data.speed")


class SubmitProgress:
    def __init__(self, total: int, console: Console) -> None:
        self.submitted_count = self.done_count = self.failed_count = 0
        self.progress = Progress(
            TextColumn("[bold]submit"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn(
                "submitted {task.fields[submitted]} · [green]done {task.fields[done]}[/] · "
                "[red]failed {task.fields[failed]}[/]{task.fields[queued]}"
            ),
            ImagesPerSecond(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("submit", total=total, submitted=0, done=0, failed=0, queued="")
        self.positions: dict[str, Position] = {}  # job id → its latest position, while queued

    def __enter__(self) -> SubmitProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.progress.stop()

    def submitted(self) -> None:
        self.submitted_count += 1
        self.progress.update(self.task, submitted=self.submitted_count)

    def position(self, job_id: str, position: Position) -> None:
        if position.ahead > 0:
            self.positions[job_id] = position
        else:
            self.positions.pop(job_id, None)
        self._show_positions()

    def _show_positions(self) -> None:
        self.progress.update(self.task, queued=in_line(self.positions, datetime.now(UTC)))

    def finished(self, result: FileResult) -> None:
        if result.job_id:
            self.positions.pop(result.job_id, None)
            self._show_positions()
        if result.succeeded:
            self.done_count += 1
        else:
            self.failed_count += 1
        self.progress.update(self.task, advance=1, done=self.done_count, failed=self.failed_count)

    @property
    def elapsed_s(self) -> float:
        return self.progress.tasks[0].elapsed or 0.0
