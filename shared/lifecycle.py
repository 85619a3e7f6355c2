"""Job state changes as the system makes them: store first (CAS), then the event."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.errors import CasMismatch, JobNotFound, StoreUnavailable
from shared.events import EventPublisher
from shared.jobs import (
    ErrorCode,
    JobDoc,
    JobStatus,
    canonical_json,
    error_info,
    missed_its_start,
    status_of,
    transition,
)
from shared.sessions import ended_entry
from shared.store import JobStore
from shared.store.base import Mutation, Written

T = TypeVar("T")
log = logging.getLogger(__name__)

# Internal (public_view hides "_" fields): the limit that the current attempt's forward pass ran past.
TIMED_OUT_FIELD = "_timed_out_after_s"


class _AppliedOnce:
    """A mutation that a retried write does not apply twice.

    A store timeout on a write does not tell whether the write happened. When the retry finds
    the job holding exactly the document this mutation produced last, that write landed: it
    is not applied again (begin() would count a second attempt), but its event is still due.
    """

    def __init__(self, mutate: Mutation) -> None:
        self._mutate = mutate
        self._produced: str | None = None
        self.landed_earlier = False

    def __call__(self, doc: JobDoc) -> JobDoc | None:
        if self._produced is not None and canonical_json(doc) == self._produced:
            self.landed_earlier = True
            return None
        new = self._mutate(doc)
        self._produced = None if new is None else canonical_json(new)
        return new


class JobLifecycle:
    """Every write is idempotent: replaying it on a job that already moved on changes nothing.

    `store_retry_s` > 0 makes writes wait out a store outage (the worker must not drop a
    result); the gateway uses 0 and answers 503 instead.
    """

    def __init__(
        self,
        store: JobStore,
        publisher: EventPublisher,
        *,
        max_attempts: int,
        store_retry_s: float = 0.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.max_attempts = max_attempts
        self.store_retry_s = store_retry_s

    def _with_store_retry(self, call: Callable[..., T], *args: Any) -> T:
        retrying = Retrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential(multiplier=0.1, max=5),
            stop=stop_after_delay(self.store_retry_s),
            reraise=True,
        )
        return retrying(call, *args)

    def _write(self, job_id: str, mutate: Mutation) -> tuple[JobDoc, bool]:
        once = mutate if isinstance(mutate, _AppliedOnce) else _AppliedOnce(mutate)
        doc, changed = self._with_store_retry(self.store.update, job_id, once)
        changed = changed or once.landed_earlier
        if changed:
            self._ended(doc)
            self.publisher.publish(doc)
        return doc, changed

    def _write_many(self, mutations: dict[str, Mutation], known: dict[str, Written] | None = None
                    ) -> dict[str, Written | Exception]:
        """_write for many jobs: one read (none for the `known` ones) and one write, then one publish
        of every change. A job that failed alone there (its own CAS race or store error) is written
        alone, waiting out the store like _write; an outage of the whole store past the retry window
        is every job's StoreUnavailable."""
        onces = {job_id: _AppliedOnce(mutate) for job_id, mutate in mutations.items()}
        try:
            outcomes = self._with_store_retry(self.store.update_many, onces, known)
        except StoreUnavailable as e:
            return dict.fromkeys(onces, e)
        changed: list[JobDoc] = []
        for job_id, outcome in outcomes.items():
            if isinstance(outcome, Written):
                if outcome.changed or onces[job_id].landed_earlier:
                    outcomes[job_id] = Written(outcome.doc, True, outcome.cas)
                    self._ended(outcome.doc)
                    changed.append(outcome.doc)
            elif not isinstance(outcome, JobNotFound):
                try:  # alone, with its own event
                    outcomes[job_id] = Written(*self._write(job_id, onces[job_id]), cas=None)
                except (StoreUnavailable, CasMismatch, JobNotFound) as e:
                    outcomes[job_id] = e
        self.publisher.publish_many(changed)
        return outcomes

    def _ended(self, doc: JobDoc) -> None:
        if status_of(doc).terminal and doc.get("session_id"):
            self._note_end_in_session(doc)

    def _note_end_in_session(self, doc: JobDoc) -> None:
        """Keep the job's result in its session beyond the job's own document. Best effort: while the
        job exists the session shows its live state anyway, and a session that expired has no reader."""
        try:
            session = self.store.sessions.get(doc["session_id"])
            self.store.sessions.append(session, ended_entry(doc))
        except Exception as e:
            log.warning("job %s ended, but its session %s was not told: %s", doc["id"], doc["session_id"], e)

    def adopt_model(self, job_id: str, model: dict[str, str]) -> JobDoc:
        """Give `model` ({name, version}) to a job accepted before models had versions, whose `model`
        is null or names no version: without it the job has no queue (recovery, api/recovery.py)."""

        def mutate(doc: JobDoc) -> JobDoc | None:
            return None if (doc.get("model") or {}).get("version") else {**doc, "model": dict(model)}

        return self._write(job_id, mutate)[0]

    def image(self, job_id: str) -> bytes | None:
        """The job's stored image, waiting out a store outage like the writes do."""
        return self._with_store_retry(self.store.get_image, job_id)

    def images(self, job_ids: list[str]) -> dict[str, bytes | Exception | None]:
        """Each job's stored image in one round trip (None when gone), waiting out a store outage like
        the writes do; an image whose read failed alone is read again alone, the same way."""
        images = self._with_store_retry(self.store.get_images, job_ids)
        for job_id, image in images.items():
            if isinstance(image, StoreUnavailable):
                try:
                    images[job_id] = self.image(job_id)
                except StoreUnavailable as e:
                    images[job_id] = e
        return images

    def begin(self, job_id: str) -> JobDoc | None:
        """Mark a delivered job running; None when it must not run (finished, cancelled, or
        redelivered too often — then it fails with `worker_lost`)."""
        doc, changed = self._write(job_id, self._begun)
        return doc if changed and status_of(doc) is JobStatus.RUNNING else None

    def begin_fresh(self, job_ids: list[str], *, runs_here: Callable[[JobDoc], bool]
                    ) -> dict[str, Written | Exception]:
        """begin() for the jobs of a batch that are not running yet and that `runs_here` accepts, in one
        read and one write; the others are read and left as they are (a running one was redelivered:
        its worker was lost). Each job's outcome: running and changed means begun here."""

        def mutate(doc: JobDoc) -> JobDoc | None:
            if status_of(doc) is JobStatus.RUNNING or not runs_here(doc):
                return None
            return self._begun(doc)

        return self._write_many(dict.fromkeys(job_ids, mutate))

    def _begun(self, doc: JobDoc) -> JobDoc | None:
        status = status_of(doc)
        if status.terminal:
            return None
        if missed_its_start(doc, time.time()):
            return self._late(doc)
        if status is JobStatus.RUNNING and doc["attempts"] >= self.max_attempts:
            return self._given_up(doc)
        doc = {key: value for key, value in doc.items() if key != TIMED_OUT_FIELD}  # a new attempt
        return transition(doc, JobStatus.RUNNING)

    @staticmethod
    def _given_up(doc: JobDoc) -> JobDoc:
        """A job redelivered after its last attempt: `timeout` when that attempt's forward pass ran
        past the time limit, else `worker_lost`."""
        attempts = doc["attempts"]
        if TIMED_OUT_FIELD in doc:
            code, message = ErrorCode.TIMEOUT, (
                f"the inference ran past its limit of {doc[TIMED_OUT_FIELD]:g} s on the last of its "
                f"{attempts} attempts; giving up")
        else:
            code, message = ErrorCode.WORKER_LOST, (
                f"the job was delivered {attempts} times and its worker was lost each time; giving up")
        doc = {key: value for key, value in doc.items() if key != TIMED_OUT_FIELD}
        return transition(doc, JobStatus.FAILED, error=error_info(code, message))

    def note_timeout(self, job_id: str, limit_s: float) -> None:
        """Record that this attempt's forward pass ran past `limit_s` (the job stays running: its
        message comes back). One write, no retry: the worker is about to exit."""
        def mutate(doc: JobDoc) -> JobDoc | None:
            return {**doc, TIMED_OUT_FIELD: limit_s} if status_of(doc) is JobStatus.RUNNING else None

        self.store.update(job_id, mutate)

    @staticmethod
    def _late(doc: JobDoc) -> JobDoc:
        message = f"not started within its deadline of {doc['params']['deadline_s']:g} s"
        return transition(doc, JobStatus.CANCELLED, error=error_info(ErrorCode.TIMEOUT, message))

    def end_if_late(self, job_id: str) -> JobDoc | None:
        """Cancel a queued job that missed its start deadline (error code `timeout`); the job
        when it did, None when it was not late (or not queued any more)."""
        doc, changed = self._write(job_id, lambda doc: self._late(doc) if missed_its_start(doc, time.time()) else None)
        return doc if changed else None

    def succeed(self, job_id: str, *, result: dict[str, Any], model: dict[str, Any]) -> JobDoc:
        return self._write(job_id, self._succeeded(result, model))[0]

    def succeed_many(self, results: dict[str, dict[str, Any]], *, model: dict[str, Any],
                     known: dict[str, Written] | None = None) -> dict[str, Written | Exception]:
        """succeed() for a batch's jobs in one write, from their `known` documents and CAS when the
        batch began them (a job changed since is read and written alone)."""
        return self._write_many({job_id: self._succeeded(result, model) for job_id, result in results.items()},
                                known)

    @staticmethod
    def _succeeded(result: dict[str, Any], model: dict[str, Any]) -> Mutation:
        def mutate(doc: JobDoc) -> JobDoc | None:
            if status_of(doc) is not JobStatus.RUNNING:
                return None  # a replayed write: the job already finished
            return transition(doc, JobStatus.SUCCEEDED, result=result, model=model)

        return mutate

    def fail(
        self, job_id: str, code: ErrorCode, message: str, *, model: dict[str, Any] | None = None
    ) -> JobDoc:
        def mutate(doc: JobDoc) -> JobDoc | None:
            if status_of(doc) is not JobStatus.RUNNING:
                return None
            return transition(
                doc, JobStatus.FAILED, error=error_info(code, message), model=model
            )

        return self._write(job_id, mutate)[0]

    def cancel(self, job_id: str, tenant: str) -> JobDoc:
        """Cancel a queued job; IllegalTransition (409) once it has started."""
        self.store.get_job(job_id, tenant=tenant)  # 404 for unknown and foreign jobs
        return self._write(job_id, lambda doc: transition(doc, JobStatus.CANCELLED))[0]

    def cancel_queued(self, job_ids: list[str]) -> None:
        """Cancel those of `job_ids` still queued, in one write and one publish (a batch the gateway
        withdraws); a job a worker has begun already runs to its end. One the store would not cancel
        is logged and left queued: it still ends, run from its message or from recovery's."""
        def mutate(doc: JobDoc) -> JobDoc | None:
            return transition(doc, JobStatus.CANCELLED) if status_of(doc) is JobStatus.QUEUED else None

        for job_id, outcome in self._write_many(dict.fromkeys(job_ids, mutate)).items():
            if isinstance(outcome, Exception) and not isinstance(outcome, JobNotFound):
                log.warning("job %s was to be withdrawn, but stays queued and will run: %s", job_id, outcome)
