"""A status event that cannot be published is counted and logged, and publish does not raise; the
interval after which streams re-read the store instead is a validated setting."""

from __future__ import annotations

import logging

import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from cli.processes import free_port
from shared.config import Settings, describe_validation_error
from shared.events import EventPublisher
from shared.jobs import new_job
from tests.support.models import MOBILENET_V2


def failures() -> float:
    return REGISTRY.get_sample_value("asyncinfer_event_publish_failures_total") or 0.0


def test_a_failed_publish_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    closed_port = redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    publisher = EventPublisher(closed_port)
    doc = new_job(model=MOBILENET_V2, tenant="t", input_info={}, top_k=5)
    before = failures()

    with caplog.at_level(logging.WARNING, logger="shared.events"):
        publisher.publish(doc)  # does not raise
        publisher.publish(doc)

    assert failures() - before == 2
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(doc["id"] in record.getMessage() for record in warnings)


def test_the_resync_interval_defaults_to_5_s_and_must_be_positive() -> None:
    assert Settings().stream_resync_s == 5.0
    assert Settings(stream_resync_s=0.5).stream_resync_s == 0.5
    with pytest.raises(ValidationError) as refused:
        Settings(stream_resync_s=0)
    assert describe_validation_error(refused.value).startswith("ASYNCINFER_STREAM_RESYNC_S: ")
