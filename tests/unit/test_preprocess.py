"""Preprocessing as a model's input declares it: orientation, alpha, first frame, draft decode,
resize, normalisation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.models import InputSpec
from shared.preprocessing import decode as decode_for
from tests.support import images
from tests.support.models import builtin
from workers.model.classifier import to_model_input
from workers.scores import top_k

MOBILENET_V2 = builtin()


def decode(data: bytes) -> Image.Image:
    return decode_for(data, MOBILENET_V2.input)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype="float32") - np.asarray(b, dtype="float32")).mean())


def test_exif_orientation_is_applied() -> None:
    rotated = decode(images.exif_rotated_jpeg())
    upright = images.picture(400, 240, seed=3).rotate(-90, expand=True).resize((224, 224))
    sideways = images.picture(400, 240, seed=3).resize((224, 224))
    assert rotated.size == (224, 224)
    assert mean_abs_diff(rotated, upright) < 12 < mean_abs_diff(rotated, sideways)


def test_alpha_is_composited_over_white() -> None:
    clear = images.encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "PNG")
    half = images.encode(Image.new("RGBA", (64, 64), (0, 0, 0, 128)), "PNG")
    assert np.asarray(decode(clear)).min() == 255
    assert abs(int(np.asarray(decode(half)).mean()) - 127) <= 1


def test_gif_uses_the_first_frame_and_grayscale_becomes_rgb() -> None:
    first = images.picture(200, 160, 5).convert("P").convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    assert mean_abs_diff(decode(images.gif()), first) < 1
    assert decode(images.grayscale_png()).mode == "RGB"


def test_jpeg_draft_decode_stays_close_to_a_full_decode() -> None:
    data = images.jpeg(1920, 1080, seed=7)
    full = Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    assert mean_abs_diff(decode(data), full) < 2  # docs/contract.md: a mean difference under 2/255


def test_mobilenet_v2_input_is_scaled_to_minus_one_one() -> None:
    batch = to_model_input(MOBILENET_V2, [Image.new("RGB", (224, 224), (0, 0, 0)),
                                          Image.new("RGB", (224, 224), (255, 255, 255))])
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.float32
    assert batch[0].max() == -1.0 and batch[1].min() == 1.0


@pytest.mark.parametrize(("normalisation", "black", "white"),
                         [("minus_one_to_one", -1.0, 1.0), ("zero_to_one", 0.0, 1.0), ("raw", 0.0, 255.0)])
def test_each_normalisation_maps_black_and_white(normalisation: str, black: float, white: float) -> None:
    spec = InputSpec(8, 8, normalisation=normalisation)  # type: ignore[arg-type]
    batch = spec.normalise(np.stack([np.zeros((8, 8, 3), "uint8"), np.full((8, 8, 3), 255, "uint8")]))
    assert batch.dtype == np.float32 and (batch[0].min(), batch[1].max()) == (black, white)


def test_mobilenet_v3_small_takes_raw_pixels_resized_bicubic() -> None:
    spec = builtin("mobilenet_v3_small")
    assert (spec.input.resize, spec.input.normalisation) == ("bicubic", "raw")
    data = images.jpeg(640, 480, seed=2)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    assert mean_abs_diff(decode_for(data, spec.input), full.resize((224, 224), Image.Resampling.BICUBIC)) < 2


def test_top_k_names_the_best_classes_in_order() -> None:
    scores = np.zeros(1000, dtype="float32")
    scores[[281, 7, 999]] = [0.5, 0.3, 0.2]
    labels = MOBILENET_V2.labels()
    best = top_k(scores, 2, labels)
    assert best == [{"label": "tabby", "class_id": 281, "score": 0.5},
                    {"label": "cock", "class_id": 7, "score": 0.30000001192092896}]
    assert len(labels) == 1000 and builtin("mobilenet_v3_small").labels() == labels
