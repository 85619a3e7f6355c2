"""Tracing's switch and its pieces (shared/tracing.py): off by default and then free, on by the standard
OTEL_* variables with the configured service name; the context through message headers; trace ids in logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from api.metrics import job_exemplar
from cli.processes import REPO_ROOT
from shared import tracing
from shared.logs import ContextFilter, JsonFormatter, about_job

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize("environ", [
    {},
    {"OTEL_SERVICE_NAME": "named-but-not-exported"},
    {**ENDPOINT, "OTEL_SDK_DISABLED": "true"},
    {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"},
    {**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"},
])
def test_without_an_exporter_or_with_the_sdk_disabled_there_is_no_provider(environ: dict[str, str]) -> None:
    assert not tracing.wanted(environ)
    assert tracing.build_provider(tracing.GATEWAY_SERVICE, environ) is None


def test_off_installs_nothing_and_spans_and_headers_cost_nothing() -> None:
    assert tracing.configure_tracing(tracing.WORKER_SERVICE, {}) is False
    assert not tracing.on()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert tracing.span("batch") is tracing.span("inference")  # one shared no-op, no span object made
    assert tracing.message_headers() == {}
    assert tracing.current_trace_id() is None


def test_a_gateway_and_a_worker_that_are_off_never_import_the_tracing_sdk() -> None:
    # (redis-py imports the SDK's metrics package when it is installed; nothing of its traces.)
    code = (
        "import sys; from api.main import create_app; from workers.worker import register_infer_task; "
        "from shared.tracing import configure_tracing; from opentelemetry import trace; "
        "assert configure_tracing('x') is False; create_app(); "
        "print(type(trace.get_tracer_provider()).__name__, sorted(m for m in sys.modules if m.startswith(("
        "'opentelemetry.sdk.trace', 'opentelemetry.instrumentation', 'opentelemetry.exporter'))))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "ProxyTracerProvider []"


@pytest.mark.parametrize(("environ", "service"), [
    (ENDPOINT, "asyncinfer-worker"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "asyncinfer-worker"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "asyncinfer-worker"),
    ({**ENDPOINT, "OTEL_SERVICE_NAME": "gpu-pool-a"}, "gpu-pool-a"),
])
def test_an_endpoint_or_an_exporter_turns_it_on_with_the_service_name(environ: dict[str, str], service: str) -> None:
    provider = tracing.build_provider(tracing.WORKER_SERVICE, environ)
    assert isinstance(provider, TracerProvider)
    try:
        assert provider.resource.attributes["service.name"] == service
    finally:
        provider.shutdown()


def test_the_gateway_default_service_name() -> None:
    provider = tracing.build_provider(tracing.GATEWAY_SERVICE, ENDPOINT)
    assert provider is not None and provider.resource.attributes["service.name"] == "asyncinfer-gateway"
    provider.shutdown()


@pytest.mark.parametrize(("environ", "says"), [
    ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "only http/protobuf"),
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "zipkin is not one of otlp, console"),
])
def test_what_is_not_installed_is_a_start_up_error(environ: dict[str, str], says: str) -> None:
    with pytest.raises(tracing.TracingMisconfigured, match=says):
        tracing.build_provider(tracing.GATEWAY_SERVICE, environ)


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> TracerProvider:
    """An SDK provider standing in for the installed one, without touching the process's global."""
    made = TracerProvider()
    monkeypatch.setattr(tracing, "_provider", made)
    monkeypatch.setattr(trace, "get_tracer", made.get_tracer)
    return made


def test_the_context_travels_in_message_headers_and_becomes_a_link(provider: TracerProvider) -> None:
    with tracing.span("enqueue") as span:
        headers = tracing.message_headers()
    assert set(headers) >= {"traceparent"}
    link = tracing.link_to(headers)
    assert link is not None
    sent = span.get_span_context()  # type: ignore[attr-defined]
    assert (link.context.trace_id, link.context.span_id) == (sent.trace_id, sent.span_id)
    assert tracing.trace_id_of(link) == format(sent.trace_id, "032x")
    assert tracing.link_to({}) is None and tracing.link_to(None) is None
    assert tracing.link_to({"traceparent": "garbage"}) is None


def log_entry() -> dict[str, object]:
    made = logging.LogRecord("asyncinfer.test", logging.INFO, __file__, 1, "hello", (), None)
    ContextFilter().filter(made)
    return dict(json.loads(JsonFormatter().format(made)))


def test_log_lines_carry_the_current_trace_or_the_jobs(provider: TracerProvider) -> None:
    assert log_entry()["trace_id"] is None  # no span current
    with tracing.span("request") as span:
        assert log_entry()["trace_id"] == format(span.get_span_context().trace_id, "032x")  # type: ignore[attr-defined]
        with about_job("job-1", "req-1", "ab" * 16):  # a worker's line about a job: that job's trace
            assert log_entry()["trace_id"] == "ab" * 16


def test_a_sample_names_a_trace_only_when_there_is_one() -> None:
    assert tracing.exemplar(tracing.current_trace_id()) is None  # off here: no span, no exemplar
    assert tracing.exemplar("0af7651916cd43dd8448eb211c80319c") == {"trace_id": "0af7651916cd43dd8448eb211c80319c"}
    assert job_exemplar({"trace_id": "0af7651916cd43dd8448eb211c80319c"}) == {
        "trace_id": "0af7651916cd43dd8448eb211c80319c"}
    assert job_exemplar({"trace_id": None}) is None
    assert job_exemplar({}) is None  # a job accepted before traces
