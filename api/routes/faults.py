"""Routes that fail on purpose, for tests of how the gateway reports what nobody expected. Served
only with ASYNCINFER_FAULT_INJECTION=on (refused in production) and left out of the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/_faults", include_in_schema=False)

# What the exception says; a test checks that none of it reaches the client.
SECRET_MESSAGE = "injected fault: internal detail that must stay in the log"


class InjectedFault(RuntimeError):
    pass


@router.get("/raise")
async def raise_unexpected() -> None:
    raise InjectedFault(SECRET_MESSAGE)
