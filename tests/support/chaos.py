"""What the chaos suite needs around the product: a steady load of clients that retry with their
idempotency keys (the client library, asyncinfer_client), a keeper that starts a worker again
when one dies (as `asyncinfer up` and compose do), and the tally of how every accepted job ended."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from asyncinfer_client import AsyncClient, GatewayUnavailable, Problem
from cli.pipeline import LocalPipeline
from shared.errors import StoreUnavailable
from shared.jobs import JobDoc, JobStatus, parse_rfc3339, status_of
from shared.store.base import JobStore
from shared.store.open_jobs import OpenJobIndex
from tests.support.http import scrape_metrics

# A client keeps retrying one submission (429/502/503/504, connection errors, honouring
# Retry-After) for this long before it gives up on it.
CLIENT_RETRY_S = 120.0


@dataclass
class Submissions:
    """What the clients were told: each idempotency key's job, and the submissions that failed."""

    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key → job id (202)
    replayed_differently: list[str] = field(default_factory=list)  # a key answered with two job ids
    refused: list[str] = field(default_factory=list)  # 4xx/500: not accepted
    gave_up: list[str] = field(default_factory=list)  # no 202 within CLIENT_RETRY_S

    @property
    def job_ids(self) -> list[str]:
        return list(self.accepted.values())


async def _submit(gateway: AsyncClient, key: str, image: bytes, submissions: Submissions) -> None:
    try:
        job = await gateway.submit(image, filename=f"{key}.jpg", top_k=1, idempotency_key=key)
    except Problem as e:
        submissions.refused.append(f"{key}: {e}")
        return
    except GatewayUnavailable as e:
        submissions.gave_up.append(f"{key}: {e}")
        return
    known = submissions.accepted.setdefault(key, job.id)
    if known != job.id:
        submissions.replayed_differently.append(key)


async def steady_load(url: str, images: Sequence[bytes], rate_per_s: float) -> Submissions:
    """Submit `images` one by one at `rate_per_s`, each by a client of its own that retries it
    with its idempotency key (open loop: a stalled gateway does not slow the arrivals)."""
    submissions = Submissions()
    async with AsyncClient(url, retry_for_s=CLIENT_RETRY_S, timeout_s=30, max_connections=64) as gateway:
        started = time.monotonic()
        tasks = []
        for index, image in enumerate(images):
            await asyncio.sleep(max(0.0, started + index / rate_per_s - time.monotonic()))
            tasks.append(asyncio.create_task(_submit(gateway, uuid.uuid4().hex, image, submissions)))
        await asyncio.gather(*tasks)
    return submissions


class LoadInBackground:
    """steady_load on a thread of its own, while the test injects its fault."""

    def __init__(self, url: str, images: Sequence[bytes], rate_per_s: float) -> None:
        self.result: Submissions | None = None
        self.duration_s = len(images) / rate_per_s
        self._thread = threading.Thread(target=self._run, args=(url, images, rate_per_s), daemon=True)
        self.started = time.monotonic()
        self._thread.start()

    def _run(self, url: str, images: Sequence[bytes], rate_per_s: float) -> None:
        self.result = asyncio.run(steady_load(url, images, rate_per_s))

    def wait(self) -> Submissions:
        """Every submission answered or given up; their outcome."""
        self._thread.join(CLIENT_RETRY_S + self.duration_s + 30)
        assert self.result is not None, "the load did not finish"
        return self.result


