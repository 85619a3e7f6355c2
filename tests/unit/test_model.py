"""Backend, device and batch size choices, and weight loading errors — no GPU needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workers import model
from workers.model import (
    CPU_BATCH_SIZE,
    GPU_BATCH_SIZE,
    WeightsUnavailable,
    batch_size_for,
    build_model,
    detect_device,
)


def test_batch_size_follows_the_device_unless_configured() -> None:
    assert batch_size_for("cpu", 0) == CPU_BATCH_SIZE
    assert batch_size_for("gpu:0", 0) == GPU_BATCH_SIZE
    assert batch_size_for("gpu:0", 24) == 24


def test_device_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "_visible_gpus", lambda backend: [])
    assert detect_device("tensorflow") == "cpu"
    with pytest.raises(RuntimeError, match="sees no GPU"):
        detect_device("tensorflow", "gpu")
    monkeypatch.setattr(model, "_visible_gpus", lambda backend: ["/physical_device:GPU:0"])
    assert detect_device("tensorflow") == "gpu:0"
    assert detect_device("tensorflow", "cpu") == "cpu"


def test_this_machine_has_no_gpu_for_tensorflow() -> None:
    assert detect_device("tensorflow") == "cpu"


def test_missing_imagenet_weights_refuse_with_instructions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="ASYNCINFER_WEIGHTS"):
        build_model("imagenet", 0)
    with pytest.raises(WeightsUnavailable, match="no such file"):
        build_model(str(tmp_path / "missing.h5"), 0)


def test_random_weights_are_reproducible_and_discriminative(tmp_path: Path) -> None:
    first, label = build_model("random", 7)
    second, _ = build_model("random", 7)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    a, b = first.predict_on_batch(x), second.predict_on_batch(x)
    assert label == "random" and np.array_equal(a, b)
    assert a.max() > 0.01, "softmax is flat: the random weights carry no signal"
    path = tmp_path / "w.weights.h5"
    first.save_weights(path)
    loaded, loaded_label = build_model(str(path), 0)
    assert loaded_label == str(path)
    assert np.allclose(loaded.predict_on_batch(x), a, atol=1e-6)
