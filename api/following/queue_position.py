"""Where a queued job stands: how many jobs its model's workers take before it, and when it should
start at the measured drain rate.

A model version's lanes are Redis lists (shared/queue_names.py): kombu LPUSHes a message and its
workers BRPOP from the other end, taking the lanes in turn. So a job `i` places from the front of
its lane waits for the `i` before it, for up to `i` from each other lane (one per turn), and for
what the model's workers hold already (buffered or running). A job a worker holds has 0 ahead.

One reading per model version and gateway serves every job asked about within `max_age_s`: a
script returns only the messages' ids (not their bodies), with the held ones, in one step.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from starlette.concurrency import run_in_threadpool

from api.drain_rate import DrainRates
from shared.constants import UNACKED_KEY
from shared.jobs import JobDoc, JobStatus, rfc3339
from shared.models.catalogue import Catalogue
from shared.queue import queue_of

# KEYS: kombu's unacked hash, then the lanes. Returns each lane's message ids, front (the next
# taken) first, then the ids of the held messages that came from these lanes.
_READ_LANES = """
local lanes = {}
for i = 2, #KEYS do lanes[KEYS[i]] = true end
local found = {}
for i = 2, #KEYS do
    local ids = {}
    local raw = redis.call('LRANGE', KEYS[i], 0, -1)
    for j = #raw, 1, -1 do
        ids[#ids + 1] = cjson.decode(raw[j])['headers']['id']
    end
    found[#found + 1] = ids
end
local held = {}
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
    local delivery = cjson.decode(raw)
    if lanes[delivery[3]] then held[#held + 1] = delivery[1]['headers']['id'] end
end
found[#found + 1] = held
return found
"""


# After a failed reading, positions are left out this long before Redis is asked again.
REDIS_RETRY_S = 5.0


def model_ref_of(doc: JobDoc) -> str | None:
    """`name@version` of the job's model version; None for a job accepted before versions."""
    model = doc.get("model") or {}
    return f"{model['name']}@{model['version']}" if model.get("version") else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class LaneReading:
    """A model version's lanes at one moment."""

    read_at_s: float
    lengths: dict[str, int]
    place: dict[str, tuple[str, int]]  # job id → (its lane, how many are before it there)
    held: frozenset[str]
    busy: tuple[tuple[str, int], ...]  # the lanes with messages waiting, and how many
    rate: float | None = None  # the model version's drain rate when read, for every answer from this reading
    # Positions answered from this reading, by (job id, at_most): the streams of one job ask
    # within the same second, and share the answer.
    answers: dict[tuple[str, int | None], dict[str, Any] | None] = field(default_factory=dict, compare=False,
                                                                           repr=False)

    @classmethod
    def of(cls, lanes: list[str], found: list[list[bytes | str]], read_at_s: float,
           rate: float | None = None) -> LaneReading:
        *waiting, held = found
        place = {_text(job_id): (lane, i) for lane, ids in zip(lanes, waiting, strict=True)
                 for i, job_id in enumerate(ids)}
        lengths = {lane: len(ids) for lane, ids in zip(lanes, waiting, strict=True)}
        return cls(read_at_s, lengths, place, frozenset(_text(job_id) for job_id in held),
                   tuple((lane, length) for lane, length in lengths.items() if length), rate)

    def ahead_of(self, job_id: str) -> int | None:
        """Jobs taken before this one; None when it has no message (not queued yet, or lost)."""
        if job_id in self.held:
            return 0
        if job_id not in self.place:
            return None
        lane, before = self.place[job_id]
        others = sum(min(length, before) for other, length in self.busy if other != lane)
        return len(self.held) + before + others

    def position(self, job_id: str, at_most: int | None) -> dict[str, Any] | None:
        """The job's position (see QueuePositions.position), worked out once per reading."""
        key = (job_id, at_most)
        if key in self.answers:
            return self.answers[key]
        ahead = self.ahead_of(job_id)
        if ahead is not None and at_most is not None:
            ahead = min(ahead, at_most)
        start_s = None if ahead is None or not self.rate else self.read_at_s + ahead / self.rate
        answer = self.answers[key] = None if ahead is None else {
            "ahead": ahead,
            "estimated_start_at": None if start_s is None else rfc3339(start_s),
            "drain_per_s": None if self.rate is None else round(self.rate, 3),
            "measured_at": rfc3339(self.read_at_s),
        }
        return answer


class QueuePositions:
    def __init__(self, client: redis.Redis, catalogue: Catalogue, drain_rates: DrainRates,
                 max_age_s: float = 1.0) -> None:
        self.client = client
        self.catalogue = catalogue
        self.drain_rates = drain_rates
        self.max_age_s = max_age_s
        self._read = client.register_script(_READ_LANES)
        self._readings: dict[str, LaneReading] = {}
        self._lock = threading.Lock()  # one reading at a time: the streams asking at once share it
        self._unread_until = 0.0  # after Redis failed: no position until then

    def job_finished(self, doc: JobDoc) -> None:
        """A terminal job: its model version's drain rate, which the estimates divide by."""
        ref = model_ref_of(doc)
        if ref is not None:
            self.drain_rates.of(ref).record()

    def position(self, doc: JobDoc, at_most: int | None = None) -> dict[str, Any] | None:
        """`{ahead, estimated_start_at, drain_per_s, measured_at}` of a queued job; None for a job
        not queued, without a message, or when Redis does not answer (a position is a courtesy:
        reading the job never fails for it).

        `at_most`: the fewest ahead already told to whoever follows the job. A reading can miss a
        message between its lane and the worker that took it (kombu pops it, then records it as
        unacked), so a later, true reading would say more; what was told is kept instead."""
        ref = self._askable_ref(doc)
        if ref is None:
            return None
        try:
            reading = self.reading(ref, queue_of(doc))
        except (redis.RedisError, KeyError, ValueError):
            # Every stream asks each second: during an outage, one timeout per interval, not one per stream.
            self._unread_until = time.monotonic() + REDIS_RETRY_S
            return None
        return reading.position(doc["id"], at_most)

    async def position_off_loop(self, doc: JobDoc, at_most: int | None = None) -> dict[str, Any] | None:
        """`position`, in a thread only when it has to ask Redis: thousands of streams ask each
        second, and a thread hand-off each would cost them more than the answer."""
        if self._asks_redis(doc):
            return await run_in_threadpool(self.position, doc, at_most)
        return self.position(doc, at_most)

    def _askable_ref(self, doc: JobDoc) -> str | None:
        """The model version to read the lanes of; None for a job not queued, without a version,
        or while Redis is left alone after a failed reading."""
        ref = model_ref_of(doc)
        if doc.get("status") != JobStatus.QUEUED or time.monotonic() < self._unread_until:
            return None
        return ref

    def _asks_redis(self, doc: JobDoc) -> bool:
        ref = self._askable_ref(doc)
        if ref is None:
            return False
        reading = self._readings.get(ref)
        return reading is None or self._stale(reading, queue_of(doc))

    def _stale(self, reading: LaneReading, lane: str) -> bool:
        return time.time() - reading.read_at_s >= self.max_age_s or lane not in reading.lengths

    def reading(self, ref: str, lane: str) -> LaneReading:
        with self._lock:
            reading = self._readings.get(ref)
            if reading is None or self._stale(reading, lane):
                lanes = list(self.catalogue.queues().get(ref) or [lane])
                if lane not in lanes:
                    lanes.append(lane)
                found = self._read(keys=[UNACKED_KEY, *lanes])
                reading = self._readings[ref] = LaneReading.of(lanes, found, time.time(),
                                                               self.drain_rates.of(ref).per_s())
            return reading
