"""A document update expressed as Couchbase sub-document operations: only what changed."""

from __future__ import annotations

import re
from typing import Any

import couchbase.subdocument as SD
from couchbase.subdocument import Spec

# The server takes at most 16 operations in one mutate_in.
MAX_SPECS = 16
# Field names that are valid sub-document paths as they are (no dots, brackets or backticks).
_PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def changes_as_specs(current: dict[str, Any], new: dict[str, Any]) -> list[Spec] | None:
    """Operations that turn `current` into `new`, or None when a whole replace is needed.

    A list that only grew at its end (the job's history) becomes one array_append, so a
    status change sends its new history entry, not the whole history.
    """
    if not all(_PLAIN_FIELD.fullmatch(field) for field in current.keys() | new.keys()):
        return None
    specs: list[Spec] = [SD.remove(field) for field in sorted(current.keys() - new.keys())]
    for field, value in new.items():
        if field not in current:
            specs.append(SD.upsert(field, value))
            continue
        old = current[field]
        if old == value:
            continue
        if isinstance(old, list) and isinstance(value, list) and _appended_to(old, value):
            specs.append(SD.array_append(field, *value[len(old):]))
        else:
            specs.append(SD.upsert(field, value))
    if not specs or len(specs) > MAX_SPECS:
        return None  # nothing changed still needs a CAS-checked write
    return specs


def _appended_to(old: list[Any], new: list[Any]) -> bool:
    return len(new) > len(old) and new[: len(old)] == old
