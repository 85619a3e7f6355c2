"""Backend, device and batch size choices, and weight loading errors — no GPU needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.errors import WeightsUnavailable
from tests.support.models import builtin
from workers.model import keras_runtime
from workers.model.keras_runtime import RuntimeUnavailable, detect_device

build_model = builtin().build


def test_batch_size_follows_the_model_and_the_device_unless_configured() -> None:
    spec = builtin()
    assert spec.batch_size_for("cpu") == spec.batch_sizes["cpu"] == 16
    assert spec.batch_size_for("gpu:0") == spec.batch_sizes["gpu"] == 64
    assert spec.batch_size_for("gpu:0", 24) == 24
    assert builtin("mobilenet_v3_small").batch_size_for("cpu") == 32


def test_device_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keras_runtime, "visible_gpus", lambda: [])
    assert detect_device() == "cpu"
    with pytest.raises(RuntimeUnavailable, match="sees no GPU"):
        detect_device("gpu")
    grown: list[list[str]] = []
    monkeypatch.setattr(keras_runtime, "grow_gpu_memory", grown.append)
    monkeypatch.setattr(keras_runtime, "visible_gpus", lambda: ["/physical_device:GPU:0"])
    assert detect_device() == "gpu:0"
    assert grown == [["/physical_device:GPU:0"]]  # memory growth is set before the model loads
    assert detect_device("cpu") == "cpu"
    assert len(grown) == 1


def test_the_detected_device_is_what_tensorflow_sees_on_this_machine() -> None:
    import tensorflow as tf

    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert detect_device() == ("gpu:0" if has_gpu else "cpu")


def test_missing_imagenet_weights_refuse_with_instructions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="ASYNCINFER_WEIGHTS"):
        build_model("imagenet", 0)
    with pytest.raises(WeightsUnavailable, match=r"weights_mobilenet_v3_small_224_1\.0_float\.h5"):
        builtin("mobilenet_v3_small").build("default", 0)
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
