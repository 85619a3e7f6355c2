"""Production job store: Couchbase, through key-value and sub-document operations only.

No query service, so it works the same on one node, a cluster, and the mock used in tests.

Expiry: every Couchbase mutation sets the document's expiry, and one sent without it clears
the TTL. Rather than `preserve_expiry` (CouchbaseMock cannot do it, and tests must exercise
what production runs), each JSON document carries its absolute expiry time in an internal
field, and every replace or sub-document update passes the time that is left. A status change
therefore never extends a job's life.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any, TypeVar

import couchbase.subdocument as SD
from couchbase.auth import PasswordAuthenticator
from couchbase.bucket import Bucket
from couchbase.cluster import Cluster
from couchbase.collection import Collection
from couchbase.diagnostics import PingState, ServiceType
from couchbase.exceptions import (
    AmbiguousTimeoutException,
    AuthenticationException,
    BucketNotFoundException,
    CasMismatchException,
    DocumentExistsException,
    DocumentNotFoundException,
    MissingConnectionException,
    RequestCanceledException,
    ServiceUnavailableException,
    TemporaryFailException,
    TimeoutException,
    UnAmbiguousTimeoutException,
)
from couchbase.options import (
    ClusterOptions,
    ClusterTimeoutOptions,
    GetMultiOptions,
    GetOptions,
    InsertMultiOptions,
    InsertOptions,
    MutateInOptions,
    PingOptions,
    ReplaceMultiOptions,
    ReplaceOptions,
)
from couchbase.transcoder import RawBinaryTranscoder
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from shared.config import Settings
from shared.errors import CasMismatch, DocumentExists, DocumentMissing, StoreMisconfigured, StoreUnavailable
from shared.jobs import canonical_json
from shared.store.base import Cas, Found, JobStore, ManyFound
from shared.store.subdoc import changes_as_specs

# Internal (public_view drops `_` fields): unix time at which the document expires.
EXPIRES_AT_FIELD = "_expires_at"

# The store cannot do its job: the caller answers 503 (gateway) or retries (worker).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    TimeoutException,
    AmbiguousTimeoutException,  # not a TimeoutException subclass, nor is the next one
    UnAmbiguousTimeoutException,
    ServiceUnavailableException,
    TemporaryFailException,
    RequestCanceledException,
    MissingConnectionException,
    OSError,
)
# After these a write may or may not have been applied on the server.
_MAYBE_APPLIED: tuple[type[BaseException], ...] = (
    AmbiguousTimeoutException,
    RequestCanceledException,
    TimeoutException,
)
# Re-reads allowed to settle one ambiguous insert before giving up with StoreUnavailable.
_INSERT_ATTEMPTS = 3

# How long a starting gateway or worker waits for the cluster (e.g. a container starting beside it).
STARTUP_WAIT_S = 60.0

_BINARY = RawBinaryTranscoder()
T = TypeVar("T")
log = logging.getLogger(__name__)


class CouchbaseStore(JobStore):
    def __init__(self, cluster: Cluster, bucket: Bucket, collection: Collection, ttl_s: int,
                 *, timeout_s: float) -> None:
        super().__init__(ttl_s)
        self.cluster = cluster
        self.bucket = bucket
        self.collection = collection
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings, *, wait_s: float = STARTUP_WAIT_S) -> CouchbaseStore:
        """Connect, waiting up to `wait_s` for the cluster to answer.

        StoreMisconfigured names the setting to fix; StoreUnavailable means it never answered.
        """
        retrying = Retrying(
            retry=retry_if_exception_type(StoreUnavailable),
            stop=stop_after_delay(wait_s),
            wait=wait_fixed(1),
            before_sleep=lambda state: log.warning(
                "waiting for %s: %s", settings.store, state.outcome and state.outcome.exception()
            ),
            reraise=True,
        )
        return retrying(cls._connect, settings)

    @classmethod
    def _connect(cls, settings: Settings) -> CouchbaseStore:
        connect = timedelta(seconds=settings.couchbase_connect_timeout_s)
        options = ClusterOptions(
            PasswordAuthenticator(
                settings.couchbase_username, settings.couchbase_password.get_secret_value()
            ),
            timeout_options=ClusterTimeoutOptions(
                connect_timeout=connect,
                bootstrap_timeout=connect,
                kv_timeout=timedelta(seconds=settings.couchbase_kv_timeout_s),
            ),
        )
        where = f"Couchbase at {settings.store}"
        try:
            cluster = Cluster(settings.store, options)
            bucket = cluster.bucket(settings.couchbase_bucket)
        except AuthenticationException as e:
            raise StoreMisconfigured(
                f"{where} refused the credentials: check ASYNCINFER_COUCHBASE_USERNAME and "
                "ASYNCINFER_COUCHBASE_PASSWORD"
            ) from e
        except BucketNotFoundException as e:
            raise StoreMisconfigured(
                f"{where} has no bucket {settings.couchbase_bucket!r} (ASYNCINFER_COUCHBASE_BUCKET)"
            ) from e
        except _UNAVAILABLE as e:
            raise StoreUnavailable(
                f"{where} did not answer within {settings.couchbase_connect_timeout_s:g} s: "
                f"{type(e).__name__}"
            ) from e
        collection = bucket.scope(settings.couchbase_scope).collection(settings.couchbase_collection)
        return cls(
            cluster, bucket, collection, settings.job_ttl_s, timeout_s=settings.couchbase_kv_timeout_s
        )

    # ---- JSON documents ------------------------------------------------------------------
    def _insert(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        self._insert_stamped(key, self._stamped(value, ttl_s), ttl_s)

    @staticmethod
    def _stamped(value: dict[str, Any], ttl_s: int) -> dict[str, Any]:
        return {**value, EXPIRES_AT_FIELD: round(time.time() + ttl_s, 3)}

    def _insert_stamped(self, key: str, stored: dict[str, Any], ttl_s: int, *, ambiguous: bool = False) -> None:
        options = InsertOptions(expiry=timedelta(seconds=ttl_s))
        self._insert_settled(
            key,
            lambda: self.collection.insert(key, stored, options),
            read_back=lambda: self._stored_json(key),
            expected=canonical_json(stored),
            ambiguous=ambiguous,
        )

    def _insert_many(self, values: dict[str, dict[str, Any]], ttl_s: int) -> None:
        stored = {key: self._stamped(value, ttl_s) for key, value in values.items()}
        for key in self._insert_multi(stored, InsertMultiOptions(expiry=timedelta(seconds=ttl_s))):
            self._insert_stamped(key, stored[key], ttl_s, ambiguous=True)

    def _get(self, key: str) -> tuple[dict[str, Any], Cas] | None:
        with self._unavailable_as_store_error("get", key):
            try:
                result = self.collection.get(key)
            except DocumentNotFoundException:
                return None
        return result.content_as[dict], result.cas

    def _replace(self, key: str, value: dict[str, Any], cas: Cas) -> None:
        options = ReplaceOptions(cas=cas, expiry=self._time_left(value))
        self._write_under_cas(key, lambda: self.collection.replace(key, value, options))

    def _replace_changes(self, key: str, current: dict[str, Any], new: dict[str, Any], cas: Cas) -> None:
        """Send only what changed; a list that grew (the history) is appended to."""
        specs = changes_as_specs(current, new)
        if specs is None:
            self._replace(key, new, cas)
            return
        options = MutateInOptions(cas=cas, expiry=self._time_left(new))
        self._write_under_cas(key, lambda: self.collection.mutate_in(key, specs, options))

    def _append_to(self, key: str, field: str, items: list[Any], expires_at_s: float) -> None:
        """One sub-document array_append: the server applies concurrent ones one after another."""
        options = MutateInOptions(expiry=self._seconds_left(expires_at_s))
        self._write_under_cas(key, lambda: self.collection.mutate_in(key, [SD.array_append(field, *items)], options))

    def _remove(self, key: str) -> None:
        with self._unavailable_as_store_error("remove", key), suppress(DocumentNotFoundException):
            self.collection.remove(key)

    # ---- many keys: the SDK's multi-key operations, one request per key sent together -----
    def _get_many(self, keys: list[str]) -> ManyFound:
        with self._unavailable_as_store_error("get_multi", keys[0]):
            found = self.collection.get_multi(keys, GetMultiOptions(return_exceptions=True))
        values: ManyFound = {key: (result.content_as[dict], result.cas) for key, result in found.results.items()}
        return values | {key: self._read_error_of(key, error) for key, error in found.exceptions.items()}

    def _replace_many(self, writes: dict[str, Found]) -> dict[str, Cas | Exception]:
        options = ReplaceMultiOptions(return_exceptions=True, per_key_options={
            key: ReplaceOptions(cas=cas, expiry=self._time_left(value)) for key, (value, cas) in writes.items()})
        with self._unavailable_as_store_error("replace_multi", next(iter(writes))):
            written = self.collection.replace_multi({key: value for key, (value, _) in writes.items()}, options)
        outcomes: dict[str, Cas | Exception] = {key: result.cas for key, result in written.results.items()}
        return outcomes | {key: self._error_of(key, error) for key, error in written.exceptions.items()}

    def _get_binary_many(self, keys: list[str]) -> dict[str, bytes | Exception | None]:
        with self._unavailable_as_store_error("get_multi", keys[0]):
            found = self.collection.get_multi(keys, GetMultiOptions(return_exceptions=True, transcoder=_BINARY))
        values: dict[str, bytes | Exception | None] = {key: bytes(result.value)
                                                       for key, result in found.results.items()}
        return values | {key: self._read_error_of(key, error) for key, error in found.exceptions.items()}

    def _remove_many(self, keys: list[str]) -> None:
        with self._unavailable_as_store_error("remove_multi", keys[0]):
            self.collection.remove_multi(keys)  # absent keys come back as exceptions, not raised

    @staticmethod
    def _error_of(key: str, error: BaseException) -> Exception:
        """One key's failure in a multi-key call, as the store's own errors."""
        if isinstance(error, DocumentNotFoundException):
            return DocumentMissing(key)
        if isinstance(error, CasMismatchException):
            return CasMismatch(key)
        if isinstance(error, _UNAVAILABLE):
            return StoreUnavailable(f"Couchbase {key}: {type(error).__name__}")
        raise error

    @classmethod
    def _read_error_of(cls, key: str, error: BaseException) -> Exception | None:
        """As _error_of, with an absent document as None (what a read answers)."""
        failure = cls._error_of(key, error)
        return None if isinstance(failure, DocumentMissing) else failure

    # ---- binary documents (images) -------------------------------------------------------
    def _insert_binary(self, key: str, data: bytes, ttl_s: int, *, ambiguous: bool = False) -> None:
        options = InsertOptions(expiry=timedelta(seconds=ttl_s), transcoder=_BINARY)
        self._insert_settled(
            key,
            lambda: self.collection.insert(key, data, options),
            read_back=lambda: self._get_binary(key),
            expected=data,
            ambiguous=ambiguous,
        )

    def _insert_binary_many(self, values: dict[str, bytes], ttl_s: int) -> None:
        options = InsertMultiOptions(expiry=timedelta(seconds=ttl_s), transcoder=_BINARY)
        for key in self._insert_multi(values, options):
            self._insert_binary(key, values[key], ttl_s, ambiguous=True)

    def _insert_multi(self, values: dict[str, Any], options: InsertMultiOptions) -> list[str]:
        """One insert_multi (the SDK sends a request per key, together); the keys whose outcome is
        unknown (a lost reply), for the caller to settle one by one as a lone insert is."""
        options["return_exceptions"] = True
        with self._unavailable_as_store_error("insert_multi", next(iter(values))):
            written = self.collection.insert_multi(values, options)
        unsettled = []
        for key, error in written.exceptions.items():
            if isinstance(error, DocumentExistsException):
                raise DocumentExists(key) from error
            if isinstance(error, _MAYBE_APPLIED):
                unsettled.append(key)
            elif isinstance(error, _UNAVAILABLE):
                raise StoreUnavailable(f"Couchbase insert {key}: {type(error).__name__}") from error
            else:
                raise error
        return unsettled

    def _get_binary(self, key: str) -> bytes | None:
        with self._unavailable_as_store_error("get", key):
            try:
                result = self.collection.get(key, GetOptions(transcoder=_BINARY))
            except DocumentNotFoundException:
                return None
        return bytes(result.value)

    # ---- health --------------------------------------------------------------------------
    def ping(self) -> None:
        """StoreUnavailable naming every key-value endpoint that does not answer."""
        options = PingOptions(
            service_types=[ServiceType.KeyValue], timeout=timedelta(seconds=self.timeout_s)
        )
        with self._unavailable_as_store_error("ping", self.bucket.name):
            report = self.bucket.ping(options)
        endpoints = [endpoint for group in report.endpoints.values() for endpoint in group]
        down = [
            f"kv {endpoint.remote or '?'}: {endpoint.state.value}"
            for endpoint in endpoints
            if endpoint.state is not PingState.OK
        ]
        if down or not endpoints:
            raise StoreUnavailable("Couchbase " + ("; ".join(down) or "has no key-value endpoint"))

    def close(self) -> None:
        self.cluster.close()

    # ---- helpers -------------------------------------------------------------------------
    def _time_left(self, doc: dict[str, Any]) -> timedelta:
        expires_at = doc.get(EXPIRES_AT_FIELD)
        if expires_at is None:  # written before this field existed
            return timedelta(seconds=self.ttl_s)
        return self._seconds_left(expires_at)

    @staticmethod
    def _seconds_left(expires_at_s: float) -> timedelta:
        # Whole seconds, never 0: an expiry of 0 means "never expires".
        return timedelta(seconds=max(1, math.ceil(expires_at_s - time.time())))

    def _stored_json(self, key: str) -> str | None:
        found = self._get(key)
        return None if found is None else canonical_json(found[0])

    def _insert_settled(
        self, key: str, insert: Callable[[], object], *, read_back: Callable[[], T | None], expected: T,
        ambiguous: bool = False,
    ) -> None:
        """Insert; after an ambiguous outcome, read the key back to learn what happened.

        Our own value there means our insert landed; another value, that someone else was
        first (DocumentExists); nothing, that it did not land, so it is tried again. `ambiguous`:
        an earlier try (of a multi-key insert) has an unknown outcome already.
        """
        for _ in range(_INSERT_ATTEMPTS):
            try:
                insert()
                return
            except DocumentExistsException as e:
                if ambiguous and read_back() == expected:
                    return  # the earlier, ambiguous try had landed after all
                raise DocumentExists(key) from e
            except _MAYBE_APPLIED as e:
                ambiguous = True
                stored = read_back()  # StoreUnavailable while the cluster is still away
                if stored == expected:
                    return
                if stored is not None:
                    raise DocumentExists(key) from e
            except _UNAVAILABLE as e:
                raise StoreUnavailable(f"Couchbase insert {key}: {type(e).__name__}") from e
        raise StoreUnavailable(f"Couchbase insert {key}: no definite outcome after {_INSERT_ATTEMPTS} tries")

    def _write_under_cas(self, key: str, write: Callable[[], object]) -> None:
        with self._unavailable_as_store_error("write", key):
            try:
                write()
            except CasMismatchException as e:
                raise CasMismatch(key) from e
            except DocumentNotFoundException as e:
                raise DocumentMissing(key) from e

    @contextmanager
    def _unavailable_as_store_error(self, operation: str, key: str) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as e:
            # After an ambiguous write the caller re-reads before deciding again (see
            # JobLifecycle), so a write that did land is not applied twice.
            raise StoreUnavailable(f"Couchbase {operation} {key}: {type(e).__name__}") from e
