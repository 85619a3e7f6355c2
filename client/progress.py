"""The live progress bar on stderr: submitted, done and failed counts, and images per second."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from client.records import FileResult


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
                "[red]failed {task.fields[failed]}[/]"
            ),
            ImagesPerSecond(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("submit", total=total, submitted=0, done=0, failed=0)

    def __enter__(self) -> SubmitProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.progress.stop()

    def submitted(self) -> None:
        self.submitted_count += 1
        self.progress.update(self.task, submitted=self.submitted_count)

    def finished(self, result: FileResult) -> None:
        if result.succeeded:
            self.done_count += 1
        else:
            self.failed_count += 1
        self.progress.update(self.task, advance=1, done=self.done_count, failed=self.failed_count)

    @property
    def elapsed_s(self) -> float:
        return self.progress.tasks[0].elapsed or 0.0
