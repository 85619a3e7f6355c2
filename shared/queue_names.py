"""The name of each model version's queue, without the queue's machinery (shared/queue.py)."""

from shared.constants import INFER_QUEUE_PREFIX


def queue_name(model: str, version: str) -> str:
    """`asyncinfer.infer.<name>.<version>`: model names hold no dot, so the name is unambiguous."""
    return f"{INFER_QUEUE_PREFIX}{model}.{version}"
