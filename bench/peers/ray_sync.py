"""Ray Serve, synchronous: one deployment answers POST /classify (the raw upload as the body) with
the predictions. The replica decodes each request as it arrives; `@serve.batch` gathers the decoded
pixels into batches for one onnxruntime call. Nothing is stored: a request lost is lost.

Run by bench/peers/driver.py with the Ray venv's Python: `python -m bench.peers.ray_sync PORT`, with
PYTHONPATH the project.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request

from bench.peers.inference import Model, batch_wait_s, max_batch_size
from bench.peers.ray_serving import serve_until_sigterm


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
class Classifier:
    def __init__(self) -> None:
        self.model = Model()

    @serve.batch(max_batch_size=max_batch_size(), batch_wait_timeout_s=batch_wait_s())  # type: ignore[untyped-decorator]
    async def infer(self, pixels: list[np.ndarray]) -> list[dict[str, Any]]:
        return self.model.predict(pixels)

    async def __call__(self, request: Request) -> dict[str, Any]:
        pixels = self.model.pixels(await request.body())
        return await self.infer(pixels)  # type: ignore[no-any-return]


def main() -> None:
    serve_until_sigterm(int(sys.argv[1]), Classifier.bind(), "/classify")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
