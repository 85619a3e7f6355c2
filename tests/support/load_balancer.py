"""A TCP load balancer in front of several gateways, for tests: each new connection goes to the next
backend in turn, skipping one that refuses the connection (as a load balancer's health check would,
only sooner). Connections are piped byte for byte, so HTTP keep-alive and SSE pass unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class LoadBalancer:
    backends: list[tuple[str, int]]
    port: int = 0
    connections: dict[tuple[str, int], int] = field(default_factory=dict)  # per backend, since the start
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._open.add(client_writer)
        for _ in range(len(self.backends)):
            backend = next(self._turns)
            try:
                backend_reader, backend_writer = await asyncio.open_connection(*backend)
            except OSError:
                continue  # down: the next one
            self.connections[backend] = self.connections.get(backend, 0) + 1
            self._open.add(backend_writer)
            await asyncio.gather(self._pipe(client_reader, backend_writer), self._pipe(backend_reader, client_writer))
            return
        client_writer.close()  # no backend answers: the client sees the connection close

    async def _run(self, started: threading.Event, stop: asyncio.Event) -> None:
        self._turns = itertools.cycle(self.backends)
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await stop.wait()
        for writer in self._open:  # connections still open at the end: closed, not left to the garbage collector
            writer.close()
        await asyncio.sleep(0)


@contextlib.contextmanager
def load_balancer(backends: list[tuple[str, int]]) -> Iterator[LoadBalancer]:
    balancer = LoadBalancer(backends)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(balancer._run(started, stop),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield balancer
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()  # its self-pipe sockets, which the garbage collector would report unclosed
