"""The results file: one JSONL line or CSV row per file, written and flushed as each arrives,
so an interrupted run keeps everything it finished; read back by `--resume`."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO

from client.records import FileResult

FORMATS = {".jsonl": "jsonl", ".csv": "csv"}
_CSV_HEAD = ["file", "status", "sha256", "job_id", "model"]
_CSV_TAIL = ["error_code", "error"]


class UnknownFormat(ValueError):
    """The output file's extension is not one we write."""


def format_of(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise UnknownFormat(
            f"--out {path}: the extension must be .jsonl or .csv, not {path.suffix or '(none)'}"
        ) from None


def result_key(file: str) -> str:
    """Files are matched by path; `./a.jpg` and `a.jpg` are the same file."""
    return os.path.normpath(file)


def csv_columns(top_k: int) -> list[str]:
    ranked = [f"{name}_{rank}" for rank in range(1, top_k + 1) for name in ("label", "score")]
    return [*_CSV_HEAD, *ranked, *_CSV_TAIL]


def to_csv_row(result: FileResult) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(result, name) or "" for name in (*_CSV_HEAD, *_CSV_TAIL)}
    for rank, prediction in enumerate(result.predictions, start=1):
        row[f"label_{rank}"] = prediction.get("label", "")
        row[f"score_{rank}"] = prediction.get("score", "")
    return row


def from_csv_row(row: dict[str, str]) -> FileResult:
    if not row.get("file") or not row.get("status"):
        raise ValueError("a row without file or status")
    predictions = []
    rank = 1
    while row.get(f"label_{rank}"):
        predictions.append({"label": row[f"label_{rank}"], "score": float(row[f"score_{rank}"])})
        rank += 1
    return FileResult(
        file=row["file"],
        status=row["status"],
        sha256=row.get("sha256") or None,
        job_id=row.get("job_id") or None,
        model=row.get("model") or None,
        predictions=predictions,
        error_code=row.get("error_code") or None,
        error=row.get("error") or None,
    )


class ResultsWriter(Protocol):
    def write(self, result: FileResult) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    def __init__(self, stream: TextIO, *, owns_stream: bool) -> None:
        self.stream = stream
        self.owns_stream = owns_stream

    def write(self, result: FileResult) -> None:
        self.stream.write(json.dumps(result.as_dict(), ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.owns_stream:
            self.stream.close()


class CsvWriter:
    def __init__(self, stream: TextIO, columns: list[str], *, write_header: bool) -> None:
        self.stream = stream
        # An appended file keeps its own columns; predictions past them are left out.
        self.writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        if write_header:
            self.writer.writeheader()
            stream.flush()

    def write(self, result: FileResult) -> None:
        self.writer.writerow(to_csv_row(result))
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def trim_partial_line(path: Path) -> None:
    """Cut a last line left unfinished by a killed run, so appended lines start clean."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(max(0, size - 1_000_000))
        tail = f.read()
        cut = tail.rfind(b"\n")
        f.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))


def open_results(path: Path | None, *, append: bool, top_k: int) -> ResultsWriter:
    """A writer to `path` (JSON lines to stdout without one); `append` keeps what is there."""
    if path is None:
        return JsonlWriter(sys.stdout, owns_stream=False)
    kind = format_of(path)
    existing = append and path.exists() and path.stat().st_size > 0
    if existing:
        trim_partial_line(path)
    stream = open(path, "a" if existing else "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed by the writer)
    if kind == "jsonl":
        return JsonlWriter(stream, owns_stream=True)
    columns = _existing_csv_columns(path) if existing else None
    return CsvWriter(stream, columns or csv_columns(top_k), write_header=not columns)


def _existing_csv_columns(path: Path) -> list[str] | None:
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), None)
    return header if header and header[0] == "file" else None


def _complete_lines(stream: TextIO) -> Iterator[str]:
    """Lines with their newline: a last line cut off by a killed run is not a record."""
    for line in stream:
        if line.endswith("\n"):
            yield line


def iter_results(path: Path) -> Iterator[FileResult]:
    """Every complete record in the file, in order; damaged lines are skipped."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", newline="") as f:
        if format_of(path) == "csv":
            for row in csv.DictReader(_complete_lines(f)):
                try:
                    yield from_csv_row(row)
                except (KeyError, TypeError, ValueError):
                    continue
            return
        for line in _complete_lines(f):
            try:
                yield FileResult.from_dict(json.loads(line))
            except (KeyError, TypeError, ValueError):
                continue


def read_results(path: Path) -> dict[str, FileResult]:
    """The newest record of each file (a retried file is appended again)."""
    return {result_key(result.file): result for result in iter_results(path)}
