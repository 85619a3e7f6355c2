"""A session's log folded into its history, and that history as CSV."""

from __future__ import annotations

import csv
import io

from shared.jobs import JobDoc, JobStatus, new_job, transition
from shared.sessions import ended_entry, new_session, session_csv, session_view, submitted_entry
from tests.support.models import MOBILENET_V2

INFO = {"content_type": "image/png", "bytes": 3, "sha256": "0" * 64, "width": 8, "height": 8}
PREDICTION = {"label": "=HYPERLINK(\"x\")", "class_id": 1, "score": 0.5}


def a_job() -> JobDoc:
    return new_job(model=MOBILENET_V2, tenant="t", input_info=INFO, top_k=1, session_id="s")


def test_the_history_is_one_entry_per_accepted_job_in_submission_order() -> None:
    session = new_session("t", 60)
    running, ended, never_accepted = a_job(), a_job(), a_job()
    done = transition(transition(ended, JobStatus.RUNNING), JobStatus.SUCCEEDED,
                      result={"predictions": [PREDICTION], "batch_size": 1, "inference_ms": 1.0})
    session["log"] = [submitted_entry(running, "a.png"), submitted_entry(never_accepted, None),
                      submitted_entry(ended, "b.png"), ended_entry(done)]

    view = session_view(session, live={running["id"]: transition(running, JobStatus.RUNNING)})

    assert [(entry["job_id"], entry["status"]) for entry in view["history"]] == [
        (running["id"], "running"), (ended["id"], "succeeded")]
    assert view["history"][1]["top_prediction"] == PREDICTION
    assert view["counts"]["total"] == 2 and view["counts"]["running"] == 1


def test_the_csv_has_a_row_per_job_and_no_formula_in_a_cell() -> None:
    session = new_session("t", 60)
    job = a_job()
    done = transition(transition(job, JobStatus.RUNNING), JobStatus.SUCCEEDED,
                      result={"predictions": [PREDICTION], "batch_size": 1, "inference_ms": 1.0})
    session["log"] = [submitted_entry(job, "-cmd.png"), ended_entry(done)]

    rows = list(csv.DictReader(io.StringIO(session_csv(session_view(session, live={})))))

    assert [(row["job_id"], row["status"], row["score"]) for row in rows] == [(job["id"], "succeeded", "0.5")]
    assert rows[0]["label"] == "'" + PREDICTION["label"] and rows[0]["filename"] == "'-cmd.png"
