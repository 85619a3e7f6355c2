"""Pixels prepared by the gateway are exactly what a worker would decode from the upload."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from PIL import Image

from api.admission.submitter import Submitter, Upload
from api.drain_rate import DrainRate
from shared.config import Settings
from shared.models import InputSpec, ModelSpec
from shared.preprocessing import decode, model_pixels, pack_pixels, packed_size
from tests.support import images
from tests.support.models import builtin

MODELS = ["mobilenet_v2", "mobilenet_v3_small"]


def gateway_stored_bytes(data: bytes, content_type: str, spec: ModelSpec, preprocess_at: str = "gateway") -> bytes:
    # inspect() touches neither the store nor Redis: a client that never connects (it would only on a command).
    submitter = Submitter(Settings(preprocess_at=preprocess_at), lifecycle=None, celery=None,  # type: ignore[arg-type]
                          redis_client=redis.Redis(), catalogue=None, drain_rate=DrainRate(),  # type: ignore[arg-type]
                          deliveries=None)  # type: ignore[arg-type]
    _, stored = submitter.inspect(Upload(data, content_type), spec)
    return stored


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", list(images.parity_set()))
def test_gateway_pixels_equal_a_worker_decode_bit_for_bit(name: str, model: str) -> None:
    spec = builtin(model)
    data, content_type = images.parity_set()[name]
    stored = gateway_stored_bytes(data, content_type, spec)
    assert packed_size(stored) == spec.input.size
    assert np.array_equal(model_pixels(stored, spec.input), np.asarray(decode(data, spec.input)))


def test_each_model_gets_its_own_resize() -> None:
    data, content_type = images.parity_set()[next(iter(images.parity_set()))]
    bilinear = model_pixels(gateway_stored_bytes(data, content_type, builtin("mobilenet_v2")), builtin().input)
    bicubic = model_pixels(gateway_stored_bytes(data, content_type, builtin("mobilenet_v3_small")), builtin().input)
    assert not np.array_equal(bilinear, bicubic)


def test_pixels_are_packed_at_any_size_and_refused_at_the_wrong_one() -> None:
    small = InputSpec(96, 64)
    data = images.jpeg(640, 480)
    stored = pack_pixels(decode(data, small))
    assert packed_size(stored) == (96, 64)
    assert model_pixels(stored, small).shape == (64, 96, 3)
    with pytest.raises(ValueError, match="96×64; this model takes 224×224"):
        model_pixels(stored, builtin().input)


def test_with_worker_preprocessing_the_upload_is_stored_as_it_came() -> None:
    data = images.jpeg(640, 480)
    spec = builtin()
    stored = gateway_stored_bytes(data, "image/jpeg", spec, preprocess_at="worker")
    assert stored == data and packed_size(stored) is None
    assert np.array_equal(model_pixels(stored, spec.input), np.asarray(decode(data, spec.input)))


def test_packing_refuses_anything_but_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        pack_pixels(Image.new("L", (224, 224)))
    packed = pack_pixels(Image.new("RGB", (224, 224)))
    assert packed_size(packed[:-1]) is None, "a short pixel record is an upload, not pixels"
