"""/panels/<model>/<file>: the files of a model's panel directory (shared/models/panel.py), for the
portal to import. Public like the page itself: a panel is code for the browser, never a secret."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import ServicesDep
from shared.errors import NotFound
from shared.models.panel import MEDIA_TYPES, PANEL_ROUTE, served_file

router = APIRouter(prefix=PANEL_ROUTE, include_in_schema=False)


@router.get("/{name}/{path:path}")
async def panel_file(name: str, path: str, services: ServicesDep) -> FileResponse:
    versions = services.catalogue.versions(name)
    found = served_file(next(reversed(versions.values())), path)
    if found is None:
        raise NotFound(f"model {name}'s panel has no file {path!r}")
    # no-cache: a team's new panel is seen at the next reload, after a revalidation (ETag).
    return FileResponse(found, media_type=MEDIA_TYPES[found.suffix],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
