"""Which files a `submit` run sends: named files as they are, image files found in directories."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from pathlib import Path

# What the gateway decodes; a directory scan picks only these (a named file is always sent,
# and the gateway says what is wrong with it).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif"})


class MissingPath(ValueError):
    """A path given on the command line does not exist."""


def _images_in(directory: Path, recursive: bool) -> list[Path]:
    candidates = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def discover(paths: Iterable[str], *, recursive: bool) -> list[Path]:
    """Files to submit, each once, in command-line order (directories sorted by name)."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update(dict.fromkeys(_images_in(path, recursive)))
        elif path.is_file():
            found[path] = None
        else:
            raise MissingPath(f"{raw}: no such file or directory")
    return list(found)


def content_type_of(path: Path) -> str:
    """A hint only: the gateway trusts the bytes, not the name."""
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
