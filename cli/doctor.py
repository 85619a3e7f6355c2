"""`asyncinfer doctor`: what a worker would do on this machine, in one command: the devices
found, the runtime and its providers, images/s per batch size measured now, and the batch size
the worker would use."""

from __future__ import annotations

from pydantic import ValidationError

from shared.config import Settings, describe_validation_error
from shared.errors import SettingsInvalid


def devices_found() -> tuple[list[str], list[str]]:
    """TensorFlow's GPUs and ONNX Runtime's execution providers on this installation."""
    import onnxruntime as ort

    from workers.model.keras_runtime import select_backend, visible_gpus

    select_backend()
    return [str(getattr(gpu, "name", gpu)) for gpu in visible_gpus()], list(ort.get_available_providers())


def run_doctor(settings: Settings, overrides: dict[str, object], *, largest: int = 0, repeats: int = 3) -> int:
    try:
        settings = settings.with_overrides(**overrides)
    except ValidationError as e:
        raise SettingsInvalid(describe_validation_error(e)) from None
    from workers.model.batch_sweep import sweep_batch_size
    from workers.model.loading import load_classifier

    spec = settings.catalogue().worker_model(settings.model)
    gpus, providers = devices_found()
    print(f"GPUs (TensorFlow): {', '.join(gpus) or 'none'}")
    print(f"ONNX Runtime providers: {', '.join(providers)}")
    classifier = load_classifier(settings.with_overrides(batch_size_sweep=False), spec)
    info = classifier.info
    print(f"model {spec.ref}: runtime {settings.runtime} ({info['backend']}), device {info['device']}, "
          f"weights {info['weights']} (sha256 {info['weights_sha256'][:12]}…)")
    sweep = sweep_batch_size(classifier, settings.runtime, settings.cache_dir, largest=largest, repeats=repeats,
                             refresh=True)
    for size, rate in sweep.images_per_s.items():
        print(f"  batch {size:>4}: {rate:8.1f} images/s")
    print(f"measured best batch size: {sweep.batch_size} (the smallest within 95% of the best throughput)")
    if settings.max_batch_size > 0:
        used, why = settings.max_batch_size, "ASYNCINFER_MAX_BATCH_SIZE"
    elif settings.batch_size_sweep:
        used, why = sweep.batch_size, "measured (ASYNCINFER_BATCH_SIZE_SWEEP=true)"
    else:
        used, why = classifier.max_batch_size, f"the model's own for {info['device']}; "\
            "ASYNCINFER_BATCH_SIZE_SWEEP=true would use the measured one"
    print(f"the worker would use batch size {used}: {why}")
    return 0
