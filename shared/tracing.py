"""Traces (OpenTelemetry) across the queue, off unless the standard `OTEL_*` variables turn them on.

On when `OTEL_SDK_DISABLED` is not `true` and either an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`);
`OTEL_TRACES_EXPORTER=none` turns them off. The rest is the SDK's own reading of the standard variables:
`OTEL_SERVICE_NAME` (default `asyncinfer-gateway` / `asyncinfer-worker`), `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*` (OTLP over HTTP with protobuf, the one protocol
installed).

Off, nothing of the SDK is imported and no tracer provider is installed: `span()` returns one shared
no-op context manager and `message_headers()` an empty dict, without calling OpenTelemetry at all.

The trace context travels in the Celery message's headers (W3C `traceparent` / `tracestate`, by the
globally configured propagator): the gateway injects the context of its `enqueue` span, and the worker
links its `batch` span to the context each message carries (shared/queue.py, workers/worker.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace

from shared.errors import StartupError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

GATEWAY_SERVICE = "asyncinfer-gateway"
WORKER_SERVICE = "asyncinfer-worker"
TRACER_NAME = "asyncinfer"
EXPORTERS = ("otlp", "console")

_NOTHING: AbstractContextManager[None] = nullcontext()
_provider: TracerProvider | None = None


class TracingMisconfigured(StartupError):
    """An OTEL_* variable asks for something this installation cannot do."""


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether these variables turn tracing on (the module docstring says which do)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(environ)
    if exporters == ["none"]:
        return False
    if exporters:
        return True
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    return [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]


def build_provider(default_service_name: str, environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """The SDK tracer provider these variables ask for (not installed), or None when tracing is off."""
    if not wanted(environ):
        return None
    exporters = _exporter_names(environ) or ["otlp"]
    unknown = [name for name in exporters if name not in EXPORTERS]
    if unknown:
        raise TracingMisconfigured(
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']}: {', '.join(unknown)} is not one of "
            f"{', '.join(EXPORTERS)} (or none)")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if "otlp" in exporters and protocol not in (None, "", "http/protobuf"):
        raise TracingMisconfigured(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is installed (port 4318 of a collector)")

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    # OTEL_RESOURCE_ATTRIBUTES is read by Resource.create; the service name is the variable's, else ours.
    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or default_service_name})
    provider = TracerProvider(resource=resource)
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_*
        else:
            exporter = ConsoleSpanExporter()
        # Spans leave in batches from a thread of their own (OTEL_BSP_*), never on the request's path;
        # the provider flushes them at exit.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def configure_tracing(default_service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the tracer provider the variables ask for, once per process; whether tracing is on."""
    global _provider
    if _provider is not None:
        return True
    provider = build_provider(default_service_name, environ)
    if provider is None:
        return False
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def on() -> bool:
    return _provider is not None


def span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: trace.SpanKind = trace.SpanKind.INTERNAL,
         links: Iterable[trace.Link] = ()) -> AbstractContextManager[object]:
    """A span around the block, child of the current one; when tracing is off, a shared no-op."""
    if _provider is None:
        return _NOTHING
    return trace.get_tracer(TRACER_NAME).start_as_current_span(
        name, kind=kind, attributes=dict(attributes or {}), links=list(links))


def message_headers() -> dict[str, str]:
    """The current trace context as message headers (`traceparent`, `tracestate`); empty when off."""
    if _provider is None:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def link_to(headers: Mapping[str, Any] | None) -> trace.Link | None:
    """A link to the span whose context `headers` carry (a message's), or None when they carry none."""
    if not headers:
        return None
    context = trace.get_current_span(propagate.extract(dict(headers))).get_span_context()
    return trace.Link(context) if context.is_valid else None


def trace_id_of(link: trace.Link | None) -> str | None:
    return format(link.context.trace_id, "032x") if link is not None else None


def exemplar(trace_id: str | None) -> dict[str, str] | None:
    """A metric sample's exemplar naming `trace_id`, or None without one; Prometheus shows exemplars
    to scrapers that ask for OpenMetrics."""
    return {"trace_id": trace_id} if trace_id else None


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the current span, for log lines; None when off or outside a span."""
    if _provider is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
