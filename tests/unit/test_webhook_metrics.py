"""Each webhook attempt is counted by what became of it, and timed."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from api.delivery.record import Outcome
from api.metrics import record_webhook_attempt


def attempts(result: str) -> float:
    return REGISTRY.get_sample_value("asyncinfer_webhook_attempts_total", {"result": result}) or 0.0


def timed() -> float:
    return REGISTRY.get_sample_value("asyncinfer_webhook_attempt_seconds_count") or 0.0


@pytest.mark.parametrize(("outcome", "result"), [
    (Outcome(204, None, 12.0), "delivered"),
    (Outcome(299, None, 12.0), "delivered"),
    (Outcome(500, "answered 500", 3.0), "rejected"),
    (Outcome(301, "answered 301", 3.0), "rejected"),
    (Outcome(None, "no answer within 1 s", 1000.0), "unanswered"),
])
def test_an_attempt_is_counted_under_its_result_and_timed(outcome: Outcome, result: str) -> None:
    before, before_timed = attempts(result), timed()

    record_webhook_attempt(outcome.result, outcome.duration_ms)

    assert outcome.result == result
    assert attempts(result) - before == 1
    assert timed() - before_timed == 1


def test_every_result_is_exported_before_any_attempt() -> None:
    """A dashboard's rate() has a series to start from on a gateway that never sent a webhook."""
    assert all(REGISTRY.get_sample_value("asyncinfer_webhook_attempts_total", {"result": result}) is not None
               for result in ("delivered", "rejected", "unanswered"))
