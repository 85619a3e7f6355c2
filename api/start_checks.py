"""What a gateway refuses to start with in production, beyond what the settings refuse for every
process (shared/config.py): being open to anyone who reaches it."""

from __future__ import annotations

import logging

from shared.config import Settings
from shared.errors import StartupError

log = logging.getLogger(__name__)


class InsecureGateway(StartupError):
    """Production settings that would let anyone in."""


def check_gateway_security(settings: Settings) -> None:
    """InsecureGateway naming the fix; in development, nothing (an open gateway is the default there)."""
    if settings.auth == "none":
        log.warning("ASYNCINFER_AUTH=none: this gateway authenticates no one; it must sit behind a proxy that does")
        return
    if settings.environment == "production" and not settings.keys_configured:
        raise InsecureGateway(
            "ASYNCINFER_ENVIRONMENT=production and no API keys (ASYNCINFER_API_KEYS_FILE or "
            "ASYNCINFER_API_KEY_ENTRIES): anyone could submit and read jobs; set keys, or ASYNCINFER_AUTH=none "
            "behind a proxy that authenticates")
