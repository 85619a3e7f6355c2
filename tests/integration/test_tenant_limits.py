"""TenantLimits against Redis itself: concurrent admissions never take a tenant past its limit, a
failed submission stops counting, and prune keeps what may not be stored yet."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from api.admission.tenant_limits import TenantLimits, open_jobs_key
from shared.constants import RESERVATION_TTL_S
from shared.errors import TenantBusy

pytestmark = pytest.mark.integration


def test_racing_admissions_stop_exactly_at_the_limit(own_redis: redis.Redis) -> None:
    limits = TenantLimits(own_redis, lambda tenant: 10)

    def try_admit(i: int) -> bool:
        try:
            with limits.admit("busy", [f"job-{i}", f"job-{i}-b"]):
                return True
        except TenantBusy as refused:
            assert refused.retry_after_s is not None and refused.retry_after_s >= 1
            return False

    with ThreadPoolExecutor(8) as pool:
        admitted = sum(pool.map(try_admit, range(40)))
    assert admitted == 5
    assert limits.open_count("busy") == 10
    with limits.admit("other", ["x"]):  # another tenant is not affected
        pass


def test_a_submission_that_fails_stops_counting(own_redis: redis.Redis) -> None:
    limits = TenantLimits(own_redis, lambda tenant: 3)
    with pytest.raises(RuntimeError), limits.admit("t", ["a", "b"]):
        raise RuntimeError("the store refused")
    assert limits.open_count("t") == 0
    with limits.admit("t", ["c"]):
        pass
    limits.job_finished("t", "c")
    assert limits.open_count("t") == 0


def test_no_limit_counts_nothing(own_redis: redis.Redis) -> None:
    limits = TenantLimits(own_redis, lambda tenant: 0)
    for i in range(20):
        with limits.admit("free", [str(i)]):
            pass
    assert not own_redis.exists(open_jobs_key("free"))


def test_prune_drops_ended_jobs_but_not_ones_just_admitted(own_redis: redis.Redis) -> None:
    limits = TenantLimits(own_redis, lambda tenant: 100)
    now = time.time()
    own_redis.zadd(open_jobs_key("t"), {"open": now - 120, "ended": now - 120, "just-admitted": now})
    own_redis.zadd(open_jobs_key("u"), {"ended-too": now - RESERVATION_TTL_S - 1})
    assert limits.prune({"open"}, now) == 2
    assert {m.decode() for m in own_redis.zrange(open_jobs_key("t"), 0, -1)} == {"open", "just-admitted"}
    assert limits.open_count("u") == 0
