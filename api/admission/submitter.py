"""Accepting work: check, store, enqueue — the business rules behind POST /v1/jobs and
/v1/batches, kept out of the route handlers."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import redis
from celery import Celery
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as KombuOperationalError

from api.admission.backlog import Backlog
from api.admission.checks import ImageInfo, open_upload
from api.admission.tenant_limits import TenantLimits
from api.delivery.addresses import target_of
from api.delivery.queue import DeliveryQueue
from api.delivery.subjects import batch_target
from api.drain_rate import DrainRate
from shared.config import Settings
from shared.errors import (
    AsyncInferError,
    BadRequest,
    CallbackRefused,
    DependencyUnavailable,
    SessionFull,
    UndecodableImage,
)
from shared.jobs import JobDoc, new_id, new_job, now_rfc3339
from shared.lifecycle import JobLifecycle
from shared.models import ModelSpec
from shared.models.catalogue import Catalogue
from shared.models.traffic import TrafficSplits
from shared.preprocessing import pack_pixels, to_model_image
from shared.queue import enqueue, enqueue_all, queue_of
from shared.sessions import MAX_SESSION_JOBS, Session, jobs_in, submitted_entry
from shared.store import Idempotency, JobStore
from shared.tracing import current_trace_id


@dataclass(frozen=True)
class Upload:
    """An image as received: its bytes, or the spooled file that holds them (in memory up to
    1 MiB, on disk beyond), read only when a check starts."""

    data: bytes | IO[bytes]
    declared_type: str | None
    filename: str | None = None

    def read(self) -> bytes:
        if isinstance(self.data, bytes):
            return self.data
        self.data.seek(0)
        return self.data.read()


class Submitter:
    def __init__(self, settings: Settings, lifecycle: JobLifecycle, celery: Celery, redis_client: redis.Redis,
                 catalogue: Catalogue, drain_rate: DrainRate, deliveries: DeliveryQueue) -> None:
        self.settings = settings
        self.deliveries = deliveries
        self.lifecycle = lifecycle
        self.celery = celery
        self.redis = redis_client
        self.catalogue = catalogue
        self.splits = TrafficSplits(redis_client)
        self.backlog = Backlog(redis_client, settings.backlog_limit, drain_rate,
                               queues=lambda: [queue for lanes in catalogue.queues().values() for queue in lanes])
        self.tenant_limits = TenantLimits(redis_client, settings.outstanding_limit_of)
        # Uploads being checked are in memory twice over (bytes, decoded pixels); the others wait
        # spooled. One check per core: checking is CPU-bound, so more would add memory, not speed.
        self._checking = threading.BoundedSemaphore(os.cpu_count() or 1)

    @property
    def store(self) -> JobStore:
        return self.lifecycle.store

    def model_for(self, model: str | None, top_k: int | None,
                  sticky_key: Callable[[], str] = lambda: new_id()) -> tuple[ModelSpec, int]:
        """The model version a job goes to (UnknownModel, 404, before anything is read or stored):
        the one it names, else the one its model's traffic split gives `sticky_key` (shared/models/
        traffic.py), else the latest; and its `top_k`: the model's default, or the client's within
        the model's maximum."""
        choose = self.splits.chooser(sticky_key, self.catalogue.versions, self.catalogue.latest_version)
        try:
            spec = self.catalogue.resolve(model, choose_version=choose)
        except redis.RedisError as e:
            raise DependencyUnavailable(f"Redis does not answer: {e}") from e
        if top_k is None:
            return spec, spec.default_top_k
        if not 1 <= top_k <= spec.max_top_k:
            raise BadRequest(f"top_k must be from 1 to {spec.max_top_k} for model {spec.ref}, not {top_k}")
        return spec, top_k

    def inspect(self, upload: Upload, spec: ModelSpec) -> tuple[ImageInfo, bytes]:
        """Validate an upload; returns what it is and the bytes to store for `spec`'s worker."""
        with self._checking:
            return self._inspect(upload.read(), upload.declared_type, spec)

    def _inspect(self, data: bytes, declared_type: str | None, spec: ModelSpec) -> tuple[ImageInfo, bytes]:
        info, image = open_upload(
            data,
            declared_type,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
            min_side_px=self.settings.min_image_side_px,
            draft_size=spec.input.size,
        )
        if self.settings.preprocess_at == "worker" or not spec.input.gateway_preprocessing:
            return info, data
        # The image is decoded already (validation needs that): the rest of the preprocessing
        # is a resize, and the worker then reads the model's pixels instead of decoding again.
        try:
            return info, pack_pixels(to_model_image(image, spec.input))
        except Exception as e:  # whatever Pillow raises here, the image is at fault
            raise UndecodableImage(f"the {info.content_type} image cannot be preprocessed: {e}") from e


    def check_callback(self, callback_url: str | None) -> None:
        """Refuse (422) a callback_url deliveries may not reach, before anything is read or stored."""
        if callback_url is None:
            return
        if not self.settings.webhook_secret.get_secret_value():
            raise CallbackRefused("this gateway sends no webhooks: ASYNCINFER_WEBHOOK_SECRET is not set")
        target_of(self.settings, callback_url)

    def session_for(self, session_id: str | None, tenant: str, adding: int) -> Session | None:
        """The tenant's session that `adding` jobs join (SessionNotFound, 404, before anything is
        stored; SessionFull, 409, past MAX_SESSION_JOBS)."""
        if session_id is None:
            return None
        session = self.store.sessions.get(session_id, tenant=tenant)
        if len(jobs_in(session)) + adding > MAX_SESSION_JOBS:
            raise SessionFull(f"session {session_id} holds {MAX_SESSION_JOBS} jobs already: start a new session")
        return session

    def _enqueue(self, doc: JobDoc) -> None:
        with _queue_errors():
            enqueue(self.celery, doc["id"], queue_of(doc))

    def _enqueue_batch(self, docs: list[JobDoc]) -> None:
        """Every message in one round trip; if this raises, any of them may be on the queue."""
        with _queue_errors():
            enqueue_all(self.celery, [(doc["id"], queue_of(doc)) for doc in docs])

    def submit_job(
        self, upload: Upload, *, tenant: str, model: str | None = None, top_k: int | None = None,
        idempotency_key: str | None = None, deadline_s: float | None = None, request_id: str | None = None,
        callback_url: str | None = None, session_id: str | None = None,
    ) -> tuple[JobDoc, bool]:
        """Returns (job, created); a repeated idempotency key returns the first job. With
        `session_id`, the job joins that session of the tenant's."""
        self.check_callback(callback_url)
        session = self.session_for(session_id, tenant, 1)

        def sticky_key() -> str:  # a retry with the same key, or the same image, sees the same version
            if idempotency_key:
                return f"key:{tenant}:{idempotency_key}"
            return f"image:{hashlib.sha256(upload.read()).hexdigest()}"

        spec, top_k = self.model_for(model, top_k, sticky_key)
        info, stored = self.inspect(upload, spec)
        job_id = new_id()
        # The tenant's own limit first: a tenant at its limit is told so, whatever the backlog.
        with self.tenant_limits.admit(tenant, [job_id]), self.backlog.admit(1, deadline_s):
            doc, created = self._store_and_enqueue(
                new_job(tenant=tenant, input_info=info.as_dict(), model=model_field(spec), top_k=top_k,
                        job_id=job_id, deadline_s=deadline_s, request_id=request_id, callback_url=callback_url,
                        trace_id=current_trace_id(), session_id=session_id),
                info, stored, spec, idempotency_key, session, upload.filename)
        if not created:  # the key's first job, counted when it was accepted
            self.tenant_limits.release(tenant, [job_id])
        return doc, created

    def _store_and_enqueue(self, doc: JobDoc, info: ImageInfo, stored: bytes, spec: ModelSpec,
                           idempotency_key: str | None, session: Session | None,
                           filename: str | None) -> tuple[JobDoc, bool]:
        tenant, top_k, deadline_s = doc["tenant"], doc["params"]["top_k"], doc["params"].get("deadline_s")
        callback_url = doc.get("callback_url")
        if session is not None:
            # Before the job exists: a crash in between leaves an entry without a job, which the
            # session's view leaves out, never a job of the session that its history misses.
            self.store.sessions.append(session, submitted_entry(doc, filename))
        if not idempotency_key:
            doc, _ = self.store.create_job(doc, stored)
            self._enqueue_or_discard(doc)
            return doc, True
        # Another image, model, top_k, deadline, callback or session under the same key is a conflict.
        submitted = [info.sha256, spec.ref, str(top_k), str(deadline_s), callback_url, doc.get("session_id")]
        fingerprint = hashlib.sha256(":".join(part for part in submitted if part).encode()).hexdigest()
        idempotency = Idempotency(idempotency_key, fingerprint)
        doc, created = self.store.create_job(doc, stored, idempotency)
        if created:
            self._enqueue_or_discard(doc, idempotency)
        elif self.store.needs_enqueue(doc, idempotency):
            self._enqueue(doc)  # failing here leaves the job for the client's next retry
        else:
            return doc, created  # queued by the request that created it
        self.store.confirm_enqueued(tenant, idempotency)
        return doc, created

    def _enqueue_or_discard(self, doc: JobDoc, idempotency: Idempotency | None = None) -> None:
        try:
            self._enqueue(doc)
        except DependencyUnavailable:
            # Not accepted after all: remove it so that nothing waits for a job never queued.
            self.store.discard_job(doc["id"])
            if idempotency is not None:
                self.store.release_claim(doc["tenant"], idempotency)
            raise

    def submit_batch(self, uploads: list[Upload], *, tenant: str, model: str | None = None, top_k: int | None = None,
                     deadline_s: float | None = None, request_id: str | None = None,
                     callback_url: str | None = None, session_id: str | None = None) -> dict[str, Any]:
        """All or nothing: every file is checked before any job is created. A traffic split picks one
        version for the whole batch, by its first image. With `callback_url`, the batch is POSTed
        there once every member has ended; with `session_id`, every member joins that session."""
        self.check_callback(callback_url)
        session = self.session_for(session_id, tenant, len(uploads))
        spec, top_k = self.model_for(model, top_k, lambda: f"image:{hashlib.sha256(uploads[0].read()).hexdigest()}")
        infos: list[ImageInfo] = []
        stored: list[bytes] = []
        problems: list[dict[str, Any]] = []
        for index, upload in enumerate(uploads):
            try:
                info, data = self.inspect(upload, spec)
                infos.append(info)
                stored.append(data)
            except AsyncInferError as e:
                problems.append(
                    {"index": index, "file": upload.filename, "status": e.status, "detail": e.detail}
                )
        if problems:
            raise BatchRejected(problems)
        job_ids = [new_id() for _ in uploads]
        with self.tenant_limits.admit(tenant, job_ids), self.backlog.admit(len(uploads), deadline_s):
            return self._store_and_enqueue_batch(job_ids, infos, stored, tenant, spec, top_k, deadline_s, request_id,
                                                 callback_url, session, [upload.filename for upload in uploads])

    def _store_and_enqueue_batch(self, job_ids: list[str], infos: list[ImageInfo], stored: list[bytes], tenant: str,
                                 spec: ModelSpec, top_k: int, deadline_s: float | None,
                                 request_id: str | None, callback_url: str | None, session: Session | None,
                                 filenames: list[str | None]) -> dict[str, Any]:
        batch_id = new_id()
        jobs = [
            new_job(tenant=tenant, input_info=info.as_dict(), model=model_field(spec), top_k=top_k,
                    batch_id=batch_id, job_id=job_id, deadline_s=deadline_s, request_id=request_id,
                    trace_id=current_trace_id(), session_id=None if session is None else session["id"])
            for job_id, info in zip(job_ids, infos, strict=True)
        ]
        if session is not None:  # before the jobs exist, as for one job
            self.store.sessions.append(session, *(submitted_entry(doc, name) for doc, name in zip(jobs, filenames,
                                                                                                   strict=True)))
        self.store.create_jobs(list(zip(jobs, stored, strict=True)))
        batch = {
            "id": batch_id,
            "type": "batch",
            "tenant": tenant,
            "created_at": now_rfc3339(),
            "model": model_field(spec),
            "job_ids": [doc["id"] for doc in jobs],
        } | ({"callback_url": callback_url} if callback_url else {})
        self.store.create_batch(batch)
        if callback_url:
            self._schedule_batch_webhook(batch_id, jobs)
        try:
            self._enqueue_batch(jobs)
        except DependencyUnavailable:
            self._withdraw_batch(batch_id, jobs, maybe_queued=True)
            raise
        return batch

    def _schedule_batch_webhook(self, batch_id: str, jobs: list[JobDoc]) -> None:
        """Before any member is queued, so that no batch is accepted without it: the deliverer looks
        every ASYNCINFER_WEBHOOK_BATCH_CHECK_S whether all members have ended, and sends it once they
        have (in Redis, like the queue: it outlives any gateway)."""
        try:
            self.deliveries.schedule(batch_target(batch_id), time.time() + self.settings.webhook_batch_check_s)
        except redis.RedisError as e:
            self._withdraw_batch(batch_id, jobs, maybe_queued=False)
            raise DependencyUnavailable(f"Redis does not answer: {e}") from e

    def _withdraw_batch(self, batch_id: str, jobs: list[JobDoc], *, maybe_queued: bool) -> None:
        """All or nothing on enqueue too: jobs whose messages may be on the queue are cancelled (a
        worker skips them), jobs never queued forgotten, and so is the batch."""
        if maybe_queued:
            self.lifecycle.cancel_queued([doc["id"] for doc in jobs])
        else:
            for doc in jobs:
                self.store.discard_job(doc["id"])
        self.store.discard_batch(batch_id)


@contextmanager
def _queue_errors() -> Iterator[None]:
    try:
        yield
    except (KombuOperationalError, BatchPublishError, redis.RedisError, OSError) as e:
        raise DependencyUnavailable(f"the queue (Redis) does not answer: {e}") from e


def model_field(spec: ModelSpec) -> dict[str, str]:
    """The job document's `model` at acceptance; its worker adds weights, their sha256, backend and device."""
    return {"name": spec.name, "version": spec.version}


class BatchRejected(AsyncInferError):
    """At least one file of a batch is not acceptable; none was accepted."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        first = problems[0]
        super().__init__(
            f"{len(problems)} of the files cannot be accepted; the first (#{first['index']}"
            f"{' ' + first['file'] if first['file'] else ''}): {first['detail']}"
        )
        self.status = first["status"]
        self.title = "Batch rejected"
        self.errors = problems
