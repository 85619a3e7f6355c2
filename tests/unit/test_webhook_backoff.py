"""When a failed webhook is tried again, and when it is given up."""

from __future__ import annotations

from api.delivery.backoff import RetryPolicy
from api.delivery.record import DEAD, DELIVERED, PENDING, Outcome, after_attempt, new_round, unix_s

POLICY = RetryPolicy(max_attempts=5, max_total_s=100.0, base_s=1.0, max_delay_s=8.0)


def test_waits_double_from_the_base_up_to_the_maximum_with_half_of_each_random() -> None:
    lowest = [POLICY.delay_s(n, draw=lambda: 0.0) for n in range(1, 7)]
    highest = [POLICY.delay_s(n, draw=lambda: 1.0) for n in range(1, 7)]

    assert lowest == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert highest == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_spreads_the_waits() -> None:
    waits = {round(POLICY.delay_s(3), 6) for _ in range(50)}

    assert len(waits) > 40
    assert all(2.0 <= wait <= 4.0 for wait in waits)


def test_gives_up_after_max_attempts() -> None:
    assert POLICY.next_try(4, first_attempt_at=0, now=10, draw=lambda: 0.0) == 14.0
    assert POLICY.next_try(5, first_attempt_at=0, now=10) is None


def test_gives_up_when_the_next_try_would_fall_past_the_total_time() -> None:
    assert POLICY.next_try(2, first_attempt_at=0, now=99.5, draw=lambda: 0.0) is None
    assert POLICY.next_try(2, first_attempt_at=0, now=98.0, draw=lambda: 0.0) == 99.0


def test_the_record_counts_attempts_and_ends_delivered_or_dead() -> None:
    record = new_round(None, "https://example.com/hook")
    failed = Outcome(status=500, error="answered 500", duration_ms=3.0)

    record = after_attempt(record, failed, 1000.0, 1000.1, POLICY)
    assert (record["state"], record["attempts"], record["last_status"]) == (PENDING, 1, 500)
    assert 1000.6 <= unix_s(record["next_try_at"]) <= 1001.1

    record = after_attempt(record, Outcome(status=204, error=None, duration_ms=2.0), 1001.2, 1001.3, POLICY)
    assert (record["state"], record["attempts"], record["next_try_at"]) == (DELIVERED, 2, None)
    assert record["delivered_at"] is not None
    assert [entry["status"] for entry in record["history"]] == [500, 204]

    dead = new_round(None, "https://example.com/hook")
    for n in range(5):
        dead = after_attempt(dead, Outcome(status=None, error="timed out", duration_ms=1.0), 2000.0 + n, 2000.5 + n,
                             POLICY)
    assert (dead["state"], dead["attempts"]) == (DEAD, 5)


def test_a_replayed_dead_delivery_starts_a_new_round_and_keeps_its_history() -> None:
    dead = {**new_round(None, "https://example.com/hook"), "state": DEAD, "attempts": 5,
            "history": [{"attempt": 5}]}

    replayed = new_round(dead, "https://example.com/hook")

    assert (replayed["state"], replayed["attempts"], replayed["replays"]) == (PENDING, 0, 1)
    assert replayed["history"] == [{"attempt": 5}]
