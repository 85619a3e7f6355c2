"""The onnxruntime runtime gives the Keras path's results, for each built-in model: same top-k,
scores within 1e-4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.config import Settings
from shared.models import ModelSpec
from shared.preprocessing import decode
from tests.support import images
from tests.support.models import builtin
from workers.model.classifier import to_model_input, warm_up
from workers.model.keras_runtime import KerasClassifier
from workers.model.onnx_runtime import OnnxClassifier, cached_onnx, export_key, load_onnx_classifier
from workers.model.weights import weights_sha256

pytestmark = pytest.mark.timeout(300)

TOLERANCE = 1e-4
TOP_K = 20
SEED = 1234


@pytest.fixture(scope="module", params=["mobilenet_v2", "mobilenet_v3_small"])
def spec(request: pytest.FixtureRequest) -> ModelSpec:
    return builtin(request.param)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asyncinfer-cache")


@pytest.fixture(scope="module")
def keras_classifier(spec: ModelSpec) -> KerasClassifier:
    model, weights = spec.build("random", SEED)
    return KerasClassifier(spec=spec, model=model, weights=weights, weights_sha256=weights_sha256(model),
                           backend="tensorflow", device="cpu", max_batch_size=8)


@pytest.fixture(scope="module")
def onnx_classifier(keras_classifier: KerasClassifier, cache_dir: Path) -> OnnxClassifier:
    settings = Settings(weights="random", random_seed=SEED, cache_dir=str(cache_dir), max_batch_size=8, device="cpu")
    return load_onnx_classifier(settings, keras_classifier.spec, keras_classifier.model, keras_classifier.weights,
                                keras_classifier.weights_sha256)


@pytest.fixture(scope="module")
def parity_batch(spec: ModelSpec) -> np.ndarray:
    return to_model_input(spec, [decode(data, spec.input) for data, _ in images.parity_set().values()])


def test_onnx_scores_equal_keras_scores_image_by_image(
    keras_classifier: KerasClassifier, onnx_classifier: OnnxClassifier, parity_batch: np.ndarray
) -> None:
    top_classes = set()
    for one in parity_batch:
        expected = keras_classifier.predict(one[None])[0]
        got = onnx_classifier.predict(one[None])[0]
        expected_top = np.argsort(-expected, kind="stable")[:TOP_K]
        assert list(np.argsort(-got, kind="stable")[:TOP_K]) == list(expected_top)
        assert np.abs(got - expected).max() <= TOLERANCE
        top_classes.add(tuple(expected_top[:3]))
    assert len(top_classes) >= 3, "the model does not tell the images apart: the comparison means nothing"


def test_onnx_scores_do_not_depend_on_the_batch(
    keras_classifier: KerasClassifier, onnx_classifier: OnnxClassifier, parity_batch: np.ndarray
) -> None:
    batched = onnx_classifier.predict(parity_batch)
    assert batched.shape == (len(parity_batch), 1000)
    assert np.abs(batched - keras_classifier.predict(parity_batch)).max() <= TOLERANCE
    singles = np.concatenate([onnx_classifier.predict(one[None]) for one in parity_batch])
    assert np.abs(batched - singles).max() <= TOLERANCE


def test_onnx_info_names_the_model_its_weights_and_the_runtime(
    onnx_classifier: OnnxClassifier, keras_classifier: KerasClassifier, spec: ModelSpec
) -> None:
    assert onnx_classifier.info == {
        "name": spec.name, "version": spec.version, "weights": "random",
        "weights_sha256": keras_classifier.weights_sha256, "backend": "onnxruntime", "device": "cpu",
    }
    # Random weights from one seed are the same in every process: so is their digest.
    assert weights_sha256(spec.build("random", SEED)[0]) == keras_classifier.weights_sha256
    assert warm_up(onnx_classifier) > 0


def test_export_is_cached_by_the_weights(keras_classifier: KerasClassifier, cache_dir: Path, spec: ModelSpec) -> None:
    path, export_s = cached_onnx(keras_classifier.model, cache_dir, spec.input.size)
    assert export_s is None, "the module's first load exported it already"
    assert path == cache_dir / "onnx" / f"{export_key(keras_classifier.model, spec.input.size)}.onnx"
    other, _ = spec.build("random", SEED + 1)
    assert weights_sha256(other) != weights_sha256(keras_classifier.model)
    assert not list((cache_dir / "onnx").glob("*.part")), "a temporary export file was left behind"
