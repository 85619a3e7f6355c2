"""A job update as Couchbase sub-document operations: only the changes, the history appended."""

from __future__ import annotations

import couchbase.subdocument as SD

from shared.jobs import JobStatus, new_job, transition
from shared.store.subdoc import MAX_SPECS, changes_as_specs
from tests.support.models import MOBILENET_V2


def a_job() -> dict[str, object]:
    return new_job(model=MOBILENET_V2, tenant="t", input_info={"bytes": 1}, top_k=1)


def test_a_transition_sends_the_changed_fields_and_appends_one_history_entry() -> None:
    current = {**a_job(), "updated_at": "2000-01-01T00:00:00.000Z"}
    new = transition(current, JobStatus.RUNNING)

    specs = changes_as_specs(current, new)

    assert specs is not None
    assert sorted(specs, key=lambda spec: spec[1]) == [
        SD.upsert("attempts", 1),
        SD.array_append("history", new["history"][-1]),
        SD.upsert("started_at", new["started_at"]),
        SD.upsert("status", "running"),
        SD.upsert("updated_at", new["updated_at"]),
    ]


def test_removed_fields_are_removed_and_a_rewritten_list_is_replaced() -> None:
    current = {**a_job(), "extra": 1, "tags": ["a", "b"]}
    new = {key: value for key, value in current.items() if key != "extra"} | {"tags": ["b"]}

    assert changes_as_specs(current, new) == [SD.remove("extra"), SD.upsert("tags", ["b"])]


def test_a_whole_replace_when_nothing_changed_or_paths_would_be_ambiguous() -> None:
    current = a_job()

    assert changes_as_specs(current, dict(current)) is None
    assert changes_as_specs(current, {**current, "a.b": 1}) is None
    assert changes_as_specs(current, {**current, **{f"f{i}": i for i in range(MAX_SPECS + 1)}}) is None
