"""Load the worker's model once, for the runtime its settings name, and warm it up."""

from __future__ import annotations

import logging

from shared.config import Settings
from workers.model.classifier import Classifier, batch_size_for, warm_up
from workers.model.keras_runtime import KerasClassifier, detect_device, limit_tensorflow_threads, select_backend
from workers.model.weights import build_model

log = logging.getLogger(__name__)


def load_classifier(settings: Settings) -> Classifier:
    """The model for `settings.runtime`, warmed up. The ONNX runtime starts from the same Keras
    weights, so both runtimes give the same scores (within 1e-4)."""
    backend = select_backend()
    limit_tensorflow_threads(settings.intra_op_threads)
    model, weights = build_model(settings.weights, settings.random_seed)
    classifier: Classifier
    if settings.runtime == "onnxruntime":
        from workers.model.onnx_runtime import load_onnx_classifier

        classifier = load_onnx_classifier(settings, model, weights)
    else:
        device = detect_device(settings.device)
        classifier = KerasClassifier(
            model=model,
            weights=weights,
            backend=backend,
            device=device,
            max_batch_size=batch_size_for(device, settings.max_batch_size),
        )
    info = classifier.info
    log.info(
        "model ready: %s runtime on %s, batches up to %d, %.1fs warm-up",
        info["backend"], info["device"], classifier.max_batch_size, warm_up(classifier),
    )
    return classifier
