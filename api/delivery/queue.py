"""The deliveries waiting, in Redis so that they outlive any gateway: a sorted set of job ids scored
by when each is due. Every gateway hears every job's end and adds it (ZADD NX: once); a gateway
claims a due one by moving its score to the end of a lease (one script, so one gateway at a time),
and only the holder of that lease, its score, may reschedule or finish it. A claim whose gateway
died is due again when its lease ends. Deliveries given up wait in a hash for an operator."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

PENDING_KEY = "asyncinfer:webhooks:pending"
DEAD_KEY = "asyncinfer:webhooks:dead"

# KEYS[1] pending; ARGV now, lease end → the claimed job id, or nil.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then return false end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], due[1])
return due[1]
"""
# KEYS[1] pending, KEYS[2] dead; ARGV job id, lease end (the claim), action, due or dead entry → 1 if held.
_SETTLE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == 'retry' then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[1])
elseif ARGV[3] == 'dead' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
"""
# KEYS[1] pending, KEYS[2] dead; ARGV now, then job ids (none: all) → the ids put back.
_REPLAY = """
local ids = {}
if #ARGV == 1 then ids = redis.call('HKEYS', KEYS[2]) else for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end end
local replayed = {}
for _, id in ipairs(ids) do
  if redis.call('HDEL', KEYS[2], id) == 1 then
    redis.call('ZADD', KEYS[1], 'NX', ARGV[1], id)
    replayed[#replayed + 1] = id
  end
end
return replayed
"""


@dataclass(frozen=True)
class Claim:
    target: str  # a job id, or batch:<id> (api/delivery/subjects.py)
    lease_until: float


class DeliveryQueue:
    def __init__(self, client: redis.Redis, lease_s: float) -> None:
        self.redis = client
        self.lease_s = lease_s
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)
        self._replay = client.register_script(_REPLAY)

    def schedule(self, target: str, due: float | None = None) -> bool:
        """Add a delivery (a job id, or batch:<id>) unless it is waiting already (also when claimed);
        True when added."""
        return bool(self.redis.zadd(PENDING_KEY, {target: time.time() if due is None else due}, nx=True))

    def claim(self, now: float | None = None) -> Claim | None:
        now = time.time() if now is None else now
        lease_until = now + self.lease_s
        found = self._claim(keys=[PENDING_KEY], args=[now, lease_until])
        if found is None:
            return None
        return Claim(_text(found), lease_until)

    def retry_at(self, claim: Claim, due: float) -> bool:
        return self._settled(claim, "retry", str(due))

    def finish(self, claim: Claim) -> bool:
        return self._settled(claim, "done", "")

    def bury(self, claim: Claim, entry: dict[str, Any]) -> bool:
        """Give the delivery up: into the dead-letter hash, with what an operator needs to judge it."""
        return self._settled(claim, "dead", json.dumps(entry))

    def _settled(self, claim: Claim, action: str, value: str) -> bool:
        """False when the claim was lost (its lease ended and another gateway holds it now)."""
        return bool(self._settle(keys=[PENDING_KEY, DEAD_KEY], args=[claim.target, claim.lease_until, action, value]))

    def pending(self) -> dict[str, float]:
        """Each waiting delivery's due time (for a claimed one, the end of its lease)."""
        found: list[tuple[bytes, float]] = self.redis.zrange(PENDING_KEY, 0, -1, withscores=True)  # type: ignore[assignment]
        return {_text(key): float(score) for key, score in found}

    def pending_count(self) -> int:
        return int(self.redis.zcard(PENDING_KEY))

    def dead_count(self) -> int:
        return int(self.redis.hlen(DEAD_KEY))

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        found: dict[bytes, bytes] = self.redis.hgetall(DEAD_KEY)  # type: ignore[assignment]
        return {_text(key): json.loads(value) for key, value in found.items()}

    def replay(self, targets: list[str] | None = None) -> list[str]:
        """Put dead deliveries back, due now (all of them with None); the targets that were dead."""
        found = self._replay(keys=[PENDING_KEY, DEAD_KEY], args=[time.time(), *(targets or [])])
        return [_text(item) for item in found]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
