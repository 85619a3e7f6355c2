"""A lease in the store: one holder at a time among processes that share it (several gateways'
recoverers), taken and renewed with compare-and-swap, free again once it expires."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from shared import constants
from shared.errors import CasMismatch, DocumentExists, DocumentMissing

if TYPE_CHECKING:
    from shared.store.base import JobStore


class Lease:
    def __init__(self, store: JobStore, name: str, holder: str, duration_s: float) -> None:
        self.store = store
        self.key = f"{constants.LEASE_KEY_PREFIX}{name}"
        self.holder = holder
        self.duration_s = duration_s

    def acquire(self, now_s: float | None = None) -> bool:
        """Take or renew the lease; True while this holder has it."""
        now = time.time() if now_s is None else now_s
        mine = {"holder": self.holder, "expires_at": now + self.duration_s}
        found = self.store._get(self.key)
        try:
            if found is None:
                self.store._insert(self.key, mine, self.store.ttl_s)
                return True
            current, cas = found
            if current["holder"] != self.holder and current["expires_at"] > now:
                return False
            self.store._replace(self.key, {**current, **mine}, cas)
            return True
        except (DocumentExists, CasMismatch, DocumentMissing):
            return False  # another holder was quicker

    def release(self) -> None:
        """Give the lease up early (a clean shutdown), so another holder need not wait it out."""
        found = self.store._get(self.key)
        if found is not None and found[0]["holder"] == self.holder:
            with contextlib.suppress(CasMismatch, DocumentMissing):
                self.store._replace(self.key, {**found[0], "expires_at": 0.0}, found[1])

    def holder_now(self, now_s: float | None = None) -> str | None:
        now = time.time() if now_s is None else now_s
        found = self.store._get(self.key)
        if found is None or found[0]["expires_at"] <= now:
            return None
        return str(found[0]["holder"])
