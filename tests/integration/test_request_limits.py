"""Bounded memory for requests: bodies are refused while they stream in, batches have a total byte
limit, header fields are bounded, and concurrent uploads do not each sit in the gateway's memory."""

from __future__ import annotations

import io
import select
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from cli.pipeline import LocalPipeline
from tests.conftest import PipelineFactory
from tests.support import images

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MiB = 1024 * 1024
BOUNDARY = "asyncinfer-test-boundary"


def peak_rss_bytes(pipeline: LocalPipeline) -> int:
    """The gateway process's peak resident set so far (VmHWM)."""
    assert pipeline.gateway is not None
    with open(f"/proc/{pipeline.gateway.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def chunked(body: Iterator[bytes]) -> Iterator[bytes]:
    for data in body:
        if data:  # an empty chunk would end the body
            yield f"{len(data):x}\r\n".encode() + data + b"\r\n"
    yield b"0\r\n\r\n"


def send_until_answered(url: str, head: bytes, chunks: Iterator[bytes]) -> tuple[httpx.Response, int]:
    """Send `head`, then `chunks` until the gateway answers; its answer, and how many bytes of the
    body had gone out by then."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is there
            try:
                sock.sendall(chunk)
            except OSError:  # the gateway stopped reading, or closed the connection
                break
            sent += len(chunk)
        answer = b""
        while not answered_whole(answer):
            try:
                data = sock.recv(65536)
            except ConnectionResetError:  # closed with some of our request unread: the answer came first
                break
            if not data:
                break
            answer += data
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = [(name, value) for name, _, value in (line.partition(": ") for line in header_lines)]
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body), sent


def answered_whole(answer: bytes) -> bool:
    """Whether `answer` holds a head and the Content-Length of body it announces (without one,
    the answer ends when the gateway closes the connection)."""
    head, found, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n") if found else []:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def endless(piece: bytes, *, first: bytes = b"", total_bytes: int) -> Iterator[bytes]:
    """`first`, then `piece` again and again, `total_bytes` in all."""
    yield first
    for _ in range((total_bytes - len(first)) // len(piece)):
        yield piece


def assert_problem(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status and words in response.json()["detail"], response.text


@pytest.mark.parametrize("kind", ["raw image", "multipart"])
def test_a_chunked_upload_over_the_limit_is_refused_while_it_streams(make_pipeline: PipelineFactory,
                                                                     kind: str) -> None:
    """No Content-Length: 64 MiB in 64 KiB chunks to a gateway whose limit is 1 MiB. It answers 413
    while the client is still sending (it does not read the rest first, as it did before)."""
    pipeline = make_pipeline(workers=0, ASYNCINFER_MAX_IMAGE_BYTES=str(MiB))
    content_type = "image/png" if kind == "raw image" else f"multipart/form-data; boundary={BOUNDARY}"
    first = b"" if kind == "raw image" else (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n").encode()
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    total_bytes = 64 * MiB
    before = peak_rss_bytes(pipeline)

    answer, sent = send_until_answered(
        pipeline.url, head, chunked(endless(b"\x89PNG" * 16384, first=first, total_bytes=total_bytes)))

    grown_mib = (peak_rss_bytes(pipeline) - before) / MiB
    print(f"\n{kind}: answered {answer.status_code} after {sent / MiB:.1f} of {total_bytes // MiB} MiB sent; "
          f"the gateway's peak RSS grew {grown_mib:.1f} MiB")
    assert_problem(answer, 413, "limit of")
    assert sent < total_bytes / 4
    assert grown_mib < 16
    assert httpx.get(f"{pipeline.url}/healthz", timeout=10).status_code == 200


def test_a_batch_over_its_total_byte_limit_is_refused(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_MAX_BATCH_BYTES=str(MiB))
    image = images.encode(images.picture(640, 480, seed=3), "PNG")
    count = MiB // len(image) + 2  # each file within the image limit, all of them over the batch's
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        refused = client.post("/v1/batches", files=[("files", (f"{i}.png", image, "image/png")) for i in range(count)])
        accepted = client.post("/v1/batches", files=[("files", ("0.png", image, "image/png"))])

    assert_problem(refused, 413, f"the limit is {MiB + 64 * 1024:,} bytes")
    assert refused.json()["title"] == "Request too large"
    assert accepted.status_code == 202, accepted.text


def test_header_fields_are_bounded(make_pipeline: PipelineFactory) -> None:
    """Before: a 1 MB header and 3,000 headers were accepted (httptools). Now at most 100 fields
    and 32 KiB of them (431 problem); a head that grows past 32 KiB while it arrives gets h11's
    plain 400 before any app code runs, and the connection is closed."""
    pipeline = make_pipeline(workers=0)
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        many = client.get("/healthz", headers=[(f"X-Field-{i}", "v") for i in range(3000)])
        long = client.get("/healthz", headers={"X-Long": "a" * 40_000})
        within = client.get("/healthz", headers=[(f"X-Field-{i}", "v" * 200) for i in range(90)])

    assert_problem(many, 431, "header fields; the limit is 100")
    assert_problem(long, 431, "the limit is 32,768")
    assert within.status_code == 200
    head = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Huge: "
    answer, sent = send_until_answered(pipeline.url, head, endless(b"a" * 4096, total_bytes=16 * MiB))
    print(f"\na 16 MiB header: {answer.status_code} ({answer.headers['content-type']}) after {sent:,} bytes of it")
    assert answer.status_code == 400 and sent < 16 * MiB


def ten_mib_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (1800, 1900, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def test_concurrent_large_uploads_stay_within_a_memory_bound(make_pipeline: PipelineFactory) -> None:
    """20 concurrent uploads of a 9.8 MiB PNG (10 raw, 10 multipart), all accepted: the gateway's
    peak RSS (VmHWM) may grow by at most 120 MiB, well under the 196 MiB the uploads weigh together.

    Bodies are spooled while they arrive and read into memory only for their check, one per core,
    and glibc returns freed uploads to the OS. Measured on 2 cores: +59 to +66 MiB (peak 155-163
    MiB). Before: +259 MiB (peak 355 MiB), every upload in memory at once and glibc's arenas
    keeping the ones freed; with 20 raw or 20 multipart uploads, +340 to +420 MiB.
    """
    pipeline = make_pipeline(workers=0)
    data = ten_mib_png()

    def upload(index: int) -> int:
        with httpx.Client(base_url=pipeline.url, timeout=120) as client:
            if index % 2:
                return client.post("/v1/jobs", content=data, headers={"Content-Type": "image/png"}).status_code
            return client.post("/v1/jobs", files={"file": ("noise.png", data, "image/png")}).status_code

    with httpx.Client(base_url=pipeline.url, timeout=60) as client:  # first requests import what they need
        assert client.post("/v1/jobs", files={"file": ("a.png", images.encode(images.picture(), "PNG"))}).is_success
        assert client.post("/v1/jobs", content=images.jpeg(), headers={"Content-Type": "image/jpeg"}).is_success
    before = peak_rss_bytes(pipeline)
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(upload, range(20)))
    grown_mib = (peak_rss_bytes(pipeline) - before) / MiB

    print(f"\n20 concurrent uploads of {len(data) / MiB:.1f} MiB: peak RSS {before / MiB:.0f} → "
          f"{peak_rss_bytes(pipeline) / MiB:.0f} MiB (+{grown_mib:.0f} MiB; bound +120 MiB)")
    assert statuses == [202] * 20
    assert grown_mib < 120
