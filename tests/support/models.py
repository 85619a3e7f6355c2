"""The built-in models as tests name them, and stored pixels of the right size."""

from __future__ import annotations

import redis
from PIL import Image

from shared.models import ModelSpec
from shared.models.catalogue import Catalogue
from shared.preprocessing import pack_pixels
from shared.work_in_redis import count_work_by_model

# The job document's `model` at acceptance, for the default model.
MOBILENET_V2 = {"name": "mobilenet_v2", "version": "1"}


def builtin(ref: str = "mobilenet_v2") -> ModelSpec:
    """A built-in model's spec, found as the gateway and the workers find it (entry points)."""
    return Catalogue.discover(default_model="mobilenet_v2").resolve(ref)


def blank_pixels(spec: ModelSpec | None = None) -> bytes:
    """Stored pixels (as the gateway packs them) of a black image at the model's size."""
    size = (spec or builtin()).input.size
    return pack_pixels(Image.new("RGB", size))


def waiting_jobs(client: redis.Redis, spec: ModelSpec | None = None) -> int:
    """Messages waiting in all of a model's lanes (the default model's unless named)."""
    spec = spec or builtin()
    return count_work_by_model(client, {spec.ref: spec.queues})[spec.ref].waiting


def drop_waiting_jobs(client: redis.Redis, spec: ModelSpec | None = None) -> None:
    """Delete every lane of a model's queue, as a Redis crash can lose the last writes."""
    client.delete(*(spec or builtin()).queues)
