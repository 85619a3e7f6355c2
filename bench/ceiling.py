"""The ceiling: one process decodes, preprocesses and runs batched compiled inference in a
tight loop, nothing else. Run as its own process per runtime:

    python -m bench.ceiling --runtime onnxruntime --images DIR --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
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


def measure(runtime: str, image_dir: Path, batch_sizes: list[int], duration_s: float) -> dict[str, object]:
    import numpy as np

    from shared.config import Settings
    from workers.model import load_classifier
    from workers.preprocess import decode, to_model_input

    images = [image.data for image in load_image_dir(image_dir)]
    settings = Settings(weights="random", runtime=runtime, max_batch_size=max(batch_sizes), device="cpu")
    classifier = load_classifier(settings)
    for size in batch_sizes:  # trace every shape before timing anything
        classifier.predict(np.zeros((size, 224, 224, 3), dtype="float32"))

    cursor = 0

    def next_images(count: int) -> list[bytes]:
        nonlocal cursor
        chosen = [images[(cursor + i) % len(images)] for i in range(count)]
        cursor += count
        return chosen

    rows = []
    decoded = to_model_input([decode(data) for data in images])
    for size in batch_sizes:
        batches_per_round = max(1, 32 // size)

        def full_step(size: int = size, batches: int = batches_per_round) -> None:
            for _ in range(batches):
                classifier.predict(to_model_input([decode(data) for data in next_images(size)]))

        ready = np.resize(decoded, (size, *decoded.shape[1:]))  # repeats the set when it is smaller

        def inference_step(ready: np.ndarray = ready, batches: int = batches_per_round) -> None:
            for _ in range(batches):
                classifier.predict(ready)

        per_round = size * batches_per_round
        rates, cpu_ms = timed_rounds(full_step, per_round, duration_s)
        inference_rates, inference_cpu_ms = timed_rounds(inference_step, per_round, duration_s / 2)
        rows.append({
            "batch_size": size,
            "images_per_s": spread(rates),
            "cpu_ms_per_image": spread(cpu_ms),
            "inference_only_images_per_s": spread(inference_rates),
            "inference_only_cpu_ms_per_image": spread(inference_cpu_ms),
        })

    # Batch-1 latency image by image, over the whole set: the light-load reference.
    single_ms = []
    for data in images * 2:
        started = time.perf_counter()
        classifier.predict(to_model_input([decode(data)]))
        single_ms.append((time.perf_counter() - started) * 1000)
    decode_ms = []
    for data in images:
        started = time.perf_counter()
        decode(data)
        decode_ms.append((time.perf_counter() - started) * 1000)
    return {
        "runtime": runtime,
        "backend": classifier.info["backend"],
        "threads": settings.intra_op_threads or os.cpu_count(),
        "rows": rows,
        "batch1_latency_ms": spread(single_ms),
        "decode_ms": spread(decode_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", required=True, choices=["keras", "onnxruntime"])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,8,16,32,64")
    parser.add_argument("--duration-s", type=float, default=6.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    args.out.write_text(json.dumps(measure(args.runtime, args.images, sizes, args.duration_s), indent=2))


if __name__ == "__main__":
    main()
