"""Pixels prepared by the gateway are exactly what a worker would decode from the upload."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from api.admission.submitter import Submitter, Upload
from shared.config import Settings
from shared.preprocessing import PIXELS_HEADER, decode, is_packed_pixels, model_pixels, pack_pixels
from tests.support import images


def gateway_stored_bytes(data: bytes, content_type: str, preprocess_at: str = "gateway") -> bytes:
    submitter = Submitter(Settings(preprocess_at=preprocess_at), lifecycle=None, celery=None, redis_client=None)  # type: ignore[arg-type]
    _, stored = submitter.inspect(Upload(data, content_type))
    return stored


@pytest.mark.parametrize("name", list(images.parity_set()))
def test_gateway_pixels_equal_a_worker_decode_bit_for_bit(name: str) -> None:
    data, content_type = images.parity_set()[name]
    stored = gateway_stored_bytes(data, content_type)
    assert is_packed_pixels(stored) and len(stored) < len(PIXELS_HEADER) + 224 * 224 * 3 + 1
    assert np.array_equal(model_pixels(stored), np.asarray(decode(data)))


def test_with_worker_preprocessing_the_upload_is_stored_as_it_came() -> None:
    data = images.jpeg(640, 480)
    stored = gateway_stored_bytes(data, "image/jpeg", preprocess_at="worker")
    assert stored == data and not is_packed_pixels(stored)
    assert np.array_equal(model_pixels(stored), np.asarray(decode(data)))


def test_packing_refuses_anything_but_model_sized_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        pack_pixels(Image.new("RGB", (100, 100)))
    with pytest.raises(ValueError, match="RGB"):
        pack_pixels(Image.new("L", (224, 224)))
    assert not is_packed_pixels(PIXELS_HEADER + b"short")
