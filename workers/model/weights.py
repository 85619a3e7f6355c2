"""What identifies a model's weights: one digest of every value, recorded in each job document."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def weights_sha256(model: Any, salt: str = "") -> str:
    """A digest of every weight (path, shape, dtype and values), after `salt` when given."""
    digest = hashlib.sha256(salt.encode())
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy()))
        digest.update(f"{weight.path}|{value.shape}|{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()
