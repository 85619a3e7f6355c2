"""The asyncinfer gateway's Python client: `Client` (blocking) and `AsyncClient` (asyncio).

    from asyncinfer_client import Client

    with Client("http://127.0.0.1:8000") as client:
        job = client.wait(client.submit("cat.jpg", top_k=3))
        print(job.status, job.predictions)

Installable on its own (`clients/python`): it needs httpx, httpx-sse and tenacity, nothing of the
gateway or the workers.
"""

from asyncinfer_client.aio import AsyncClient, content_key
from asyncinfer_client.errors import (
    AsyncinferError,
    BadRequest,
    CallbackRefused,
    Conflict,
    GatewayUnavailable,
    NotFound,
    PayloadTooLarge,
    Problem,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UndecodableImage,
    UnsupportedImage,
)
from asyncinfer_client.jobs import TERMINAL, Job, OnPosition, Position, Prediction
from asyncinfer_client.sync import Client

__all__ = [
    "TERMINAL", "AsyncClient", "AsyncinferError", "BadRequest", "CallbackRefused", "Client", "Conflict",
    "GatewayUnavailable", "Job", "NotFound", "OnPosition", "PayloadTooLarge", "Position", "Prediction", "Problem",
    "ServerError", "ServiceUnavailable", "TooManyRequests", "Unauthorized", "UndecodableImage", "UnsupportedImage",
    "content_key",
]
