"""Load the worker's model once, for the runtime its settings name, and warm it up."""

from __future__ import annotations

import logging

from shared.config import Settings
from shared.errors import ModelUnavailable
from shared.models import ModelSpec
from workers.model.batch_sweep import sweep_batch_size
from workers.model.classifier import Classifier, warm_up
from workers.model.keras_runtime import (
    KerasClassifier,
    detect_device,
    limit_tensorflow_threads,
    select_backend,
    use_mixed_precision,
    use_xla,
)
from workers.model.weights import weights_sha256

log = logging.getLogger(__name__)


def load_classifier(settings: Settings, spec: ModelSpec) -> Classifier:
    """`spec`'s model for `settings.runtime`, warmed up. The ONNX runtime starts from the same Keras
    weights, so both runtimes give the same scores (within 1e-4)."""
    if settings.runtime not in spec.runtimes:
        raise ModelUnavailable(f"model {spec.ref} runs on {', '.join(spec.runtimes)}, not ASYNCINFER_RUNTIME="
                               f"{settings.runtime}")
    backend = select_backend()
    limit_tensorflow_threads(settings.intra_op_threads)
    # Before the model is built: TensorFlow's GPU memory growth and the precision policy.
    device = detect_device(settings.device) if settings.runtime == "keras" else ""
    use_mixed_precision(settings.mixed_precision, device)
    model, weights = spec.build(settings.weights, settings.random_seed)
    sha256 = weights_sha256(model)
    classifier: Classifier
    if settings.runtime == "onnxruntime":
        from workers.model.onnx_runtime import load_onnx_classifier

        classifier = load_onnx_classifier(settings, spec, model, weights, sha256)
    else:
        use_xla(model, settings.xla)
        classifier = KerasClassifier(
            spec=spec,
            model=model,
            weights=weights,
            weights_sha256=sha256,
            backend=backend,
            device=device,
            max_batch_size=spec.batch_size_for(device, settings.max_batch_size),
        )
    if settings.batch_size_sweep and settings.max_batch_size == 0:
        sweep = sweep_batch_size(classifier, settings.runtime, settings.cache_dir)
        log.info("batch size %d by measurement%s: %s", sweep.batch_size, " (cached)" if sweep.from_cache else "",
                 ", ".join(f"{size}: {rate:.0f} images/s" for size, rate in sweep.images_per_s.items()))
        classifier.max_batch_size = sweep.batch_size
    info = classifier.info
    log.info(
        "model %s ready: %s runtime on %s, weights %s (sha256 %s…), batches up to %d, %.1fs warm-up",
        spec.ref, info["backend"], info["device"], info["weights"], sha256[:12], classifier.max_batch_size,
        warm_up(classifier),
    )
    return classifier
