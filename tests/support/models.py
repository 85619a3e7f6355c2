"""The built-in models as tests name them, and stored pixels of the right size."""

from __future__ import annotations

from PIL import Image

from shared.models import ModelSpec
from shared.models.catalogue import Catalogue
from shared.preprocessing import pack_pixels
from shared.queue_names import queue_name

# The job document's `model` at acceptance, for the default model.
MOBILENET_V2 = {"name": "mobilenet_v2", "version": "1"}


def builtin(ref: str = "mobilenet_v2") -> ModelSpec:
    """A built-in model's spec, found as the gateway and the workers find it (entry points)."""
    return Catalogue.discover(default_model="mobilenet_v2").resolve(ref)


def blank_pixels(spec: ModelSpec | None = None) -> bytes:
    """Stored pixels (as the gateway packs them) of a black image at the model's size."""
    size = (spec or builtin()).input.size
    return pack_pixels(Image.new("RGB", size))


# The default model's queue, where the tests' jobs wait.
MOBILENET_V2_QUEUE = queue_name("mobilenet_v2", "1")
