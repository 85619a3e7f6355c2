"""The built-in models as tests name them, stored pixels of the right size, and a team's model
written as a manifest directory."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import redis
from PIL import Image

from shared.jobs import new_job
from shared.models import ModelSpec
from shared.models.catalogue import Catalogue
from shared.preprocessing import pack_pixels
from shared.store import JobStore
from shared.work_in_redis import count_work_by_model

# The job document's `model` at acceptance, for the default model.
MOBILENET_V2 = {"name": "mobilenet_v2", "version": "1"}


def input_info(sha256: str = "0" * 64) -> dict[str, Any]:
    """A job document's `input`, as the gateway records an 8 x 8 PNG."""
    return {"content_type": "image/png", "bytes": 1, "sha256": sha256, "width": 8, "height": 8}


INPUT_INFO = input_info()


def builtin(ref: str = "mobilenet_v2") -> ModelSpec:
    """A built-in model's spec, found as the gateway and the workers find it (entry points)."""
    return Catalogue.discover(default_model="mobilenet_v2").resolve(ref)


def blank_pixels(spec: ModelSpec | None = None) -> bytes:
    """Stored pixels (as the gateway packs them) of a black image at the model's size."""
    size = (spec or builtin()).input.size
    return pack_pixels(Image.new("RGB", size))


def queued_job(store: JobStore, image: bytes | None = None, sha256: str = "0" * 64) -> str:
    """A job of the default model stored as the gateway stores it, with `image` (blank pixels unless given)."""
    doc, _ = store.create_job(new_job(model=MOBILENET_V2, tenant="t", input_info=input_info(sha256), top_k=1),
                              blank_pixels() if image is None else image)
    return str(doc["id"])


def waiting_jobs(client: redis.Redis, spec: ModelSpec | None = None) -> int:
    """Messages waiting in all of a model's lanes (the default model's unless named)."""
    spec = spec or builtin()
    return count_work_by_model(client, {spec.ref: spec.queues})[spec.ref].waiting


def drop_waiting_jobs(client: redis.Redis, spec: ModelSpec | None = None) -> None:
    """Delete every lane of a model's queue, as a Redis crash can lose the last writes."""
    client.delete(*(spec or builtin()).queues)


def write_manifest_model(directory: Path, manifest: str, labels: list[str], files: dict[str, str] | None = None) -> Path:
    """A team's model as a manifest: a small saved Keras model (input and labels from the manifest),
    its labels, the manifest and any other `files` (a panel) beside them, in `directory/<name>/`.
    Written elsewhere first and moved in, as a deployment would, so a gateway never reads half of it."""
    declared = tomllib.loads(manifest)
    staging = directory.parent / f"staging-{declared['name']}"
    staging.mkdir()
    save_small_keras_model(staging / declared["weights"]["file"], declared, len(labels))
    (staging / declared["labels"]["file"]).write_text("\n".join(labels) + "\n")
    for name, text in (files or {}).items():
        (staging / name).write_text(text)
    (staging / f"{declared['name']}.toml").write_text(manifest)
    target = directory / declared["name"]
    staging.rename(target)
    return target / f"{declared['name']}.toml"


def save_small_keras_model(path: Path, declared: dict[str, Any], classes: int, filters: int = 8) -> None:
    """A small saved Keras model of the manifest's input size; `filters` changes its architecture, so a
    second version gets weights of its own even where both draw random weights from the same seed."""
    import keras

    inputs = keras.Input((declared["input"]["height"], declared["input"]["width"], 3))
    hidden = keras.layers.Conv2D(filters, 3, strides=2, activation="relu")(inputs)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(classes, activation="softmax")(hidden)
    keras.Model(inputs, outputs).save(path)


def write_unserved_model(directory: Path, name: str, panel: str, files: dict[str, str] | None = None) -> Path:
    """A manifest for a gateway only, at `directory/<name>/`: no worker runs it, so its model file need
    not exist. `panel` is the manifest's `[panel]` line; `files` are written beside it."""
    model_dir = directory / name
    model_dir.mkdir(parents=True)
    (model_dir / "labels.txt").write_text("a\nb\n")
    for file_name, text in (files or {}).items():
        (model_dir / file_name).write_text(text)
    manifest = model_dir / f"{name}.toml"
    manifest.write_text(f"""
name = "{name}"
version = "1"
description = "{name.replace("_", " ")}"
[input]
width = 32
height = 32
[weights]
file = "{name}.keras"
[labels]
file = "labels.txt"
[panel]
{panel}
""")
    return manifest