@dataclass
class WorkerKeeper:
    """Starts a worker again whenever one exits, as a supervisor would; records how each exited."""

    pipeline: LocalPipeline
    exit_codes: list[int] = field(default_factory=list)

    @contextmanager
    def running(self) -> Iterator[WorkerKeeper]:
        stop = threading.Event()
        thread = threading.Thread(target=self._keep, args=(stop,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(10)

    def _keep(self, stop: threading.Event) -> None:
        replaced: set[int] = set()
        while not stop.wait(0.2):
            for worker in list(self.pipeline.workers):
                if worker.pid not in replaced and worker.poll() is not None:
                    replaced.add(worker.pid)
                    self.exit_codes.append(worker.returncode)
                    self.pipeline.start_worker(wait_ready=False)


def gateway_figures(url: str) -> dict[str, int]:
    """What the gateway's /metrics says recovery and admission did (since that gateway started)."""
    samples = scrape_metrics(f"{url}/metrics")
    return {
        "recovered": int(sum(value for (name, _), value in samples.items() if name == "asyncinfer_jobs_recovered_total")),
        "unavailable_answers": int(samples.get(("asyncinfer_requests_rejected_total", (("status", "503"),)), 0)),
    }


def latencies(docs: Sequence[JobDoc]) -> tuple[float, float]:
    """Median and longest time from accepted to terminal, from the jobs' own timestamps."""
    spans = sorted(parse_rfc3339(doc["finished_at"]).timestamp() - parse_rfc3339(doc["created_at"]).timestamp()
                   for doc in docs)
    return (statistics.median(spans), spans[-1]) if spans else (0.0, 0.0)


def read_jobs(store: JobStore, job_ids: Sequence[str]) -> dict[str, JobDoc]:
    """The stored documents of `job_ids` that exist; {} while the store is out."""
    try:
        return {doc["id"]: doc for doc in store.get_jobs(list(job_ids))}
    except StoreUnavailable:
        return {}


def wait_all_terminal(store: JobStore, job_ids: Sequence[str], bound_s: float) -> tuple[dict[str, JobDoc], float]:
    """Poll until every job is terminal or `bound_s` passed; the documents and the seconds it took."""
    started = time.monotonic()
    docs: dict[str, JobDoc] = {}
    while time.monotonic() - started < bound_s:
        docs = read_jobs(store, job_ids) or docs
        if len(docs) == len(job_ids) and all(status_of(doc).terminal for doc in docs.values()):
            break
        time.sleep(0.5)
    return docs, time.monotonic() - started


def open_jobs_in_store(store: JobStore) -> list[str]:
    """Every job the store's open-job record lists that is not terminal: jobs no client was told
    of (a submission given up on, a reply lost with the gateway) count too."""
    listed = [job_id for entry in OpenJobIndex(store).entries() for job_id in entry.job_ids]
    return [job_id for job_id, doc in read_jobs(store, listed).items() if not status_of(doc).terminal]


@dataclass
class Tally:
    case: str
    accepted: int
    succeeded: int
    failed: Counter[str]
    cancelled: int
    lost: int  # accepted, and not terminal within the bound (or gone from the store)
    written_twice: int  # a job with more than one terminal entry in its history
    duplicate_jobs: int  # an idempotency key answered with a second job
    open_in_store: int
    given_up: int
    refused: int
    worker_exits: list[int]
    attempts: Counter[int]
    terminal_after_s: float  # from the end of the load until every accepted job was terminal
    bound_s: float
    median_s: float = 0.0  # from accepted to terminal, over the accepted jobs
    longest_s: float = 0.0
    recovered: int = 0  # jobs the (last) gateway's recovery queued again
    unavailable_answers: int = 0  # 503s the (last) gateway gave, each retried by its client

    @classmethod
    def of(cls, case: str, submissions: Submissions, docs: dict[str, JobDoc], store: JobStore,
           keeper: WorkerKeeper, terminal_after_s: float, bound_s: float) -> Tally:
        ended = [doc for doc in docs.values() if status_of(doc).terminal]
        return cls(
            case=case,
            accepted=len(submissions.accepted),
            succeeded=sum(status_of(doc) is JobStatus.SUCCEEDED for doc in ended),
            failed=Counter(doc["error"]["code"] for doc in ended if status_of(doc) is JobStatus.FAILED),
            cancelled=sum(status_of(doc) is JobStatus.CANCELLED for doc in ended),
            lost=len(submissions.accepted) - len(ended),
            written_twice=sum(
                sum(JobStatus(entry["status"]).terminal for entry in doc["history"]) > 1 for doc in docs.values()
            ),
            duplicate_jobs=len(submissions.replayed_differently),
            open_in_store=len(open_jobs_in_store(store)),
            given_up=len(submissions.gave_up),
            refused=len(submissions.refused),
            worker_exits=list(keeper.exit_codes),
            attempts=Counter(doc["attempts"] for doc in ended),
            terminal_after_s=terminal_after_s,
            bound_s=bound_s,
            median_s=latencies(ended)[0],
            longest_s=latencies(ended)[1],
            **gateway_figures(keeper.pipeline.url),
        )

    def line(self) -> str:
        failed = ", ".join(f"{code} {count}" for code, count in sorted(self.failed.items())) or "none"
        attempts = ", ".join(f"{n}×{count}" for n, count in sorted(self.attempts.items()))
        return (
            f"chaos {self.case}: accepted {self.accepted}, succeeded {self.succeeded}, failed {failed}, "
            f"cancelled {self.cancelled}, lost {self.lost}, written twice {self.written_twice}, "
            f"duplicate jobs {self.duplicate_jobs}, open in store {self.open_in_store}, "
            f"given up {self.given_up}, refused {self.refused}, worker exits {self.worker_exits}, "
            f"attempts {attempts}, accepted to terminal median {self.median_s:.1f} s, longest "
            f"{self.longest_s:.1f} s, recovered {self.recovered}, 503 answers {self.unavailable_answers}; every job terminal {self.terminal_after_s:.1f} s after the load "
            f"(bound {self.bound_s:.0f} s)"
        )

    def assert_nothing_lost(self) -> None:
        assert self.accepted > 0
        assert self.lost == 0, self.line()
        assert self.written_twice == 0, self.line()
        assert self.duplicate_jobs == 0, self.line()
        assert self.open_in_store == 0, self.line()
        assert self.given_up == 0 and self.refused == 0, self.line()
        assert self.terminal_after_s < self.bound_s, self.line()
