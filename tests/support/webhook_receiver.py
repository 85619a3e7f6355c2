"""A real HTTP server on 127.0.0.1 that receives webhooks: it records every request and answers
each with what its script says next (a status, or hanging for a while)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str


@dataclass
class Receiver:
    port: int
    # What the next requests get, in order: a status, or ("hang", seconds). Past the script: `then`.
    script: list[Any] = field(default_factory=list)
    then: Any = 204
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def next_answer(self) -> Any:
        with self.lock:
            return self.script.pop(0) if self.script else self.then

    def wait_for(self, count: int, timeout_s: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise TimeoutError(f"the receiver got {len(self.requests)} requests, not {count}, in {timeout_s} s")


@contextmanager
def webhook_receiver(script: list[Any] | None = None, then: Any = 204) -> Iterator[Receiver]:
    receiver = Receiver(port=0, script=list(script or []), then=then)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body, self.path))
            answer = receiver.next_answer()
            if isinstance(answer, tuple):  # ("hang", seconds)
                time.sleep(answer[1])
                answer = 204
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
