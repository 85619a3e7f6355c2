"""Whatever batch a job lands in, its result equals a direct call of the same model on that image."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from cli.pipeline import LocalPipeline
from shared.config import Settings
from shared.preprocessing import decode
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import stream_events
from tests.support.models import builtin
from workers.model.classifier import to_model_input

MOBILENET_V2 = builtin()
MAX_TOP_K = MOBILENET_V2.max_top_k

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def direct_model():  # type: ignore[no-untyped-def]
    """The same random weights the workers use (same seed), loaded in this process."""
    model, _ = MOBILENET_V2.build("random", Settings().random_seed)
    return model


def direct_scores(model, data: bytes) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(model.predict_on_batch(to_model_input(MOBILENET_V2, [decode(data, MOBILENET_V2.input)])))[0]


def assert_pipeline_matches_direct_calls(url: str, direct_model, backend: str) -> None:  # type: ignore[no-untyped-def]
    cases = images.parity_set()
    files = [("files", (f"{name}", data, content_type)) for name, (data, content_type) in cases.items()]
    with httpx.Client(base_url=url, timeout=60) as client:
        batch = client.post("/v1/batches", files=files, params={"top_k": MAX_TOP_K}).json()
        stream_events(client, f"/v1/batches/{batch['id']}/events")
        docs = [client.get(f"/v1/jobs/{job['id']}").json() for job in batch["jobs"]]

    batch_sizes = {doc["result"]["batch_size"] for doc in docs}
    assert max(batch_sizes) > 1, "the jobs were never batched together"
    top_classes = set()
    for (name, (data, _)), doc in zip(cases.items(), docs, strict=True):
        assert doc["status"] == "succeeded", (name, doc["error"])
        assert doc["model"]["backend"] == backend
        expected = direct_scores(direct_model, data)
        predictions = doc["result"]["predictions"]
        expected_ids = list(np.argsort(-expected, kind="stable")[:20])
        assert [p["class_id"] for p in predictions] == expected_ids, name
        got = np.array([p["score"] for p in predictions])
        assert np.abs(got - expected[expected_ids]).max() <= TOLERANCE, name
        top_classes.add(tuple(expected_ids[:3]))
    # The comparison means something only if the model tells images apart.
    assert len(top_classes) >= 3


def test_pipeline_predictions_equal_a_direct_model_call(pipeline: LocalPipeline, direct_model) -> None:  # type: ignore[no-untyped-def]
    assert_pipeline_matches_direct_calls(pipeline.url, direct_model, "tensorflow")


def test_onnxruntime_workers_decoding_uploads_equal_a_direct_keras_call(make_pipeline: PipelineFactory, tmp_path: Path, direct_model) -> None:  # type: ignore[no-untyped-def]
    """The ONNX runtime's results equal the Keras model's own, through the whole pipeline; here
    the workers decode the uploads themselves (the other path of ASYNCINFER_PREPROCESS_AT)."""
    started = make_pipeline(
        ASYNCINFER_RUNTIME="onnxruntime", ASYNCINFER_CACHE_DIR=str(tmp_path / "cache"), ASYNCINFER_PREPROCESS_AT="worker"
    )
    assert_pipeline_matches_direct_calls(started.url, direct_model, "onnxruntime")
    assert "exported the model to ONNX" in started.logs("worker0")
