"""One delivery attempt against a real local HTTPS server: the connection goes to the address that
was checked while TLS verifies the URL's host name (SNI), redirects are not followed, a long answer
is not read to its end, and a silent receiver costs one attempt timeout."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api.delivery.deliverer import Deliverer
from api.delivery.subjects import Subject
from shared.config import Settings

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a certificate")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def server(certificate: tuple[Path, Path]) -> Iterator[dict[str, Any]]:
    """An HTTPS server on 127.0.0.1 answering as `state["answer"]` says; it records what it saw."""
    state: dict[str, Any] = {"answer": "ok", "requests": [], "sni": [], "sent": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state["requests"].append({"host": self.headers["Host"], "path": self.path})
            if state["answer"] == "hang":
                time.sleep(3)
            elif state["answer"] == "redirect":
                self.send_response(302)
                self.send_header("Location", "https://localhost:1/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif state["answer"] == "endless":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"x" * 65536
                with contextlib.suppress(OSError):  # until the client stops reading and closes, as it should
                    while True:  # a body without end: only a client that stops reading finishes
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        state["sent"] += len(chunk)
            else:
                self.send_response(204)
                self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    context.sni_callback = lambda sock, name, ctx: state["sni"].append(name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state["port"] = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def attempt(certificate: tuple[Path, Path], url: str) -> Any:
    settings = Settings(webhook_secret="s", webhook_allowed_hosts="127.0.0.1,::1", webhook_attempt_timeout_s=1,
                        webhook_lease_s=3)
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    deliverer = Deliverer(settings, store=None, publisher=None, queue=None, tls_verify=trusting)  # type: ignore[arg-type]
    subject = Subject("j1", url, record=None, ready=True, payload=b'{"id":"j1"}')

    async def run() -> Any:
        try:
            return await deliverer.attempt(subject)
        finally:
            await deliverer.http.aclose()

    return asyncio.run(run())


def test_https_connects_to_the_checked_address_with_the_host_name_for_tls_and_host(
        certificate: tuple[Path, Path], server: dict[str, Any]) -> None:
    outcome = attempt(certificate, f"https://localhost:{server['port']}/hook?x=1")

    assert (outcome.status, outcome.error) == (204, None)
    assert server["sni"] == ["localhost"]
    assert server["requests"] == [{"host": f"localhost:{server['port']}", "path": "/hook?x=1"}]


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(certificate: tuple[Path, Path],
                                                              server: dict[str, Any]) -> None:
    server["answer"] = "redirect"

    outcome = attempt(certificate, f"https://localhost:{server['port']}/hook")

    assert (outcome.status, outcome.error) == (302, "answered 302")
    assert len(server["requests"]) == 1


def test_an_endless_answer_is_not_read_to_its_end(certificate: tuple[Path, Path], server: dict[str, Any]) -> None:
    server["answer"] = "endless"

    outcome = attempt(certificate, f"https://localhost:{server['port']}/hook")

    assert outcome.status == 200 and outcome.delivered
    assert outcome.duration_ms < 1800  # within the attempt's time-out of 1 s, not after it
    # What the server got into the connection: the client's read plus what the sockets' buffers hold
    # (a few MiB on loopback), nowhere near what a client reading on for a second would take.
    assert server["sent"] <= 32 * 1024 * 1024


def test_a_silent_receiver_costs_one_attempt_timeout(certificate: tuple[Path, Path], server: dict[str, Any]) -> None:
    server["answer"] = "hang"

    outcome = attempt(certificate, f"https://localhost:{server['port']}/hook")

    assert (outcome.status, outcome.error) == (None, "no answer within 1 s")
    assert outcome.duration_ms < 1800


def test_a_certificate_for_another_name_fails_the_attempt(certificate: tuple[Path, Path],
                                                            server: dict[str, Any]) -> None:
    """The address literal is not what TLS checks: 127.0.0.1 is not in the certificate."""
    outcome = attempt(certificate, f"https://127.0.0.1:{server['port']}/hook")

    assert outcome.status is None and "ConnectError" in outcome.error
