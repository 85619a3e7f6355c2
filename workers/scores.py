"""Reading a model's scores: the k best classes with their labels."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int, labels: tuple[str, ...]) -> list[dict[str, object]]:
    """The k best classes, best first."""
    best = np.argsort(-scores, kind="stable")[:k]
    return [
        {"label": labels[i], "class_id": int(i), "score": float(scores[i])} for i in best
    ]
