"""A queued job's place in line, from one reading of its model's lanes (api/following/queue_position.py)."""

from __future__ import annotations

import time
from unittest import mock

from api.drain_rate import DrainRates
from api.following.queue_position import LaneReading, QueuePositions
from api.following.streams import POSITIONS_PER_S, position_every_s, position_moved
from shared.queue import queue_of

LANES = ["lane-a", "lane-b", "lane-c"]


def reading(a: list[str], b: list[str], c: list[str], held: list[str]) -> LaneReading:
    # The script returns each lane front first, then the held ids; bytes as Redis answers.
    return LaneReading.of(LANES, [[i.encode() for i in ids] for ids in (a, b, c, held)], read_at_s=100.0)


def test_a_job_waits_for_the_held_jobs_those_before_it_in_its_lane_and_one_per_turn_of_each_other_lane() -> None:
    lanes = reading(["a1", "a2", "a3", "a4"], ["b1"], [], held=["h1", "h2"])

    assert lanes.ahead_of("a1") == 2  # the held ones only
    assert lanes.ahead_of("b1") == 2
    assert lanes.ahead_of("a2") == 2 + 1 + 1  # a1, and b1 in its turn
    assert lanes.ahead_of("a4") == 2 + 3 + 1  # lane b has only one to put before it


def test_a_held_job_has_none_ahead_and_a_job_without_a_message_has_no_position() -> None:
    lanes = reading(["a1"], [], [], held=["h1"])

    assert lanes.ahead_of("h1") == 0
    assert lanes.ahead_of("lost") is None


def test_a_lane_drained_from_the_front_never_moves_a_job_back() -> None:
    jobs = [f"j{i}" for i in range(10)]
    before = reading(jobs, [], [], held=[]).ahead_of("j9")
    # A worker takes j0..j3 (held now), then finishes them (gone).
    taken = reading(jobs[4:], [], [], held=jobs[:4]).ahead_of("j9")
    finished = reading(jobs[4:], [], [], held=[]).ahead_of("j9")

    assert before is not None and taken is not None and finished is not None
    assert before >= taken >= finished


def position(ahead: int, start: str | None) -> dict[str, object]:
    return {"ahead": ahead, "estimated_start_at": start, "drain_per_s": 1.0, "measured_at": "2026-12-03T00:00:00Z"}


def test_a_position_is_sent_again_only_when_it_says_something_new() -> None:
    first = position(5, "2026-12-03T00:00:10.000Z")

    assert position_moved(None, first)
    assert not position_moved(first, position(5, "2026-12-03T00:00:10.400Z"))
    assert position_moved(first, position(5, "2026-12-03T00:00:11.500Z"))
    assert position_moved(first, position(4, "2026-12-03T00:00:10.000Z"))
    assert position_moved(position(5, None), first)


def test_a_stream_is_never_told_more_ahead_than_it_was_told_before() -> None:
    # A reading that caught j0 between its lane and the worker's unacked hash said 2 for j3;
    # the next, true reading says 3: the stream keeps 2.
    catalogue = mock.Mock()
    catalogue.queues.return_value = {"m@1": ["lane-a"]}
    positions = QueuePositions(mock.Mock(), catalogue, DrainRates())
    doc = {"id": "j3", "status": "queued", "tenant": "t", "model": {"name": "m", "version": "1"}}
    true_reading = LaneReading.of(["lane-a"], [[b"j1", b"j2", b"j3"], [b"j0"]], read_at_s=100.0)
    with mock.patch.object(positions, "reading", return_value=true_reading):
        told = positions.position(doc)
        kept = positions.position(doc, at_most=2)
        lower = positions.position(doc, at_most=5)

    assert told is not None and kept is not None and lower is not None
    assert (told["ahead"], kept["ahead"], lower["ahead"]) == (3, 2, 3)


def test_the_streams_of_one_job_share_one_answer_per_reading() -> None:
    doc = {"id": "j2", "status": "queued", "tenant": "t", "model": {"name": "m", "version": "1"}}
    catalogue = mock.Mock()
    catalogue.queues.return_value = {"m@1": [queue_of(doc)]}
    rates = DrainRates()
    for at_s in range(10):
        rates.of("m@1").record(at_s=time.monotonic() - at_s)
    positions = QueuePositions(mock.Mock(), catalogue, rates)
    with mock.patch.object(positions, "_read", return_value=[[b"j1", b"j2"], []]) as read, \
            mock.patch.object(rates.of("m@1"), "per_s", wraps=rates.of("m@1").per_s) as per_s:
        answers = [positions.position(doc) for _ in range(10)]

    assert all(answer is answers[0] for answer in answers) and answers[0] is not None
    assert answers[0]["ahead"] == 1 and answers[0]["estimated_start_at"] is not None
    assert read.call_count == 1 and per_s.call_count == 1


def test_with_more_queued_streams_than_the_budget_each_asks_less_often() -> None:
    assert position_every_s(1.0, open_streams=10) == 1.0
    assert position_every_s(1.0, open_streams=POSITIONS_PER_S) == 1.0
    assert position_every_s(1.0, open_streams=5 * POSITIONS_PER_S) == 5.0  # the gateway's total stays put
