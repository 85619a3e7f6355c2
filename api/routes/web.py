"""The web page: static files shipped in the `web` package, no build step. The page's limits are
the default model's, and its status names come from the same constants as the API's."""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.deps import ServicesDep
from shared.jobs import TERMINAL

router = APIRouter(include_in_schema=False)


API_DOCS_LINK = '<a href="/docs">API documentation</a>'


@cache
def index_html(default_top_k: int, max_top_k: int, api_docs: bool) -> str:
    page = Template(resources.files("web").joinpath("index.html").read_text())
    return page.substitute(
        max_top_k=max_top_k,
        default_top_k=default_top_k,
        terminal_statuses=" ".join(sorted(status.value for status in TERMINAL)),
        api_docs_link=API_DOCS_LINK if api_docs else "",  # no link to what is not served
    )


@router.get("/", response_class=HTMLResponse)
async def index(services: ServicesDep) -> HTMLResponse:
    spec = services.catalogue.resolve(None)
    return HTMLResponse(index_html(spec.default_top_k, spec.max_top_k, services.settings.api_docs_served))
