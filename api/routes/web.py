"""The web page: static files shipped in the `web` package, no build step. The page's limits and
status names come from the same constants as the API's."""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from shared.constants import DEFAULT_TOP_K, MAX_TOP_K
from shared.jobs import TERMINAL

router = APIRouter(include_in_schema=False)


@cache
def index_html() -> str:
    page = Template(resources.files("web").joinpath("index.html").read_text())
    return page.substitute(
        max_top_k=MAX_TOP_K,
        default_top_k=DEFAULT_TOP_K,
        terminal_statuses=" ".join(sorted(status.value for status in TERMINAL)),
    )


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    return HTMLResponse(index_html())
