"""Requests per client: a token bucket per API key (per client address when there are no keys), kept
in Redis so that every gateway draws on the same bucket. Its clock is Redis' own (TIME inside the
script), so gateways with drifting clocks agree.

A client is told when its next request would be admitted (`Retry-After`). When Redis does not
answer, requests are let through: the limit protects the gateways, and without Redis they refuse
submissions anyway (the readiness probe says why)."""

from __future__ import annotations

import hashlib
import logging
import math
import time

import redis

from shared.constants import RATE_LIMIT_PREFIX
from shared.errors import RateLimited

log = logging.getLogger(__name__)

# After Redis failed to answer, requests pass unchecked this long before it is asked again: an outage
# costs one timeout per interval, not one per request.
RETRY_REDIS_AFTER_S = 5.0

# KEYS: the bucket. ARGV: the rate per second, the burst. Returns 0 when admitted, else the
# milliseconds until the next token.
_TAKE = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1]) or burst
local at = tonumber(held[2]) or now_s
tokens = math.min(burst, tokens + math.max(0, now_s - at) * rate)
local wait_ms = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now_s))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait_ms
"""


def client_of(api_key: str | None, address: str | None) -> str:
    """Whose bucket a request draws on: its key's (as a digest: Redis never holds a key), else its address's."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    return f"address:{address or 'unknown'}"


class RateLimiter:
    def __init__(self, client: redis.Redis, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = burst
        self._take = client.register_script(_TAKE) if per_s > 0 else None
        self._unchecked_until = 0.0

    @property
    def on(self) -> bool:
        return self._take is not None

    def admit(self, who: str) -> None:
        """RateLimited (429, with when to retry) when `who` has no request left to make now. Blocks
        on Redis: call it off the event loop."""
        if self._take is None or time.monotonic() < self._unchecked_until:
            return
        try:
            wait_ms = int(self._take(keys=[RATE_LIMIT_PREFIX + who], args=[self.per_s, self.burst]))
        except redis.RedisError as e:
            self._unchecked_until = time.monotonic() + RETRY_REDIS_AFTER_S
            log.warning("request rates not checked for %.0f s: Redis does not answer (%s)", RETRY_REDIS_AFTER_S, e)
            return
        if wait_ms > 0:
            raise RateLimited(
                f"more than {self.per_s:g} requests per second (bursts of {self.burst}) from this client; "
                f"retry in {wait_ms / 1000:.1f} s",
                retry_after_s=max(1, math.ceil(wait_ms / 1000)),
            )
