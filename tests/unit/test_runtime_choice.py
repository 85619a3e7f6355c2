"""Which runtime, device and thread count a worker gets from its settings — no GPU needed."""

from __future__ import annotations

import os

import pytest

from shared.config import Settings
from workers.model import loading, onnx_runtime
from workers.model.classifier import batch_size_for
from workers.model.keras_runtime import KerasClassifier, RuntimeUnavailable, detect_device
from workers.model.loading import load_classifier
from workers.model.onnx_runtime import OnnxClassifier, execution_providers, intra_op_threads


def test_runtime_defaults_to_keras_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().runtime == "keras"
    monkeypatch.setenv("ASYNCINFER_RUNTIME", "onnxruntime")
    monkeypatch.setenv("ASYNCINFER_CACHE_DIR", "/tmp/somewhere")
    settings = Settings()
    assert (settings.runtime, settings.cache_dir) == ("onnxruntime", "/tmp/somewhere")
    monkeypatch.setenv("ASYNCINFER_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="runtime"):
        Settings()


@pytest.mark.parametrize("runtime", ["keras", "onnxruntime"])
def test_a_keras_backend_other_than_tensorflow_is_refused(monkeypatch: pytest.MonkeyPatch, runtime: str) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(RuntimeUnavailable, match="KERAS_BACKEND=jax: asyncinfer runs Keras on tensorflow only"):
        load_classifier(Settings(runtime=runtime, weights="random"))


def test_intra_op_threads_default_to_one_per_core() -> None:
    assert intra_op_threads(0) == os.cpu_count()
    assert intra_op_threads(3) == 3


def test_execution_providers_use_cuda_only_when_wanted_and_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    assert execution_providers("auto") == ["CPUExecutionProvider"]
    cuda_built_in = "CUDAExecutionProvider" in ort.get_available_providers()
    assert execution_providers("gpu")[0] == ("CUDAExecutionProvider" if cuda_built_in else "CPUExecutionProvider")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert execution_providers("gpu")[0] == "CUDAExecutionProvider"
    assert execution_providers("auto")[0] == "CPUExecutionProvider"  # "auto" is not a device name
    assert execution_providers("cpu") == ["CPUExecutionProvider"]


def test_a_gpu_demand_without_cuda_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(onnx_runtime, "cached_onnx", lambda model, cache_dir: (tmp_path / "m.onnx", None))
    with pytest.raises(RuntimeUnavailable, match="no CUDA provider"):
        onnx_runtime.load_onnx_classifier(Settings(device="gpu"), object(), "random")


def test_the_worker_loads_the_runtime_its_settings_name(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[str] = []

    def fake_onnx(settings: Settings, keras_model: object, weights: str) -> OnnxClassifier:
        chosen.append("onnxruntime")
        return OnnxClassifier(session=None, weights=weights, device="cpu", max_batch_size=4)

    monkeypatch.setattr(onnx_runtime, "load_onnx_classifier", fake_onnx)
    monkeypatch.setattr(loading, "build_model", lambda weights, seed: (object(), weights))
    monkeypatch.setattr(loading, "warm_up", lambda classifier: 0.0)

    onnx = load_classifier(Settings(runtime="onnxruntime", weights="random"))
    assert chosen == ["onnxruntime"] and onnx.info["backend"] == "onnxruntime"
    keras = load_classifier(Settings(runtime="keras", weights="random", max_batch_size=0))
    assert isinstance(keras, KerasClassifier)
    assert keras.info["backend"] == "tensorflow"
    assert keras.max_batch_size == batch_size_for(detect_device(), 0)
