"""The names of each model version's queues, without the queue's machinery (shared/queue.py).

A model version has FAIR_LANES queues, its lanes: a job waits in the lane of its tenant, and the
version's workers consume every lane in turn (kombu's Redis transport asks BRPOP for all of them
and moves the lane it just took from to the back of the line). So a tenant with a thousand jobs
waiting has one turn in each round, as has a tenant with one: its burst does not starve the others.
"""

import hashlib
from typing import Final

from shared.constants import INFER_QUEUE_PREFIX

# A constant, not a setting: gateways, workers and recovery must agree on it, or jobs would wait in
# lanes no worker consumes. Tenants whose names hash to the same lane share its turns (the gateway
# logs such pairs among its configured tenants at start, api/services.py).
FAIR_LANES: Final = 32


def lane_of(tenant: str) -> int:
    """The same lane for a tenant on every gateway and every run (not Python's salted hash)."""
    digest = hashlib.blake2b(tenant.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % FAIR_LANES


def queue_name(model: str, version: str, tenant: str) -> str:
    """`asyncinfer.infer.<name>.<version>.<lane>`: model names hold no dot, so it is unambiguous."""
    return lane_name(model, version, lane_of(tenant))


def lane_name(model: str, version: str, lane: int) -> str:
    return f"{INFER_QUEUE_PREFIX}{model}.{version}.{lane:02d}"


def model_queues(model: str, version: str) -> tuple[str, ...]:
    """Every lane of a model version: what its workers consume and what its backlog counts."""
    return tuple(lane_name(model, version, lane) for lane in range(FAIR_LANES))
