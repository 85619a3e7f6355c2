"""What both Ray Serve peers do around their deployments: start Ray and Serve on `port`, run the
application, say `ready`, and shut down on SIGTERM. Runs in the Ray venv only."""

from __future__ import annotations

import signal
import threading
from typing import Any

import ray
from ray import serve


def serve_until_sigterm(port: int, application: Any, route_prefix: str) -> None:
    # No dashboard: it is several processes of CPU that serving does not need.
    # Ray's workers inherit PYTHONPATH (the project, for bench.peers.inference and shared/).
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(application, route_prefix=route_prefix)
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()
