"""The submit command from start to exit code: check input, skip settled files, run, summarise."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from client.files import MissingPath, discover
from client.progress import SubmitProgress
from client.records import FileResult
from client.results_file import UnknownFormat, format_of, open_results, read_results
from client.resume import split_done
from client.runner import FatalError, SubmitOptions, submit_all
from shared.constants import MAX_TOP_K

EXIT_OK, EXIT_FAILED_FILES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Past this many, the summary points at the results file instead of listing every failure.
MAX_LISTED_FAILURES = 20


class UsageError(ValueError):
    """Bad command-line input, reported in one line."""


def check_options(options: SubmitOptions) -> list[Path]:
    """The files to submit, or UsageError naming what is wrong."""
    if options.out is not None:
        try:
            format_of(options.out)
        except UnknownFormat as e:
            raise UsageError(str(e)) from None
    if options.resume and options.out is None:
        raise UsageError("--resume needs --out FILE: the results of the earlier run are read from it")
    if not 1 <= options.top_k <= MAX_TOP_K:
        raise UsageError(f"--top-k must be from 1 to {MAX_TOP_K}, not {options.top_k}")
    if options.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, not {options.concurrency}")
    try:
        files = discover(options.paths, recursive=options.recursive)
    except MissingPath as e:
        raise UsageError(str(e)) from None
    if not files:
        hint = "" if options.recursive else " (add --recursive to look in subdirectories)"
        raise UsageError(f"no image files found in {' '.join(options.paths)}{hint}")
    return files


def run_submit(options: SubmitOptions, console: Console | None = None) -> int:
    console = console or Console(stderr=True, highlight=False)
    try:
        files = check_options(options)
    except UsageError as e:
        console.print(f"asyncinfer submit: {escape(str(e))}", soft_wrap=True)
        return EXIT_USAGE
    previous = read_results(options.out) if options.resume and options.out else {}
    todo, skipped = split_done(files, previous)
    if skipped:
        console.print(f"skipping {len(skipped)} of {plural(len(files), 'file')} already in {options.out}")
    writer = open_results(options.out, append=options.resume, top_k=options.top_k)
    results: list[FileResult] = []
    status = EXIT_OK
    progress = SubmitProgress(len(todo), console)
    try:
        if todo:
            with progress:
                asyncio.run(submit_all(todo, options, writer, progress, results))
    except KeyboardInterrupt:
        console.print("interrupted")
        status = EXIT_INTERRUPTED
    except FatalError as e:
        console.print(f"asyncinfer submit: {escape(str(e))}", soft_wrap=True)
        status = EXIT_USAGE
    finally:
        writer.close()
    print_summary(console, options, results, skipped, progress.elapsed_s, total=len(files))
    if status == EXIT_OK and any(not r.succeeded for r in [*results, *skipped]):
        status = EXIT_FAILED_FILES
    if status in (EXIT_INTERRUPTED, EXIT_USAGE) and options.out:
        console.print(f"{len(results) + len(skipped)} of {plural(len(files), 'file')} are in {options.out}; "
                      "run the same command with --resume to finish", soft_wrap=True)
    return status


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def print_summary(console: Console, options: SubmitOptions, results: list[FileResult], skipped: list[FileResult],
                  elapsed_s: float, *, total: int) -> None:
    succeeded = sum(r.succeeded for r in [*results, *skipped])
    failures = [r for r in [*results, *skipped] if not r.succeeded]
    rate = len(results) / elapsed_s if elapsed_s > 0 else 0.0
    where = f"; results in {options.out}" if options.out else ""
    not_done = total - len(results) - len(skipped)
    console.print(
        f"{plural(total, 'file')}: {succeeded} succeeded, {len(failures)} failed"
        + (f", {not_done} not done" if not_done else "")
        + (f" ({len(results)} processed in {elapsed_s:.1f} s, {rate:.1f} images/s)" if results else "")
        + where,
        soft_wrap=True,
    )
    if not failures:
        return
    console.print(f"[red]{len(failures)} failed:[/]")
    for result in failures[:MAX_LISTED_FAILURES]:
        console.print(f"  {escape(result.file)}: {escape(result.reason)}", soft_wrap=True)
    if len(failures) > MAX_LISTED_FAILURES:
        console.print(f"  … and {len(failures) - MAX_LISTED_FAILURES} more (see the results)")
