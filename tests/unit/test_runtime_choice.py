"""Which runtime, device and thread count a worker gets from its settings — no GPU needed."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from shared.config import Settings
from shared.errors import ModelUnavailable
from shared.models import ModelSpec
from tests.support.models import builtin
from workers.model import loading, onnx_runtime
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
        load_classifier(Settings(runtime=runtime, weights="random"), builtin())


def test_intra_op_threads_default_to_one_per_core() -> None:
    assert intra_op_threads(0) == os.cpu_count()
    assert intra_op_threads(3) == 3


def test_execution_providers_use_cuda_only_when_allowed_and_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    cuda_built_in = "CUDAExecutionProvider" in ort.get_available_providers()
    assert execution_providers("auto")[0] == ("CUDAExecutionProvider" if cuda_built_in else "CPUExecutionProvider")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert execution_providers("gpu") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert execution_providers("auto") == ["CPUExecutionProvider"]


def test_a_gpu_demand_without_cuda_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(onnx_runtime, "cached_onnx", lambda model, cache_dir, size: (tmp_path / "m.onnx", None))
    with pytest.raises(RuntimeUnavailable, match="no CUDA provider"):
        onnx_runtime.load_onnx_classifier(Settings(device="gpu"), builtin(), object(), "random", "0" * 64)


def test_the_worker_loads_the_runtime_its_settings_name(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[str] = []

    def fake_onnx(settings: Settings, spec: ModelSpec, keras_model: object, weights: str,
                  sha256: str) -> OnnxClassifier:
        chosen.append("onnxruntime")
        return OnnxClassifier(spec=spec, session=None, weights=weights, weights_sha256=sha256, device="cpu",
                              max_batch_size=4)

    spec = replace(builtin(), build=lambda weights, seed: (object(), weights))
    monkeypatch.setattr(onnx_runtime, "load_onnx_classifier", fake_onnx)
    monkeypatch.setattr(loading, "weights_sha256", lambda model: "0" * 64)
    monkeypatch.setattr(loading, "warm_up", lambda classifier: 0.0)

    onnx = load_classifier(Settings(runtime="onnxruntime", weights="random"), spec)
    assert chosen == ["onnxruntime"] and onnx.info["backend"] == "onnxruntime"
    keras = load_classifier(Settings(runtime="keras", weights="random", max_batch_size=0), spec)
    assert isinstance(keras, KerasClassifier)
    assert keras.info["backend"] == "tensorflow"
    assert keras.max_batch_size == spec.batch_size_for(detect_device())


def test_a_runtime_the_model_does_not_declare_is_refused() -> None:
    keras_only = replace(builtin(), runtimes=("keras",))
    with pytest.raises(ModelUnavailable, match="runs on keras, not ASYNCINFER_RUNTIME=onnxruntime"):
        load_classifier(Settings(runtime="onnxruntime", weights="random"), keras_only)
