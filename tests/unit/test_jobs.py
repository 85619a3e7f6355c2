"""The state machine: the only transitions docs/contract.md allows, each recorded in the history."""

from __future__ import annotations

import pytest

from shared.errors import IllegalTransition
from shared.jobs import ALLOWED, ErrorCode, JobStatus, error_info, new_job, public_view, seq_of, transition
from tests.support.models import MOBILENET_V2

INPUT = {"content_type": "image/png", "bytes": 10, "sha256": "x", "width": 8, "height": 8}


def job() -> dict:
    return new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT, top_k=5)


def test_a_new_job_is_queued_with_one_history_entry() -> None:
    doc = job()
    assert doc["status"] == "queued" and doc["attempts"] == 0 and seq_of(doc) == 1
    assert doc["type"] == "job" and doc["params"] == {"top_k": 5}


def test_the_happy_path_records_every_step() -> None:
    doc = transition(job(), JobStatus.RUNNING)
    assert doc["attempts"] == 1 and doc["started_at"]
    doc = transition(doc, JobStatus.SUCCEEDED, result={"predictions": []})
    assert doc["finished_at"] and doc["result"] == {"predictions": []}
    assert [(h["seq"], h["status"]) for h in doc["history"]] == [(1, "queued"), (2, "running"), (3, "succeeded")]


def test_a_redelivery_runs_again_and_counts_an_attempt() -> None:
    first = transition(job(), JobStatus.RUNNING)
    again = transition(first, JobStatus.RUNNING)
    assert again["attempts"] == 2 and again["started_at"] == first["started_at"]


@pytest.mark.parametrize(("start", "to"), [
    (start, to) for start in JobStatus for to in JobStatus if to not in ALLOWED[start]
])
def test_every_other_transition_is_refused(start: JobStatus, to: JobStatus) -> None:
    path = {
        JobStatus.QUEUED: [],
        JobStatus.RUNNING: [JobStatus.RUNNING],
        JobStatus.SUCCEEDED: [JobStatus.RUNNING, JobStatus.SUCCEEDED],
        JobStatus.FAILED: [JobStatus.RUNNING, JobStatus.FAILED],
        JobStatus.CANCELLED: [JobStatus.CANCELLED],
    }[start]
    doc = job()
    for step in path:
        doc = transition(doc, step)
    with pytest.raises(IllegalTransition):
        transition(doc, to)


def test_terminal_states_are_the_three_ends() -> None:
    assert {s for s in JobStatus if s.terminal} == {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


def test_public_view_hides_internal_fields() -> None:
    doc = {**job(), "_expires_at": 1.0}
    assert "_expires_at" not in public_view(doc) and public_view(doc)["id"] == doc["id"]


def test_error_info_shape() -> None:
    assert error_info(ErrorCode.WORKER_LOST, "gone") == {"code": "worker_lost", "message": "gone", "retryable": False}
