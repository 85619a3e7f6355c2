"""/readyz's Redis probe dials a new connection each time and gives up fast.

That is what lets readiness see a Consul intention flipped to deny: the mesh refuses new
connections but never cuts the ones already open (tests/integration/test_consul_mesh.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from shared.queue import ping_on_a_new_connection

pytestmark = pytest.mark.integration


@contextmanager
def listener(on_accept: str) -> Iterator[int]:
    """A local port that behaves like a sidecar's upstream listener whose mesh link is denied:
    it accepts, then closes at once (`close`) or never answers (`silent`)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)  # so the thread notices `stop` (close() does not wake accept())
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if on_accept == "close":
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()
        for conn in held:
            conn.close()


def test_each_probe_opens_its_own_connection_and_closes_it(redis_url: str) -> None:
    with redis.Redis.from_url(f"{redis_url}/0") as observer:
        observer.ping()
        before = observer.info("stats")["total_connections_received"]
        clients_before = observer.info("clients")["connected_clients"]

        for _ in range(3):
            ping_on_a_new_connection(f"{redis_url}/0", timeout_s=2)

        assert observer.info("stats")["total_connections_received"] - before == 3
        assert observer.info("clients")["connected_clients"] == clients_before


@pytest.mark.parametrize(("behaviour", "within_s"), [("close", 1.0), ("silent", 4.0)])
def test_a_refused_or_silent_link_fails_the_probe_quickly(behaviour: str, within_s: float) -> None:
    with listener(behaviour) as port:
        started = time.monotonic()
        with pytest.raises(redis.RedisError):  # ConnectionError or TimeoutError
            ping_on_a_new_connection(f"redis://127.0.0.1:{port}/0", timeout_s=2)
        assert time.monotonic() - started < within_s
