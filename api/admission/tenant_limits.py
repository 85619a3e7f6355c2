"""Admission per tenant: how many jobs each tenant has open (queued or running), and whether more fit.

Each tenant's open jobs are a sorted set in Redis (job id, scored by when it was admitted): the
check and the additions are one script, so concurrent submits on any number of gateways cannot
take a tenant past its limit. A job leaves the set when its terminal event reaches a gateway
(every gateway hears every one; removing twice is harmless). An event no gateway heard (all of them
down as the job ended) is made good by recovery, which drops the members of jobs no longer open
(`prune`). Only the tenant at its limit is refused; the others are admitted as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress

import redis

from api.drain_rate import DrainRates, seconds_to_drain
from shared.constants import RESERVATION_TTL_S, TENANT_OPEN_JOBS_PREFIX
from shared.errors import DependencyUnavailable, TenantBusy

# KEYS: the tenant's open jobs. ARGV: now, the limit, then the job ids to add.
# Returns -1 when added, else how many jobs the tenant has open.
_ADMIT = """
local open = redis.call('ZCARD', KEYS[1])
if open + #ARGV - 2 > tonumber(ARGV[2]) then
    return open
end
for i = 3, #ARGV do
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
end
return -1
"""


def open_jobs_key(tenant: str) -> str:
    return f"{TENANT_OPEN_JOBS_PREFIX}{tenant}"


class TenantLimits:
    def __init__(self, client: redis.Redis, limit_of: Callable[[str], int]) -> None:
        """`limit_of(tenant)`: the most jobs it may have open, 0 for no limit."""
        self.client = client
        self.limit_of = limit_of
        self.drain_rates = DrainRates()
        self._admit = client.register_script(_ADMIT)

    @contextmanager
    def admit(self, tenant: str, job_ids: Sequence[str]) -> Iterator[None]:
        """Count `job_ids` as the tenant's open jobs while they are stored and queued, and after;
        TenantBusy (429, with the tenant's own Retry-After) when they do not fit. When the block
        raises, they were not accepted and stop counting."""
        limit = self.limit_of(tenant)
        if limit <= 0:
            yield
            return
        try:
            open_now = int(self._admit(keys=[open_jobs_key(tenant)], args=[time.time(), limit, *job_ids]))
        except redis.RedisError as e:
            raise DependencyUnavailable(f"Redis does not answer: {e}") from e
        if open_now >= 0:
            raise TenantBusy(
                f"tenant {tenant} has {open_now:,} jobs queued or running (its limit is {limit:,}); retry later",
                retry_after_s=seconds_to_drain(open_now + len(job_ids) - limit, self.drain_rates.of(tenant).per_s()),
            )
        try:
            yield
        except BaseException:
            self.release(tenant, job_ids)
            raise

    def release(self, tenant: str, job_ids: Collection[str]) -> None:
        """These jobs are no longer open (ended, or never accepted). A failure here is made good by
        `prune`."""
        if job_ids and self.limit_of(tenant) > 0:
            with suppress(redis.RedisError):
                self.client.zrem(open_jobs_key(tenant), *job_ids)

    def job_finished(self, tenant: str, job_id: str) -> None:
        self.drain_rates.of(tenant).record()
        self.release(tenant, [job_id])

    def prune(self, open_job_ids: Collection[str], now_s: float | None = None) -> int:
        """Drop every member whose job is not in `open_job_ids` (all the jobs the store has open), but
        those admitted in the last RESERVATION_TTL_S: they may not be stored yet. Returns how many."""
        admitted_before = (time.time() if now_s is None else now_s) - RESERVATION_TTL_S
        dropped = 0
        for key in self.client.scan_iter(match=f"{TENANT_OPEN_JOBS_PREFIX}*", count=100):
            members = [m.decode() if isinstance(m, bytes) else str(m)
                       for m in self.client.zrangebyscore(key, "-inf", admitted_before)]
            ended = [m for m in members if m not in open_job_ids]
            if ended:
                dropped += int(self.client.zrem(key, *ended))
        return dropped

    def open_count(self, tenant: str) -> int:
        return int(self.client.zcard(open_jobs_key(tenant)))
