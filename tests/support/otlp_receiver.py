"""A real OTLP/HTTP trace receiver on 127.0.0.1, what a collector is to the gateway and the workers:
it accepts `POST /v1/traces` (protobuf `ExportTraceServiceRequest`, gzip or not), keeps every span
with the service that sent it, and answers as a collector does."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

KINDS = {Span.SPAN_KIND_INTERNAL: "internal", Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
         Span.SPAN_KIND_PRODUCER: "producer", Span.SPAN_KIND_CONSUMER: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str | None
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each link
    attributes: dict[str, Any]
    start_ns: int
    end_ns: int

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, which) if which in ("string_value", "int_value", "double_value", "bool_value") else str(value)


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {item.key: _value(item.value) for item in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    service=str(resource.get("service.name")),
                    name=span.name,
                    kind=KINDS.get(span.kind, "unspecified"),
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                    attributes={item.key: _value(item.value) for item in span.attributes},
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                ))
    return spans


@dataclass
class OtlpReceiver:
    port: int
    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT is set to (the exporter adds /v1/traces)."""
        return f"http://127.0.0.1:{self.port}"

    def received(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)

    def wait_for(self, found: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 30) -> list[ReceivedSpan]:
        """Every span received, once `found` holds of them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            spans = self.received()
            if found(spans):
                return spans
            time.sleep(0.1)
        raise AssertionError(f"the spans looked for did not arrive in {timeout_s} s; received: "
                             f"{[(span.service, span.name) for span in self.received()]}")


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    holder: list[OtlpReceiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            spans = decode(body)
            with holder[0].lock:
                holder[0].spans.extend(spans)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(OtlpReceiver(port=server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()


def render_tree(spans: list[ReceivedSpan], trace_id: str) -> str:
    """The spans of one trace as an indented tree, and each span of another trace that links into it
    (a worker's batch) under the span it links to, marked `⇢`: what the README shows."""
    by_parent: dict[str | None, list[ReceivedSpan]] = {}
    for span in spans:
        by_parent.setdefault(span.parent_span_id, []).append(span)
    linked_from: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        for link_trace, link_span in span.links:
            if link_trace == trace_id:
                linked_from.setdefault(link_span, []).append(span)
    lines: list[str] = []

    def show(span: ReceivedSpan, depth: int, mark: str = "") -> None:
        lines.append(f"{'  ' * depth}{mark}{span.name} [{span.service}, {span.kind}] {span.ms:.1f} ms")
        for child in sorted(by_parent.get(span.span_id, []), key=lambda item: item.start_ns):
            show(child, depth + 1)
        for linking in linked_from.get(span.span_id, []):
            show(linking, depth + 1, "⇢ ")

    in_trace = {span.span_id for span in spans if span.trace_id == trace_id}
    for root in sorted((span for span in spans if span.trace_id == trace_id and span.parent_span_id not in in_trace),
                       key=lambda item: item.start_ns):
        show(root, 0)
    return "\n".join(lines)
