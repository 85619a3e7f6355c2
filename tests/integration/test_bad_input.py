"""Bad input gets the status code of docs/contract.md and a clear problem+json; the service stays healthy."""

from __future__ import annotations

import struct
import zlib

import httpx
import pytest

from tests.support import images
from tests.support.http import post_job, submit, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions: a decompression bomb caught before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


CASES = {
    "empty body": (lambda c: post_job(c, b""), 400, "empty"),
    "text named .jpg": (
        lambda c: c.post("/v1/jobs", files={"file": ("cat.jpg", b"hello, I am text", "image/jpeg")}), 415, "not a JPEG"),
    "text as raw body": (lambda c: post_job(c, b"plain text", "text/plain"), 415, "Content-Type text/plain"),
    "unsupported declared type": (lambda c: post_job(c, images.jpeg(), "image/tiff"), 415, "image/tiff"),
    "declared png, bytes jpeg": (lambda c: post_job(c, images.jpeg(), "image/png"), 422, "declared as image/png"),
    "truncated JPEG": (lambda c: post_job(c, images.jpeg(640, 480)[:3000]), 422, "truncated"),
    "1x1 image": (lambda c: post_job(c, images.encode(images.picture(1, 1), "PNG"), "image/png"), 422, "1×1"),
    "decompression bomb": (lambda c: post_job(c, png_header_only(50_000, 50_000), "image/png"), 413, "decompression bomb"),
    "over-size": (lambda c: post_job(c, b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024 + 1)), 413, "limit"),
    "top_k=0": (lambda c: post_job(c, images.jpeg(), top_k=0), 400, "top_k"),
    "top_k=1000": (lambda c: post_job(c, images.jpeg(), top_k=1000), 400, "top_k"),
    "form top_k=1000": (
        lambda c: c.post("/v1/jobs", files={"file": ("a.jpg", images.jpeg(), "image/jpeg")}, data={"top_k": "1000"}), 400, "top_k"),
    "multipart without file": (lambda c: c.post("/v1/jobs", files={"other": ("a.jpg", b"x", "image/jpeg")}), 400, "`file`"),
    "unknown job id": (lambda c: c.get("/v1/jobs/00000000-0000-4000-8000-000000000000"), 404, "no job"),
    "unknown job events": (lambda c: c.get("/v1/jobs/nope/events"), 404, "no job"),
    "unknown batch": (lambda c: c.get("/v1/batches/nope"), 404, "no batch"),
    "wait out of range": (lambda c: c.get("/v1/jobs/x", params={"wait": 31}), 400, "wait"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly(client: httpx.Client, case: str) -> None:
    send, status, words = CASES[case]

    response = send(client)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["type"]
    assert words in problem["detail"], problem["detail"]


def test_a_batch_with_one_bad_file_is_refused_whole(client: httpx.Client) -> None:
    files = [("files", ("good.jpg", images.jpeg(), "image/jpeg")), ("files", ("bad.jpg", b"text", "image/jpeg"))]

    response = client.post("/v1/batches", files=files)

    assert response.status_code == 415
    errors = response.json()["errors"]
    assert errors == [{"index": 1, "file": "bad.jpg", "status": 415, "detail": errors[0]["detail"]}]


def test_the_service_stays_healthy_after_bad_input(client: httpx.Client) -> None:
    for send, _, _ in CASES.values():
        send(client)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    job = submit(client, images.jpeg(seed=41))
    assert wait_terminal(client, job["id"])["status"] == "succeeded"
