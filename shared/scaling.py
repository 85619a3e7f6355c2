"""The autoscaling signal, computed from counts (no I/O; shared/work_in_redis.py reads them).

What a pool of workers has to do is every job not finished: messages waiting in the queue, messages
delivered to workers and not acknowledged yet (running, or buffered in a worker's batch: with
acks_late they stay in kombu's `unacked` hash until their batch ran), and jobs being admitted right
now. Scaling on the queue's length alone (KEDA's Redis list scaler) sees a busy pool whose list is
empty as idle and scales it in, killing the batches it is running; scaling on this count does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.config import Settings


@dataclass(frozen=True)
class WorkCounts:
    """One consistent reading of Redis."""

    waiting: int  # messages in the queue's list
    unacknowledged: int  # delivered to workers and not acknowledged: running or buffered in a batch
    admitting: int  # jobs being stored and queued by a gateway right now (admission reservations)
    live_workers: int  # workers whose presence entry is current

    @property
    def outstanding(self) -> int:
        return self.waiting + self.unacknowledged + self.admitting


@dataclass(frozen=True)
class ScalingPolicy:
    target_per_worker: int
    min_workers: int
    max_workers: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ScalingPolicy:
        return cls(settings.scale_target_jobs_per_worker, settings.scale_min_workers, settings.scale_max_workers)


@dataclass(frozen=True)
class ScalingSignal:
    outstanding: int
    live_workers: int
    desired_workers: int
    # Seconds the outstanding work takes to drain at the measured rate, i.e. about how long a job
    # submitted now waits: 0 with nothing outstanding, +inf with work and no worker to do it, NaN
    # while workers run but too few jobs finished lately to measure a rate.
    predicted_wait_s: float
    without_capacity: bool  # work outstanding and no live worker: it waits until one starts
    drain_rate_per_s: float | None


def desired_workers(outstanding: int, policy: ScalingPolicy) -> int:
    """ceil(outstanding / target per worker), within min..max. Any outstanding work needs a worker,
    so with min 0 the pool scales to zero only when nothing at all is left to do."""
    wanted = math.ceil(outstanding / policy.target_per_worker)
    return max(policy.min_workers, min(policy.max_workers, wanted))


def predicted_wait_s(outstanding: int, live_workers: int, drain_rate_per_s: float | None) -> float:
    if outstanding == 0:
        return 0.0
    if live_workers == 0:
        return math.inf
    if not drain_rate_per_s:
        return math.nan
    return outstanding / drain_rate_per_s


def scaling_signal(counts: WorkCounts, drain_rate_per_s: float | None, policy: ScalingPolicy) -> ScalingSignal:
    outstanding = counts.outstanding
    return ScalingSignal(
        outstanding=outstanding,
        live_workers=counts.live_workers,
        desired_workers=desired_workers(outstanding, policy),
        predicted_wait_s=predicted_wait_s(outstanding, counts.live_workers, drain_rate_per_s),
        without_capacity=outstanding > 0 and counts.live_workers == 0,
        drain_rate_per_s=drain_rate_per_s,
    )
