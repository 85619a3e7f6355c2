"""Log lines (shared/logs.py): text for people, JSON for pipelines, each naming its request and job."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from types import MappingProxyType

import numpy as np
import pytest

from shared.jobs import JobDoc
from shared.log_relay import NATIVE_LOGGER, as_json_line
from shared.logs import ContextFilter, JsonFormatter, TextFormatter, about_job, configure_logging, request_id_var
from shared.store.base import Written
from tests.support.models import builtin
from workers.inference import process_batch


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("asyncinfer.test", logging.WARNING, __file__, 1, message, args or ("world",), None)
    for key, value in extra.items():
        setattr(made, key, value)
    ContextFilter().filter(made)
    return made


def test_json_lines_carry_time_level_logger_message_and_the_ids() -> None:
    with about_job("job-1", "req-9"):
        entry = json.loads(JsonFormatter().format(record()))
    assert entry["level"] == "WARNING" and entry["logger"] == "asyncinfer.test" and entry["message"] == "hello world"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert (entry["request_id"], entry["job_id"], entry["trace_id"]) == ("req-9", "job-1", None)


def test_outside_any_request_or_job_the_ids_are_null_and_text_adds_nothing() -> None:
    entry = json.loads(JsonFormatter().format(record()))
    assert entry["request_id"] is None and entry["job_id"] is None
    assert TextFormatter().format(record()).endswith("asyncinfer.test: hello world")


def test_text_lines_name_the_ids_that_are_set() -> None:
    token = request_id_var.set("req-1")
    try:
        assert TextFormatter().format(record()).endswith("hello world [request_id=req-1]")
        with about_job("job-2", "req-2"):
            assert TextFormatter().format(record()).endswith("[request_id=req-2 job_id=job-2]")
        assert request_id_var.get() == "req-1"  # the job's block restores the request's id
    finally:
        request_id_var.reset(token)


def test_an_access_line_has_its_fields_and_a_traceback_is_kept() -> None:
    access = json.loads(JsonFormatter().format(record("%s", "GET /v1/jobs 200", method="GET", path="/v1/jobs",
                                                      status=200, duration_ms=1.5)))
    assert (access["method"], access["path"], access["status"], access["duration_ms"]) == ("GET", "/v1/jobs", 200, 1.5)
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exception"]


def test_configure_logging_leaves_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        configure_logging("INFO", "json")
        configure_logging("INFO", "json")
        ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
        assert len(ours) == 1
        logging.getLogger("asyncinfer.test").info("one line")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line)["message"] == "one line"
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])


class OneJobLifecycle:
    """A job submitted by request `req-7` for another model (so the worker sends it on, with a warning)."""

    def begin_fresh(self, job_ids: list[str], *, runs_here: Callable[[JobDoc], bool]) -> dict[str, Written]:
        docs = {job_id: {"id": job_id, "status": "queued", "tenant": "t", "request_id": "req-7",
                         "model": {"name": "mobilenet_v3_small", "version": "1"}} for job_id in job_ids}
        assert not any(map(runs_here, docs.values()))
        return {job_id: Written(doc, False, 1) for job_id, doc in docs.items()}


class Classifier:
    spec = builtin()
    max_batch_size = 8
    info = MappingProxyType({})

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        raise AssertionError("a job of another model must not run")


def test_a_workers_lines_about_a_job_name_it_and_its_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.WARNING):
        report = process_batch(["job-5"], OneJobLifecycle(), Classifier())  # type: ignore[arg-type]
    assert list(report.misrouted) == ["job-5"]
    (line,) = [r for r in caplog.records if "sending it to its own queue" in r.getMessage()]
    assert (line.job_id, line.request_id) == ("job-5", "req-7")  # type: ignore[attr-defined]
    assert request_id_var.get() is None  # nothing leaks out of the batch


def test_a_workers_lines_about_a_job_carry_that_jobs_trace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.WARNING):
        process_batch(["job-5"], OneJobLifecycle(), Classifier(), trace_ids={"job-5": "cd" * 16})  # type: ignore[arg-type]
    (line,) = [r for r in caplog.records if "sending it to its own queue" in r.getMessage()]
    assert (line.job_id, line.trace_id) == ("job-5", "cd" * 16)  # type: ignore[attr-defined]


def test_the_relay_passes_json_lines_through_and_wraps_any_other_line() -> None:
    record = '{"time": "t", "level": "INFO", "logger": "x", "message": "m"}'
    assert as_json_line(record) == record
    native = "I0000 00:00:1.5 port.cc:153] oneDNN custom operations are on."
    wrapped = json.loads(as_json_line(native))
    assert wrapped["logger"] == NATIVE_LOGGER and wrapped["message"] == native and wrapped["level"] == "INFO"
    assert {"time", "request_id", "job_id", "trace_id"} <= set(wrapped)
    assert json.loads(as_json_line("{not json}"))["message"] == "{not json}"
