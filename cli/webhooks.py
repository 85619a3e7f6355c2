"""`asyncinfer webhooks dead-letters` and `asyncinfer webhooks replay`: the deliveries given up
(api/delivery/), read and put back from Redis, where every gateway takes them from."""

from __future__ import annotations

import json
import sys

import redis

from api.delivery.queue import DeliveryQueue
from shared.config import Settings


def _queue(settings: Settings) -> DeliveryQueue:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    return DeliveryQueue(client, settings.webhook_lease_s)


def list_dead_letters(settings: Settings) -> int:
    """One JSON line per dead delivery, oldest given up first."""
    try:
        dead = _queue(settings).dead_letters()
    except redis.RedisError as e:
        print(f"asyncinfer webhooks: Redis does not answer at {settings.redis_url}: {e}", file=sys.stderr)
        return 1
    for entry in sorted(dead.values(), key=lambda item: str(item.get("dead_at"))):
        print(json.dumps(entry))
    print(f"asyncinfer webhooks: {len(dead)} dead deliveries", file=sys.stderr)
    return 0


def replay(settings: Settings, targets: list[str], *, every: bool) -> int:
    """Put dead deliveries back, due now; a gateway delivers each again with a fresh round of attempts."""
    if every == bool(targets):
        print("asyncinfer webhooks replay: name job ids (or batch:<id>), or --all", file=sys.stderr)
        return 2
    try:
        replayed = _queue(settings).replay(None if every else targets)
    except redis.RedisError as e:
        print(f"asyncinfer webhooks: Redis does not answer at {settings.redis_url}: {e}", file=sys.stderr)
        return 1
    for target in replayed:
        print(target)
    missing = sorted(set(targets) - set(replayed))
    for target in missing:
        print(f"asyncinfer webhooks replay: {target} is not in the dead-letter list", file=sys.stderr)
    print(f"asyncinfer webhooks: {len(replayed)} deliveries replayed", file=sys.stderr)
    return 1 if missing else 0
