"""Supervisor.watch starts a process marked `restart` again when it exits (a worker after an
inference time-out or a crash), but not one that exits with a start-up error."""

from __future__ import annotations

import sys
from pathlib import Path

from cli.processes import EXIT_STARTUP, Supervisor


def counting_command(runs: Path, *exit_codes: int) -> list[str]:
    """A process that records each run and exits with the next of `exit_codes`."""
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) if p.exists() else 0; "
        "p.write_text('x' * (n + 1)); sys.exit(int(sys.argv[2 + n]))"
    )
    return [sys.executable, "-c", script, str(runs), *map(str, exit_codes)]


def test_a_restartable_process_is_started_again_until_it_exits_with_a_startup_error(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    supervisor = Supervisor(tmp_path / "logs")
    supervisor.start("worker0", counting_command(runs, 75, 137, EXIT_STARTUP), restart=True)

    assert supervisor.watch(interval_s=0.05) == EXIT_STARTUP
    assert len(runs.read_text()) == 3


def test_any_other_process_that_exits_ends_the_watch(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    supervisor = Supervisor(tmp_path / "logs")
    supervisor.start("gateway", counting_command(runs, 0, 0))

    assert supervisor.watch(interval_s=0.05) == 1  # an exit with 0 is still an exit
    assert len(runs.read_text()) == 1
