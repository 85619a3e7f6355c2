"""The batch size by measurement: a short sweep of images/s per candidate batch size on random
input, the smallest batch within a share of the best throughput, cached per model, weights,
runtime and device so that later starts reuse it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.model.classifier import Classifier

# A larger batch only adds latency once it no longer adds throughput: take the smallest batch
# whose images/s is at least this share of the best measured.
GOOD_ENOUGH = 0.95
SWEEP_RECIPE = "sweep/v1"


def candidate_sizes(largest: int) -> list[int]:
    """Powers of two from 1 up to `largest`, and `largest` itself."""
    sizes = [1]
    while sizes[-1] * 2 <= largest:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != largest and largest > 0:
        sizes.append(largest)
    return sizes


def choose_batch_size(images_per_s: Mapping[int, float], good_enough: float = GOOD_ENOUGH) -> int:
    """The smallest batch size whose throughput is within `good_enough` of the best."""
    if not images_per_s:
        raise ValueError("no measurements to choose a batch size from")
    best = max(images_per_s.values())
    return min(size for size, rate in images_per_s.items() if rate >= good_enough * best)


def measure(predict: Callable[[np.ndarray], object], input_shape: tuple[int, int, int], sizes: list[int],
            *, repeats: int = 3, seed: int = 0) -> dict[int, float]:
    """Images/s of `predict` per batch size: one untimed call (tracing, allocation), then the
    best of `repeats` timed calls, on random input."""
    rng = np.random.default_rng(seed)
    rates: dict[int, float] = {}
    for size in sizes:
        batch = rng.uniform(-1.0, 1.0, (size, *input_shape)).astype("float32")
        predict(batch)
        fastest = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            predict(batch)
            fastest = min(fastest, time.perf_counter() - started)
        rates[size] = size / max(fastest, 1e-9)
    return rates


def sweep_key(model_ref: str, weights_sha256: str, runtime: str, device: str) -> str:
    return hashlib.sha256(f"{SWEEP_RECIPE}|{model_ref}|{weights_sha256}|{runtime}|{device}".encode()).hexdigest()


def sweep_cache_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir).expanduser() / "batch_sweeps" / f"{key}.json"


def load_sweep(path: Path) -> dict[int, float] | None:
    """The cached measurements, or None when absent or unreadable (then the sweep runs again)."""
    try:
        stored = json.loads(path.read_text())
        return {int(size): float(rate) for size, rate in stored["images_per_s"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_sweep(path: Path, images_per_s: Mapping[int, float]) -> None:
    """Written to a temporary file and renamed: workers starting together never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"images_per_s": {str(size): rate for size, rate in sorted(images_per_s.items())}})
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".part", delete=False) as part:
        part.write(body)
    os.replace(part.name, path)


@dataclass(frozen=True)
class Sweep:
    images_per_s: dict[int, float]
    batch_size: int
    from_cache: bool


def default_largest(classifier: Classifier) -> int:
    """The sweep's largest candidate: twice the model's declared batch size for the device."""
    return min(1024, 2 * classifier.spec.batch_size_for(classifier.info["device"]))


def sweep_batch_size(classifier: Classifier, runtime: str, cache_dir: str | Path, *, largest: int = 0,
                     repeats: int = 3, refresh: bool = False) -> Sweep:
    """The measured images/s per candidate batch size and the one chosen, from the cache when
    this model, weights, runtime and device were measured before (unless `refresh`)."""
    info = classifier.info
    path = sweep_cache_path(cache_dir, sweep_key(classifier.spec.ref, info["weights_sha256"], runtime,
                                                 info["device"]))
    sizes = candidate_sizes(largest or default_largest(classifier))
    cached = None if refresh else load_sweep(path)
    if cached is not None and set(sizes) <= set(cached):
        rates = {size: cached[size] for size in sizes}
        return Sweep(rates, choose_batch_size(rates), from_cache=True)
    size_in = classifier.spec.input
    rates = measure(classifier.predict, (size_in.height, size_in.width, 3), sizes, repeats=repeats)
    save_sweep(path, {**(cached or {}), **rates})
    return Sweep(rates, choose_batch_size(rates), from_cache=False)
