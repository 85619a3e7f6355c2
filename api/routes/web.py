"""The portal page: a shell (web/static/shell.js, no build step) that imports each model's panel.
Its status names come from the same constants as the API's, and its Content-Security-Policy admits
scripts from the gateway and from exactly the allowed origins that models declare panels at."""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.deps import ServicesDep
from shared.jobs import TERMINAL
from shared.models.panel import content_security_policy, script_origins

router = APIRouter(include_in_schema=False)


API_DOCS_LINK = '<a href="/docs">API documentation</a>'


@cache
def index_html(api_docs: bool) -> str:
    page = Template(resources.files("web").joinpath("index.html").read_text())
    return page.substitute(
        terminal_statuses=" ".join(sorted(status.value for status in TERMINAL)),
        api_docs_link=API_DOCS_LINK if api_docs else "",  # no link to what is not served
    )


@router.get("/", response_class=HTMLResponse)
async def index(services: ServicesDep) -> HTMLResponse:
    latest = [next(reversed(versions.values())) for versions in services.catalogue.models().values()]
    policy = content_security_policy(script_origins(latest, services.settings.panel_origins))
    return HTMLResponse(index_html(services.settings.api_docs_served), headers={"Content-Security-Policy": policy})
