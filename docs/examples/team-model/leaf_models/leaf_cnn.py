"""leaf_cnn: three classes at 72×72, bicubic, pixels scaled to [0, 1], decoded by the worker.

Its input is declared `gateway_preprocessing=False`: the gateway stores the upload as it came and the
worker decodes it, as a model whose preprocessing the gateway cannot do would need. The network is
defined here; trained weights come from a file (ASYNCINFER_WEIGHTS=/path/to/leaf_cnn.keras), and tests
use `random` weights drawn from a seed.
"""

from __future__ import annotations

from typing import Any

from shared.models import InputSpec, ModelSpec

LABELS = ("healthy", "rust", "blight")
INPUT = InputSpec(72, 72, resize="bicubic", normalisation="zero_to_one", gateway_preprocessing=False)


def weights_missing(weights: str) -> str | None:
    if weights in ("default", "imagenet"):
        return ("leaf_cnn ships no trained weights: set ASYNCINFER_WEIGHTS to its .keras file "
                "(or to random, for tests)")
    return None


def build(weights: str, seed: int) -> tuple[Any, str]:
    import keras

    from shared.models.random_weights import randomise_weights

    if weights != "random":
        return keras.saving.load_model(weights), weights
    # Named layers: a weight's path (and so the weights' digest in every job) must not depend on how many
    # models the process built before this one.
    inputs = keras.Input((INPUT.height, INPUT.width, 3), name="pixels")
    hidden = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv1")(inputs)
    hidden = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(hidden)
    hidden = keras.layers.GlobalAveragePooling2D(name="pool")(hidden)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="scores")(hidden)
    model = keras.Model(inputs, outputs, name="leaf_cnn")
    randomise_weights(model, seed)
    return model, "random"


spec = ModelSpec(name="leaf_cnn", version="1", input=INPUT, build=build, labels=lambda: LABELS,
                 weights_missing=weights_missing, weights="default", runtimes=("keras",), default_top_k=1,
                 max_top_k=3, batch_sizes={"cpu": 8, "gpu": 32},
                 description="example plugin: leaf disease, three classes")
