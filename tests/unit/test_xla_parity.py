"""XLA for Keras (ASYNCINFER_XLA=true) on the CPU: the worker's classifier gives the scores of a
direct model call, within 1e-4, with the same top 5."""

from __future__ import annotations

import numpy as np
import pytest

from shared.config import Settings
from shared.preprocessing import decode
from tests.support import images
from tests.support.models import builtin
from workers.model.classifier import to_model_input
from workers.model.keras_runtime import KerasClassifier, RuntimeUnavailable, use_mixed_precision
from workers.model.loading import load_classifier

pytestmark = pytest.mark.timeout(300)

TOLERANCE = 1e-4
SEED = 1234


def test_xla_scores_equal_a_direct_model_call(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = builtin("mobilenet_v3_small")
    settings = Settings(weights="random", random_seed=SEED, device="cpu", runtime="keras", xla=True,
                        max_batch_size=4, cache_dir=str(tmp_path))
    classifier = load_classifier(settings, spec)
    assert isinstance(classifier, KerasClassifier) and classifier.model.jit_compile is True
    direct, _ = spec.build("random", SEED)
    batch = to_model_input(spec, [decode(data, spec.input) for data, _ in images.parity_set().values()])[:4]
    expected = np.asarray(direct(batch, training=False))
    got = classifier.predict(batch)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= TOLERANCE
    for one, want in zip(got, expected, strict=True):
        assert list(np.argsort(-one, kind="stable")[:5]) == list(np.argsort(-want, kind="stable")[:5])


def test_mixed_precision_is_refused_on_the_cpu() -> None:
    use_mixed_precision(False, "cpu")
    with pytest.raises(RuntimeUnavailable, match="ASYNCINFER_MIXED_PRECISION=true needs a GPU"):
        use_mixed_precision(True, "cpu")
