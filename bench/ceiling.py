"""The ceiling: one process decodes, preprocesses and runs batched compiled inference in a
tight loop, nothing else; either one step after the other, or with a pool of decoding threads
preparing the next batch while the current one is inferred (Pillow, the resize and ONNX Runtime
or TensorFlow release the GIL). The best arrangement of the two is the ceiling the pipeline is
measured against. Run as its own process per runtime:

    python -m bench.ceiling --runtime onnxruntime --images DIR --out FILE.json [--serve]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.imageset import load_image_dir
from bench.stats import spread


def timed_rounds(
    step: Callable[[], None], images_per_round: int, duration_s: float, min_rounds: int = 3
) -> tuple[list[float], list[float]]:
    """Images per second of each round of `step()` calls until `duration_s` has passed, and
    the CPU milliseconds (all threads of this process) each image took."""
    rates, cpu_ms, deadline = [], [], time.perf_counter() + duration_s
    while len(rates) < min_rounds or time.perf_counter() < deadline:
        started, started_cpu = time.perf_counter(), time.process_time()
        step()
        rates.append(images_per_round / (time.perf_counter() - started))
        cpu_ms.append((time.process_time() - started_cpu) * 1000 / images_per_round)
    return rates, cpu_ms


# Decoding threads beside the forward pass, tried at each batch size (0: decode, then infer).
DECODE_POOLS = (1, 2)


class Ceiling:
    """A loaded model and the image set, measured on request."""

    def __init__(self, runtime: str, image_dir: Path, batch_sizes: list[int]) -> None:
        import numpy as np

        from shared.config import Settings
        from shared.preprocessing import decode
        from workers.model.classifier import to_model_input
        from workers.model.loading import load_classifier

        self.np = np
        self.runtime = runtime
        self.images = [image.data for image in load_image_dir(image_dir)]
        self.settings = Settings(weights="random", runtime=runtime, max_batch_size=max(batch_sizes), device="cpu")
        spec = self.settings.catalogue().resolve(None)
        self.decode = lambda data: decode(data, spec.input)
        self.to_model_input = lambda images: to_model_input(spec, images)
        self.classifier = load_classifier(self.settings, spec)
        for size in batch_sizes:  # trace every shape before timing anything
            self.classifier.predict(np.zeros((size, spec.input.height, spec.input.width, 3), dtype="float32"))
        self.decoded = self.to_model_input([self.decode(data) for data in self.images])
        self._cursor = 0

    def _next_images(self, count: int) -> list[bytes]:
        chosen = [self.images[(self._cursor + i) % len(self.images)] for i in range(count)]
        self._cursor += count
        return chosen

    def _full_step(self, size: int, batches: int) -> None:
        for _ in range(batches):
            self.classifier.predict(self.to_model_input([self.decode(data) for data in self._next_images(size)]))

    def _overlapped_step(self, pool: ThreadPoolExecutor, size: int, batches: int) -> None:
        """Each batch's images decoded by the pool while the batch before is inferred."""
        pending = [pool.submit(self.decode, data) for data in self._next_images(size)]
        for index in range(batches):
            ready = self.to_model_input([future.result() for future in pending])
            if index + 1 < batches:
                pending = [pool.submit(self.decode, data) for data in self._next_images(size)]
            self.classifier.predict(ready)

    def throughput(self, size: int, duration_s: float, decoders: int = 0) -> tuple[list[float], list[float]]:
        """Images/s and CPU ms per image of rounds of decode + preprocess + inference: one after
        the other, or with `decoders` threads decoding beside the forward pass."""
        batches = max(2, 64 // size) if decoders else max(1, 32 // size)
        if not decoders:
            return timed_rounds(lambda: self._full_step(size, batches), size * batches, duration_s)
        with ThreadPoolExecutor(decoders) as pool:
            return timed_rounds(lambda: self._overlapped_step(pool, size, batches), size * batches, duration_s)

    def inference_only(self, size: int, duration_s: float) -> tuple[list[float], list[float]]:
        batches = max(1, 32 // size)
        ready = self.np.resize(self.decoded, (size, *self.decoded.shape[1:]))  # repeats the set when smaller

        def step() -> None:
            for _ in range(batches):
                self.classifier.predict(ready)

        return timed_rounds(step, size * batches, duration_s)

    def batch1_ms(self, passes: int = 1) -> list[float]:
        """Batch-1 latency image by image over the whole set: the light-load reference."""
        latencies = []
        for data in self.images * passes:
            started = time.perf_counter()
            self.classifier.predict(self.to_model_input([self.decode(data)]))
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    def decode_ms(self) -> list[float]:
        latencies = []
        for data in self.images:
            started = time.perf_counter()
            self.decode(data)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    def table(self, batch_sizes: list[int], duration_s: float) -> dict[str, object]:
        from workers.model.onnx_runtime import intra_op_threads

        rows = []
        for size in batch_sizes:
            rates, cpu_ms = self.throughput(size, duration_s)
            inference_rates, inference_cpu_ms = self.inference_only(size, duration_s / 2)
            overlapped = {}
            for decoders in DECODE_POOLS:
                pool_rates, pool_cpu_ms = self.throughput(size, duration_s / 2, decoders)
                overlapped[str(decoders)] = {"images_per_s": spread(pool_rates),
                                             "cpu_ms_per_image": spread(pool_cpu_ms)}
            rows.append({
                "batch_size": size,
                "images_per_s": spread(rates),
                "cpu_ms_per_image": spread(cpu_ms),
                "inference_only_images_per_s": spread(inference_rates),
                "inference_only_cpu_ms_per_image": spread(inference_cpu_ms),
                "decode_pool": overlapped,
            })
        return {
            "runtime": self.runtime,
            "backend": self.classifier.info["backend"],
            "threads": intra_op_threads(self.settings.intra_op_threads),
            "rows": rows,
            "batch1_latency_ms": spread(self.batch1_ms(passes=2)),
            "decode_ms": spread(self.decode_ms()),
        }


def serve(ceiling: Ceiling) -> None:
    """Answer measurement requests, one JSON line each, so that the benchmark can alternate
    ceiling rounds with end-to-end rounds (the machine's noise then hits both alike):
    `throughput SIZE SECONDS DECODERS` → {"images_per_s": [...]}; `batch1` → {"latency_ms": [...]}."""
    for line in sys.stdin:
        command, *args = line.split()
        if command == "throughput":
            rates, _ = ceiling.throughput(int(args[0]), float(args[1]), int(args[2]))
            answer: dict[str, object] = {"images_per_s": rates}
        elif command == "batch1":
            answer = {"latency_ms": ceiling.batch1_ms()}
        else:
            return
        print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", required=True, choices=["keras", "onnxruntime"])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,8,16,32,64")
    parser.add_argument("--duration-s", type=float, default=6.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--serve", action="store_true", help="after the table, answer requests on stdin")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    ceiling = Ceiling(args.runtime, args.images, sizes)
    args.out.write_text(json.dumps(ceiling.table(sizes, args.duration_s), indent=2))
    if args.serve:
        print(json.dumps({"ready": True}), flush=True)
        serve(ceiling)


if __name__ == "__main__":
    main()
