"""A minimal HTTP/1.1 client on asyncio streams, for load generation.

On a 2-core machine the load generator competes with the system it measures; httpx costs
several times more CPU per request than these few lines, which send a raw image body, read a
JSON answer, and follow a chunked SSE stream until the job's terminal event.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from shared.jobs import TERMINAL


class HttpError(RuntimeError):
    pass


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer, f"{host}:{port}")

    def close(self) -> None:
        self.writer.close()

    async def _head(self) -> tuple[int, dict[str, str]]:
        status_line = await self.reader.readline()
        if not status_line:
            raise HttpError("connection closed by the server")
        status = int(status_line.split(b" ", 2)[1])
        headers = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding") == "chunked":
            parts = []
            while chunk := await self._chunk():
                parts.append(chunk)
            return b"".join(parts)
        return await self.reader.readexactly(int(headers.get("content-length", "0")))

    async def _chunk(self) -> bytes:
        size = int((await self.reader.readline()).strip().split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)  # the chunk and its CRLF
        return data[:-2]

    async def post(self, path: str, body: bytes, content_type: str, expect: int | None = None) -> tuple[int, Any]:
        """(status, JSON body); HttpError when `expect` is given and the status is another."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status, headers = await self._head()
        answer = json.loads(await self._body(headers) or b"null")
        if expect is not None and status != expect:
            raise HttpError(f"POST {path}: {status} {answer}")
        return status, answer

    async def get(self, path: str, expect: int | None = None) -> tuple[int, Any]:
        """(status, JSON body); HttpError when `expect` is given and the status is another."""
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        status, headers = await self._head()
        answer = json.loads(await self._body(headers) or b"null")
        if expect is not None and status != expect:
            raise HttpError(f"GET {path}: {status} {answer}")
        return status, answer

    async def follow_until_terminal(self, path: str) -> tuple[str, float]:
        """GET an SSE stream; returns the terminal status and when it arrived (time.time()).
        Reads the stream to its end, so the connection can be reused."""
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        status, headers = await self._head()
        if status != 200:
            raise HttpError(f"GET {path}: {status} {await self._body(headers)!r}")
        buffer, final, arrived = b"", "", 0.0
        while chunk := await self._chunk():
            buffer += chunk
            *events, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
            for event in events:
                final_status = terminal_status(event)
                if final_status and not final:
                    final, arrived = final_status, time.time()
        return final, arrived


def terminal_status(event: bytes) -> str | None:
    """The status of an SSE `status` event when it is terminal."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            status = json.loads(line[5:]).get("status")
            return status if status in TERMINAL else None
    return None


async def submit_and_wait(conn: Connection, data: bytes, content_type: str) -> tuple[float, str]:
    """One job end to end: POST /v1/jobs, then its SSE stream to the terminal event.
    Returns (seconds from submit to the terminal event, final status)."""
    started = time.time()
    _, doc = await conn.post("/v1/jobs", data, content_type, expect=202)
    final, arrived = await conn.follow_until_terminal(f"/v1/jobs/{doc['id']}/events")
    return arrived - started, final
