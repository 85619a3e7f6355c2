"""GPU-ready workers without a GPU: device and provider choice from what is "available", one
worker environment per GPU, the batch size chosen from measured numbers and its cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from shared.config import Settings
from tests.support.models import builtin
from workers.model.batch_sweep import (
    candidate_sizes,
    choose_batch_size,
    load_sweep,
    save_sweep,
    sweep_batch_size,
    sweep_cache_path,
    sweep_key,
)
from workers.model.devices import choose_device, choose_providers, worker_environments
from workers.model.keras_runtime import RuntimeUnavailable

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def test_the_device_follows_the_setting_and_the_gpus_seen() -> None:
    assert choose_device("auto", 0) == "cpu"
    assert choose_device("auto", 2) == "gpu:0"
    assert choose_device("gpu", 1) == "gpu:0"
    assert choose_device("cpu", 4) == "cpu"
    with pytest.raises(RuntimeUnavailable, match="ASYNCINFER_DEVICE=gpu, but TensorFlow sees no GPU"):
        choose_device("gpu", 0)


def test_onnx_providers_put_cuda_first_only_when_built_in_and_allowed() -> None:
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("gpu", [CPU, CUDA]) == [CUDA, CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    with pytest.raises(RuntimeUnavailable, match=r"no CUDA provider .*onnxruntime-gpu"):
        choose_providers("gpu", [CPU])


def test_one_worker_per_gpu_each_sees_only_its_own() -> None:
    base = {"ASYNCINFER_MODEL": "mobilenet_v2"}
    assert worker_environments(0, base) == [base]
    assert worker_environments(2, base) == [{**base, "CUDA_VISIBLE_DEVICES": "0"},
                                            {**base, "CUDA_VISIBLE_DEVICES": "1"}]
    assert base == {"ASYNCINFER_MODEL": "mobilenet_v2"}


def test_candidates_are_powers_of_two_up_to_the_largest() -> None:
    assert candidate_sizes(16) == [1, 2, 4, 8, 16]
    assert candidate_sizes(24) == [1, 2, 4, 8, 16, 24]
    assert candidate_sizes(1) == [1]


def test_the_smallest_batch_within_95_percent_of_the_best_is_chosen() -> None:
    assert choose_batch_size({1: 40.0, 2: 70.0, 4: 96.0, 8: 100.0, 16: 99.0}) == 4
    assert choose_batch_size({1: 40.0, 8: 100.0, 16: 130.0, 32: 200.0}) == 32
    assert choose_batch_size({1: 10.0}) == 1
    with pytest.raises(ValueError):
        choose_batch_size({})


def test_a_sweep_is_cached_per_model_weights_runtime_and_device(tmp_path: Path) -> None:
    keys = {sweep_key("m@1", "a" * 64, "keras", "cpu"), sweep_key("m@2", "a" * 64, "keras", "cpu"),
            sweep_key("m@1", "b" * 64, "keras", "cpu"), sweep_key("m@1", "a" * 64, "onnxruntime", "cpu"),
            sweep_key("m@1", "a" * 64, "keras", "gpu:0")}
    assert len(keys) == 5
    path = sweep_cache_path(tmp_path, keys.pop())
    assert load_sweep(path) is None
    save_sweep(path, {1: 10.5, 4: 30.0})
    assert load_sweep(path) == {1: 10.5, 4: 30.0}
    path.write_text("{not json")
    assert load_sweep(path) is None


@dataclass
class CountingClassifier:
    """A fake model whose throughput rises with the batch size up to 4."""

    calls: int = 0
    max_batch_size: int = 16

    spec = builtin()

    @property
    def info(self) -> dict[str, str]:
        return {"weights_sha256": "c" * 64, "device": "cpu"}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.zeros((len(batch), 1000), dtype="float32")


def test_a_second_start_reuses_the_measured_sweep(tmp_path: Path) -> None:
    classifier = CountingClassifier()
    first = sweep_batch_size(classifier, "keras", tmp_path, largest=4, repeats=1)
    assert not first.from_cache and sorted(first.images_per_s) == [1, 2, 4] and classifier.calls == 6
    assert first.batch_size == choose_batch_size(first.images_per_s)
    again = sweep_batch_size(classifier, "keras", tmp_path, largest=4, repeats=1)
    assert again.from_cache and again.images_per_s == first.images_per_s and classifier.calls == 6
    sweep_batch_size(classifier, "onnxruntime", tmp_path, largest=4, repeats=1)
    assert classifier.calls == 12  # another runtime is measured anew


def test_keras_options_are_off_by_default_and_checked() -> None:
    settings = Settings()
    assert (settings.xla, settings.mixed_precision, settings.batch_size_sweep) == (False, False, False)
    with pytest.raises(ValueError, match="keras only"):
        Settings(runtime="onnxruntime", xla=True)
    with pytest.raises(ValueError, match="needs a GPU"):
        Settings(device="cpu", mixed_precision=True)


def test_the_worker_takes_the_measured_batch_size_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from workers.model import loading
    from workers.model.batch_sweep import Sweep

    swept: list[str] = []

    def fake_sweep(classifier: object, runtime: str, cache_dir: str) -> Sweep:
        swept.append(runtime)
        return Sweep({1: 10.0, 8: 50.0}, 8, from_cache=False)

    spec = replace(builtin(), build=lambda weights, seed: (object(), weights))
    monkeypatch.setattr(loading, "weights_sha256", lambda model: "0" * 64)
    monkeypatch.setattr(loading, "warm_up", lambda classifier: 0.0)
    monkeypatch.setattr(loading, "sweep_batch_size", fake_sweep)
    assert loading.load_classifier(Settings(weights="random", device="cpu"), spec).max_batch_size == 16
    assert loading.load_classifier(Settings(weights="random", device="cpu", batch_size_sweep=True,
                                            max_batch_size=4), spec).max_batch_size == 4
    assert swept == []
    assert loading.load_classifier(Settings(weights="random", device="cpu", batch_size_sweep=True),
                                   spec).max_batch_size == 8
    assert swept == ["keras"]
