"""Stream tokens (api/stream_tokens.py): one job or batch, one tenant, until they expire."""

from __future__ import annotations

import pytest

from api.stream_tokens import StreamTokens
from shared.errors import BatchNotFound, InvalidApiKey, JobNotFound

NOW = 1_800_000_000.0


def test_a_token_opens_its_own_job_until_it_expires() -> None:
    tokens = StreamTokens("secret", ttl_s=300)
    token, expires_at = tokens.issue("alice", "job", "j1", now=NOW)
    assert expires_at == NOW + 300
    assert tokens.verify(token, "job", "j1", now=NOW + 299) == "alice"
    with pytest.raises(InvalidApiKey, match="expired"):
        tokens.verify(token, "job", "j1", now=NOW + 300)
    with pytest.raises(JobNotFound):
        tokens.verify(token, "job", "j2", now=NOW)
    with pytest.raises(BatchNotFound):
        tokens.verify(token, "batch", "j1", now=NOW)


def test_any_gateway_with_the_secret_verifies_and_nothing_else_does() -> None:
    token, _ = StreamTokens("secret", ttl_s=300).issue("alice", "batch", "b1", now=NOW)
    assert StreamTokens("secret", ttl_s=60).verify(token, "batch", "b1", now=NOW) == "alice"
    with pytest.raises(InvalidApiKey, match="not one this gateway issued"):
        StreamTokens("other", ttl_s=300).verify(token, "batch", "b1", now=NOW)
    payload, signature = token.split(".")
    forged = StreamTokens("secret", ttl_s=300).issue("bob", "batch", "b1", now=NOW)[0].split(".")[0]
    for bad in (f"{forged}.{signature}", payload, "", "..", "a.b", f"{payload}.{signature}x", "é.é"):
        with pytest.raises(InvalidApiKey):
            StreamTokens("secret", ttl_s=300).verify(bad, "batch", "b1", now=NOW)
