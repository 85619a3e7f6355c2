"""A model declared by a manifest file: `<dir>/<anything>.toml` in a directory of
ASYNCINFER_MODEL_DIRS, with the saved Keras model and the labels beside it. The second way to add
a model, without a Python package:

    name = "tiny_cnn"
    version = "1"
    description = "…"
    runtimes = ["keras", "onnxruntime"]      # optional; both by default
    [input]
    width = 96
    height = 96
    resize = "bilinear"                      # bilinear | bicubic | nearest
    normalisation = "zero_to_one"            # minus_one_to_one | zero_to_one | raw
    [weights]
    file = "tiny_cnn.keras"                  # a whole saved Keras model, relative to the manifest
    [labels]
    file = "labels.txt"                      # one label per line, in the order of the outputs
    [top_k]
    default = 3
    max = 10
    [batch_sizes]
    cpu = 16
    gpu = 64
    [panel]                                  # optional; none: the portal's generic panel
    file = "panel.js"                        # an ES module beside the manifest (its directory is served)
    # url = "https://team.example.com/panel.js"   # or at the team's origin, if ASYNCINFER_PANEL_ORIGINS has it
"""

from __future__ import annotations

import tomllib
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from shared.errors import WeightsUnavailable
from shared.models.spec import InputSpec, ModelSpec


class ManifestInvalid(ValueError):
    pass


def _labels(path: Path) -> tuple[str, ...]:
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def _missing(model_file: Path, weights: str) -> str | None:
    source = model_file if weights in ("default", "imagenet", "random") else Path(weights)
    return None if source.is_file() else f"model file {source}: no such file"


def _build(model_file: Path, weights: str, seed: int) -> tuple[Any, str]:
    """The saved model; `random` keeps its architecture and draws new weights from `seed`."""
    import keras

    from shared.models.random_weights import randomise_weights

    missing = _missing(model_file, weights)
    if missing:
        raise WeightsUnavailable(missing)
    source = model_file if weights in ("default", "imagenet", "random") else Path(weights)
    try:
        model = keras.saving.load_model(source, compile=False)
    except (ValueError, OSError) as e:
        raise WeightsUnavailable(f"model file {source}: cannot load: {e}") from e
    if weights == "random":
        randomise_weights(model, seed)
        return model, "random"
    return model, source.name


def _panel(manifest: Path, declared: dict[str, str]) -> str:
    if "url" in declared:
        return str(declared["url"])
    return str((manifest.parent / declared["file"]).resolve()) if "file" in declared else ""


def read_manifest(path: Path) -> ModelSpec:
    try:
        data = tomllib.loads(path.read_text())
        model_file = path.parent / data["weights"]["file"]
        labels_file = path.parent / data["labels"]["file"]
        top_k = data.get("top_k", {})
        return ModelSpec(
            name=data["name"],
            version=str(data["version"]),
            input=InputSpec(**data["input"]),
            build=partial(_build, model_file),
            weights_missing=partial(_missing, model_file),
            labels=lru_cache(maxsize=1)(partial(_labels, labels_file)),
            task=data.get("task", "image-classification"),
            runtimes=tuple(data.get("runtimes", ("keras", "onnxruntime"))),
            weights=model_file.name,
            default_top_k=int(top_k.get("default", 5)),
            max_top_k=int(top_k.get("max", 20)),
            batch_sizes={"cpu": 16, "gpu": 64, **data.get("batch_sizes", {})},
            description=data.get("description", ""),
            source=f"manifest {path}",
            panel=_panel(path, data.get("panel", {})),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise ManifestInvalid(f"{path}: {detail}") from e
