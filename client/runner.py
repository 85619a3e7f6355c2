"""`asyncinfer submit`: send files with bounded concurrency, record each result as it arrives.

Built on the client library (asyncinfer_client): its retries, stream resumption and long-poll
fallback are the command's. One job per file, not one batch: a batch (`POST /v1/batches`) is
all-or-nothing and takes no Idempotency-Key, while a job per file gives each file its own
idempotent submission and its own result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asyncinfer_client import AsyncClient, GatewayUnavailable, Problem, Unauthorized, content_key
from client.files import content_type_of
from client.progress import SubmitProgress
from client.records import ERROR, REJECTED, FileResult, from_job, one_line
from client.results_file import ResultsWriter


@dataclass(frozen=True)
class SubmitOptions:
    paths: list[str]
    url: str
    api_key: str | None
    top_k: int
    model: str | None
    concurrency: int
    out: Path | None
    resume: bool
    recursive: bool
    timeout_s: float
    retry_for_s: float


class FatalError(Exception):
    """Stops the whole run: no other file could succeed either (bad API key, gateway gone)."""


async def process_file(path: Path, gateway: AsyncClient, options: SubmitOptions,
                       progress: SubmitProgress) -> FileResult:
    """Submit one file and wait for its job; every outcome but a fatal one becomes a FileResult."""
    name = str(path)
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as e:
        return FileResult(name, ERROR, error_code="unreadable", error=e.strerror or str(e))
    sha256, key = content_key(data, options.top_k, options.model)
    try:
        job = await gateway.submit(data, model=options.model, filename=path.name, content_type=content_type_of(path),
                                   top_k=options.top_k,
                                   idempotency_key=key)
    except Unauthorized:
        raise
    except Problem as e:  # a 4xx: this file is the problem, sending it again will not help; a 500: ours
        outcome = REJECTED if e.status < 500 else ERROR
        return FileResult(name, outcome, sha256, error_code=str(e.status), error=one_line(e.detail))
    progress.submitted()
    try:
        done = await gateway.wait(job, timeout_s=options.timeout_s, on_position=progress.position)
    except TimeoutError:
        return FileResult(name, ERROR, sha256, job.id, error_code="timeout",
                          error=f"not finished after {options.timeout_s:.0f} s; run again to pick it up")
    except Unauthorized:
        raise
    except Problem as e:
        return FileResult(name, ERROR, sha256, job.id, error_code=str(e.status), error=one_line(e.detail))
    return from_job(name, sha256, done.doc)


async def submit_all(
    files: list[Path], options: SubmitOptions, writer: ResultsWriter, progress: SubmitProgress,
    results: list[FileResult],
) -> None:
    """Appends to `results` (and writes) as files finish, so an interruption keeps them."""
    # One connection per file in flight (its upload, then its event stream), plus headroom.
    async with AsyncClient(options.url, api_key=options.api_key, retry_for_s=options.retry_for_s,
                           max_connections=options.concurrency + 4) as gateway:
        try:
            await gateway.check_reachable()
        except GatewayUnavailable as e:
            raise FatalError(f"cannot reach the gateway at {options.url}: {e}") from e
        pending: Iterator[Path] = iter(files)

        async def worker() -> None:
            for path in pending:  # shared by the workers: each file is taken once
                result = await process_file(path, gateway, options, progress)
                writer.write(result)
                results.append(result)
                progress.finished(result)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(options.concurrency, len(files))):
                    group.create_task(worker())
        except* Unauthorized as errors:
            raise FatalError(f"the gateway refused the API key: {errors.exceptions[0]}") from None
        except* GatewayUnavailable as errors:
            raise FatalError(f"the gateway at {options.url} stopped answering: {errors.exceptions[0]}") from None
