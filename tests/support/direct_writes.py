"""Status changes written straight to a test pipeline's store through the product's JobLifecycle,
as a worker would, with events that reach Redis or that are lost."""

from __future__ import annotations

from typing import Any

import redis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from cli.pipeline import LocalPipeline
from cli.processes import free_port
from shared.config import Settings
from shared.events import EventPublisher
from shared.lifecycle import JobLifecycle
from shared.store import open_store

RESULT: dict[str, Any] = {"predictions": [{"label": "tabby", "class_id": 281, "score": 0.5}],
                          "batch_size": 1, "inference_ms": 1.0}
MODEL = {"name": "mobilenet_v2", "weights": "random", "backend": "tensorflow", "device": "cpu"}


def lifecycle(pipeline: LocalPipeline, *, lose_events: bool = False) -> JobLifecycle:
    """A JobLifecycle on the pipeline's store; with `lose_events`, its publisher's Redis is a
    closed port, so every publish fails after the store has the change (at once: no retries)."""
    settings = Settings(store=pipeline.env["ASYNCINFER_STORE"], redis_url=pipeline.env["ASYNCINFER_REDIS_URL"])
    client = (redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0)) if lose_events
              else redis.Redis.from_url(settings.redis_url))
    return JobLifecycle(open_store(settings), EventPublisher(client), max_attempts=settings.max_attempts)


def run_to_success(writer: JobLifecycle, job_id: str) -> None:
    assert writer.begin(job_id) is not None
    assert writer.succeed(job_id, result=RESULT, model=MODEL)["status"] == "succeeded"


def publish_failures() -> float:
    """asyncinfer_event_publish_failures_total of this process."""
    return REGISTRY.get_sample_value("asyncinfer_event_publish_failures_total") or 0.0
