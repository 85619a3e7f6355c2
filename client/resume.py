"""`--resume`: which files an earlier run already settled, so this run skips them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from client.records import REJECTED, FileResult
from client.results_file import result_key
from shared.jobs import TERMINAL

# Outcomes that another submission would only repeat: the idempotency key returns the same
# finished job, and a refused file is refused again. `error` (retries exhausted, timed out,
# unreadable) is not among them: the next run tries that file again.
SETTLED = frozenset({*TERMINAL, REJECTED})


def is_settled(result: FileResult | None) -> bool:
    return result is not None and result.status in SETTLED


def split_done(files: Sequence[Path], previous: dict[str, FileResult]) -> tuple[list[Path], list[FileResult]]:
    """(files still to submit, earlier results of the ones to skip), in the given order."""
    todo: list[Path] = []
    done: list[FileResult] = []
    for path in files:
        earlier = previous.get(result_key(str(path)))
        if is_settled(earlier):
            assert earlier is not None
            done.append(earlier)
        else:
            todo.append(path)
    return todo, done
