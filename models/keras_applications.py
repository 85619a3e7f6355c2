"""What the built-in Keras Applications models share: ImageNet labels and their weights files in
Keras' cache (or explicit random weights, shared/models/random_weights.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from shared.errors import WeightsUnavailable
from shared.models.random_weights import randomise_weights


@lru_cache
def imagenet_labels() -> tuple[str, ...]:
    """Index → label, in the order of the models' output (Keras' `decode_predictions` names);
    shipped with the package, since they cannot be downloaded."""
    text = resources.files("models").joinpath("imagenet_labels.json").read_text()
    return tuple(name for _wnid, name in json.loads(text))


def keras_cache_path(filename: str) -> Path:
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "models" / filename


def missing_weights(imagenet_file: str, weights: str) -> str | None:
    """What `build_application` would miss for `weights`, without loading anything."""
    if weights in ("default", "imagenet"):
        path = keras_cache_path(imagenet_file)
        if not path.is_file():
            return (f"ImageNet weights not found at {path}: copy {imagenet_file} there (or set KERAS_HOME), set "
                    "ASYNCINFER_WEIGHTS=/path/to/weights.h5, or ASYNCINFER_WEIGHTS=random to try the pipeline with "
                    "random weights")
    elif weights != "random" and not Path(weights).is_file():
        return f"ASYNCINFER_WEIGHTS={weights}: no such file"
    return None


def build_application(construct: Callable[[str | None], Any], imagenet_file: str, weights: str,
                      seed: int) -> tuple[Any, str]:
    """A Keras Applications model (`construct(weights_path_or_None)`) and how its weights are
    described in job documents: `imagenet` from Keras' cache, `random`, or a file."""
    if weights == "random":
        model = construct(None)
        randomise_weights(model, seed)
        return model, "random"
    missing = missing_weights(imagenet_file, weights)
    if missing:
        raise WeightsUnavailable(missing)
    if weights in ("default", "imagenet"):
        return construct(str(keras_cache_path(imagenet_file))), "imagenet"
    try:
        return construct(weights), weights
    except (ValueError, OSError) as e:
        raise WeightsUnavailable(f"ASYNCINFER_WEIGHTS={weights}: cannot load: {e}") from e
