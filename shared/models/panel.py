"""A model's panel in the portal: where the page imports it from, which files the gateway serves
for it, and which script origins the page's Content-Security-Policy admits.

A panel is a file shipped with the plugin (served by the gateway at /panels/<model>/<file>, from
that file's directory only) or a URL at the team's own origin, admitted only when that origin is in
ASYNCINFER_PANEL_ORIGINS."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from shared.models.spec import ModelSpec

PANEL_ROUTE = "/panels"
# What a panel's directory may serve, and as what; anything else there (the plugin's Python,
# weights, labels) is never served.
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Panel:
    """Where the page imports a model's panel from; `problem` says why it must not be imported."""

    url: str
    problem: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"url": self.url, "problem": self.problem}


def is_url(panel: str) -> bool:
    return panel.startswith(("http://", "https://"))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def panel_of(spec: ModelSpec, allowed_origins: Sequence[str]) -> Panel | None:
    """The model's panel; None: it has none, and the portal shows the generic one."""
    if not spec.panel:
        return None
    if is_url(spec.panel):
        origin = origin_of(spec.panel)
        if origin not in allowed_origins:
            return Panel(spec.panel, f"the panel's origin {origin} is not in ASYNCINFER_PANEL_ORIGINS")
        return Panel(spec.panel)
    return Panel(f"{PANEL_ROUTE}/{quote(spec.name)}/{quote(Path(spec.panel).name)}")


def served_file(spec: ModelSpec, relative: str) -> Path | None:
    """The file of the model's panel directory that `relative` names, if it may be served."""
    if not spec.panel or is_url(spec.panel):
        return None
    root = Path(spec.panel).parent.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or candidate.suffix not in MEDIA_TYPES or not candidate.is_file():
        return None
    return candidate


def script_origins(specs: Iterable[ModelSpec], allowed_origins: Sequence[str]) -> list[str]:
    """The other origins the page loads panels from: those declared by a model and allowed."""
    declared = {origin_of(spec.panel) for spec in specs if spec.panel and is_url(spec.panel)}
    return sorted(declared & set(allowed_origins))


def content_security_policy(script_origins: Sequence[str]) -> str:
    """The portal page's policy: its own scripts and exactly the panel origins in use; requests
    to the gateway only; images from the page and from the user's own files (blob:)."""
    scripts = " ".join(["'self'", *script_origins])
    return "; ".join([
        "default-src 'self'",
        f"script-src {scripts}",
        f"style-src {scripts}",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
