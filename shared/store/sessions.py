"""Sessions in the job store: created once, then only appended to, never rewritten, so that
concurrent jobs of one session cannot lose each other's entries (shared/sessions.py)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from shared import constants
from shared.errors import DocumentMissing, SessionNotFound
from shared.sessions import Session, expires_at_s

if TYPE_CHECKING:
    from shared.store.base import JobStore


def session_key(session_id: str) -> str:
    return f"{constants.SESSION_KEY_PREFIX}{session_id}"


class SessionRecords:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def create(self, session: Session) -> None:
        ttl_s = max(1, math.ceil(expires_at_s(session) - time.time()))
        self.store._insert(session_key(session["id"]), session, ttl_s)

    def get(self, session_id: str, *, tenant: str | None = None) -> Session:
        """The session; SessionNotFound also when it expired or is another tenant's."""
        found = self.store._get(session_key(session_id))
        if found is None or (tenant is not None and found[0].get("tenant") != tenant):
            raise SessionNotFound(f"no session with id {session_id}")
        return found[0]

    def append(self, session: Session, *entries: dict[str, Any]) -> None:
        """Add `entries` at the end of the session's log, in one atomic write that keeps its expiry."""
        try:
            self.store._append_to(session_key(session["id"]), "log", list(entries), expires_at_s(session))
        except DocumentMissing:
            raise SessionNotFound(f"no session with id {session['id']}") from None
