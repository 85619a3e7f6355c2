"""What a model declares, in one place: name, version, task, input, runtimes, weights, labels,
`top_k` bounds and batch sizes. Plain data; building the network is a function the worker calls."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.constants import MAX_TOP_K
from shared.errors import BadRequest
from shared.queue_names import model_queues, queue_name

NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
VERSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}"
_REF = re.compile(rf"({NAME_PATTERN})(?:@({VERSION_PATTERN}))?")
MODEL_REF_PATTERN = rf"^{NAME_PATTERN}(@{VERSION_PATTERN})?$"

Task = Literal["image-classification"]
Runtime = Literal["keras", "onnxruntime"]
# How 0..255 pixels become the network's input:
#   minus_one_to_one  x / 127.5 - 1 (MobileNetV2, Inception)
#   zero_to_one       x / 255
#   raw               x as float (the network rescales inside, as MobileNetV3 and EfficientNet do)
Normalisation = Literal["minus_one_to_one", "zero_to_one", "raw"]
Resize = Literal["bilinear", "bicubic", "nearest"]

# Without loading anything: what is missing for the weights the setting names (`default`,
# `random`, a file), as a message saying how to provide it; None when nothing is.
WeightsCheck = Callable[[str], str | None]

# Builds the Keras model: (weights: `imagenet`/`random`/a file path, seed) → (model, how its
# weights are described in job documents).
Builder = Callable[[str, int], tuple[Any, str]]


@dataclass(frozen=True)
class InputSpec:
    """The pixels a model takes: resized to width × height, ignoring aspect ratio, in RGB."""

    width: int
    height: int
    resize: Resize = "bilinear"
    normalisation: Normalisation = "minus_one_to_one"
    colour: Literal["rgb"] = "rgb"  # alpha is composed over white; grey is expanded to RGB
    # False: the gateway stores the upload and the worker decodes it (for models whose
    # preprocessing cannot be expressed as a resize to fixed RGB pixels).
    gateway_preprocessing: bool = True

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """A stack of uint8 RGB pixels → the network's float32 input (a new array)."""
        return self.normalise_in_place(np.array(pixels, dtype="float32"))

    def normalise_in_place(self, batch: np.ndarray) -> np.ndarray:
        """Normalise a float32 stack where it lies: no temporaries (a batch of 16 at 224×224 is 9.6 MB
        of floats, and the two a plain `batch / 127.5 - 1` makes cost the worker 0.4 CPU ms per image)."""
        if self.normalisation == "minus_one_to_one":
            batch *= np.float32(1 / 127.5)
            batch -= np.float32(1.0)
        elif self.normalisation == "zero_to_one":
            batch *= np.float32(1 / 255)
        return batch

    def as_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "resize": self.resize,
                "normalisation": self.normalisation, "colour": self.colour,
                "preprocessed_at": "gateway" if self.gateway_preprocessing else "worker"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    input: InputSpec
    build: Builder = field(compare=False, repr=False)
    labels: Callable[[], tuple[str, ...]] = field(compare=False, repr=False)
    weights_missing: WeightsCheck = field(default=lambda weights: None, compare=False, repr=False)
    task: Task = "image-classification"
    runtimes: tuple[Runtime, ...] = ("keras", "onnxruntime")
    weights: str = "imagenet"  # the default source: `imagenet` (the framework's cache) or a file
    default_top_k: int = 5
    max_top_k: int = 20
    # The largest batch per device kind; ASYNCINFER_MAX_BATCH_SIZE overrides both.
    batch_sizes: dict[str, int] = field(default_factory=lambda: {"cpu": 16, "gpu": 64}, compare=False)
    description: str = ""
    source: str = "built-in"  # where the catalogue found it: built-in, an entry point, a manifest
    # The portal's panel for it (shared/models/panel.py): an ES module file shipped with the plugin
    # (an absolute path; the gateway serves its directory's scripts), or an http(s) URL. Empty: the generic panel.
    panel: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(NAME_PATTERN, self.name):
            raise ValueError(f"model name {self.name!r}: lower-case letters, digits, _ and -, at most 64")
        if not re.fullmatch(VERSION_PATTERN, self.version):
            raise ValueError(f"model {self.name} version {self.version!r}: letters, digits, _ and -, at most 32")
        if not 1 <= self.default_top_k <= self.max_top_k <= MAX_TOP_K:
            raise ValueError(f"model {self.ref}: default_top_k must be from 1 to max_top_k ({self.max_top_k}), "
                             f"and max_top_k at most {MAX_TOP_K}")
        if self.panel and not re.fullmatch(r"https?://[^/\s]+/\S*", self.panel) and not (
                self.panel.endswith(".js") and Path(self.panel).is_absolute()):
            raise ValueError(f"model {self.ref}: panel {self.panel!r} is neither an http(s) URL nor a .js file's "
                             "absolute path")
        if not set(self.runtimes) <= {"keras", "onnxruntime"} or not self.runtimes:
            raise ValueError(f"model {self.ref}: runtimes are keras and/or onnxruntime, not {self.runtimes}")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def queues(self) -> tuple[str, ...]:
        """Its lanes, one per share of tenants (shared/queue_names.py)."""
        return model_queues(self.name, self.version)

    def queue_for(self, tenant: str) -> str:
        return queue_name(self.name, self.version, tenant)

    def batch_size_for(self, device: str, configured: int = 0) -> int:
        """The configured maximum batch size, or the model's own for the device."""
        if configured > 0:
            return configured
        return self.batch_sizes["gpu" if device.startswith("gpu") else "cpu"]


@dataclass(frozen=True)
class ModelRef:
    """`name` or `name@version`, as a client or a worker's --model names a model."""

    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        found = _REF.fullmatch(text.strip())
        if found is None:
            raise BadRequest(f"model {text!r}: use a name or name@version, e.g. mobilenet_v2@1")
        return cls(found.group(1), found.group(2))

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"
