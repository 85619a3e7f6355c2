"""The 1,000 ImageNet class labels, shipped with the package (they cannot be downloaded)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache
def imagenet_labels() -> tuple[str, ...]:
    """Index → label, in the order of the model's output (Keras' `decode_predictions` names)."""
    text = resources.files("workers").joinpath("imagenet_labels.json").read_text()
    return tuple(name for _wnid, name in json.loads(text))
