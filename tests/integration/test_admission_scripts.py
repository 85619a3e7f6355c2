"""Admission's Redis scripts are sent by digest (EVALSHA) after the first call. A Redis restarted
since, which has forgotten them, gets them again: admission goes on as before."""

from __future__ import annotations

import pytest
import redis

from api.admission.backlog import Backlog
from api.admission.tenant_limits import TenantLimits
from api.drain_rate import DrainRate
from shared.errors import BacklogFull, TenantBusy

pytestmark = pytest.mark.integration


def test_the_backlog_admits_and_refuses_after_redis_forgot_its_script(own_redis: redis.Redis) -> None:
    backlog = Backlog(own_redis, limit=3, drain_rate=DrainRate(), queues=lambda: ["lane-a", "lane-b"])
    with backlog.admit(1):
        pass
    own_redis.rpush("lane-a", "m1", "m2")
    own_redis.script_flush()  # as a restarted Redis has no scripts

    with backlog.admit(1):
        assert backlog.waiting() == 2
    with pytest.raises(BacklogFull), backlog.admit(2):
        pass


def test_tenant_limits_admit_and_refuse_after_redis_forgot_their_script(own_redis: redis.Redis) -> None:
    limits = TenantLimits(own_redis, lambda tenant: 2)
    with limits.admit("t", ["a"]):
        pass
    own_redis.script_flush()

    with limits.admit("t", ["b"]):
        pass
    assert limits.open_count("t") == 2
    with pytest.raises(TenantBusy), limits.admit("t", ["c"]):
        pass
