"""How long and how hard each part of the benchmark runs: the full run (about 21 minutes on
2 cores) and `--quick`, a smoke test of every part (about 2.5 minutes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    images: int
    batch_sizes: tuple[int, ...]
    ceiling_s: float  # per runtime and batch size, for the table
    rounds: int  # alternating ceiling / pipeline rounds (bench/paired.py)
    round_s: float  # each saturated round, ceiling and pipeline alike
    light_round_s: float
    half_s: float
    warmup_s: float
    saturation_clients: int
    naive_clients: int
    # (subscribers, subscribers per job, jobs finished per second)
    fanout: tuple[tuple[int, int, float], ...]
    fanout_repeats: int
    submit_s: float
    submit_clients: int
    submit_batch_size: int  # the small image's submit rate again, POSTed to /v1/batches this many at a time
    gateway_process_rounds: int  # alternating rounds of the submit rate with 1 and 2 gateway processes
    compare_worker_preprocessing: bool
    worker_counts: tuple[int, ...]  # saturated throughput with this many workers on the host
    worker_count_s: float
    # The step of load for fixed versus autoscaled workers: (seconds, jobs/s) phases.
    step: tuple[tuple[float, float], ...]
    step_max_workers: int
    worker_io_rounds: int  # alternating rounds of batch 16 and batch 1 (bench/worker_io.py)


FULL = Plan(
    images=32,
    batch_sizes=(1, 8, 16, 32, 64),
    ceiling_s=5.0,
    rounds=3,
    round_s=8.0,
    light_round_s=5.0,
    half_s=15.0,
    warmup_s=2.0,
    # Twice the largest batch in flight keeps the queue from running dry between batches.
    saturation_clients=48,
    naive_clients=48,
    # 10 watchers per job finishing at about twice the pipeline's saturated rate; then hot jobs:
    # 50 watchers each, so that every finish is a burst of 100 sends (running, then succeeded).
    fanout=((1000, 10, 100.0), (5000, 10, 100.0), (5000, 50, 50.0)),
    fanout_repeats=3,
    submit_s=15.0,
    submit_clients=8,
    submit_batch_size=16,
    gateway_process_rounds=3,
    compare_worker_preprocessing=True,
    worker_counts=(1, 2, 3),
    worker_count_s=10.0,
    # Idle, a burst above one worker's light-load rate, a trickle, idle long enough to reach zero.
    step=((5.0, 0.0), (20.0, 20.0), (20.0, 3.0), (20.0, 0.0)),
    step_max_workers=2,
    worker_io_rounds=5,
)

QUICK = Plan(
    images=8,
    batch_sizes=(1, 8),
    ceiling_s=1.0,
    rounds=1,
    round_s=3.0,
    light_round_s=2.0,
    half_s=3.0,
    warmup_s=1.0,
    saturation_clients=16,
    naive_clients=8,
    fanout=((200, 10, 100.0),),
    fanout_repeats=1,
    submit_s=3.0,
    submit_clients=4,
    submit_batch_size=4,
    gateway_process_rounds=1,
    compare_worker_preprocessing=False,
    worker_counts=(1, 2),
    worker_count_s=3.0,
    step=((2.0, 0.0), (5.0, 10.0), (5.0, 2.0), (12.0, 0.0)),
    step_max_workers=2,
    worker_io_rounds=1,
)
