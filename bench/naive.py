"""The naive design, for comparison: a synchronous FastAPI endpoint that decodes the upload and
calls Keras `model.predict` once per request. No queue, no batching, no store.

    uvicorn bench.naive:app
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import Body, FastAPI

from shared.config import Settings
from shared.preprocessing import decode
from workers.model.classifier import to_model_input
from workers.scores import top_k

settings = Settings()
spec = settings.catalogue().resolve(None)
model, _ = spec.build("random", settings.random_seed)
labels = spec.labels()
model.predict(np.zeros((1, spec.input.height, spec.input.width, 3), dtype="float32"), verbose=0)  # builds predict once
app = FastAPI()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/classify")
def classify(image: Annotated[bytes, Body(media_type="image/*")]) -> dict[str, Any]:
    """FastAPI runs a plain `def` endpoint in its thread pool: one request, one model call."""
    scores = model.predict(to_model_input(spec, [decode(image, spec.input)]), verbose=0)[0]
    return {"predictions": top_k(scores, 5, labels)}
