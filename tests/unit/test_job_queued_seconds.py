"""The gateway's time-queued histogram (api/metrics.py record_started): from the `running` events
every gateway hears, once per job, by model and version."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from api.metrics import record_started
from shared.events import event_message
from shared.jobs import JobStatus, new_job, parse_rfc3339, transition

# A model of this test's own, so that other tests' samples in the process-wide registry do not count.
MODEL = {"name": "queued_seconds_test", "version": "7"}


def queued(sample: str) -> float:
    return REGISTRY.get_sample_value(f"asyncinfer_job_queued_seconds_{sample}",
                                     {"model": MODEL["name"], "version": MODEL["version"]}) or 0.0


def test_a_job_is_counted_once_at_its_first_start_not_again_when_redelivered() -> None:
    queued_doc = new_job(tenant="t", input_info={}, model=MODEL, top_k=1)
    running = transition(queued_doc, JobStatus.RUNNING)
    redelivered = transition(running, JobStatus.RUNNING)  # its worker was lost: running → running
    count, total = queued("count"), queued("sum")

    for doc in (queued_doc, running, redelivered):
        record_started(event_message(doc))

    waited = (parse_rfc3339(running["started_at"]) - parse_rfc3339(queued_doc["created_at"])).total_seconds()
    assert queued("count") == count + 1
    assert queued("sum") - total == pytest.approx(waited)
