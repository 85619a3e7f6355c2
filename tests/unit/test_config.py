"""The settings object: environment parsing, store URLs, production secrets."""

from __future__ import annotations

import pytest

from shared.config import Settings


def test_defaults_run_on_one_machine() -> None:
    settings = Settings()
    assert settings.store_kind == "sqlite" and settings.mesh == "none"
    assert settings.redis_url.startswith("redis://127.0.0.1")


def test_api_keys_parse_from_pairs_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCINFER_API_KEYS", "k1:alice, k2:bob")
    assert Settings().api_keys == {"k1": "alice", "k2": "bob"}
    monkeypatch.setenv("ASYNCINFER_API_KEYS", '{"k3": "carol"}')
    assert Settings().api_keys == {"k3": "carol"}
    monkeypatch.setenv("ASYNCINFER_API_KEYS", "no-tenant")
    with pytest.raises(ValueError, match="key:tenant"):
        Settings()


def test_store_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(store="couchbases://db.example").store_kind == "couchbase"
    assert Settings(store="sqlite:////var/lib/jobs.db").sqlite_path == "/var/lib/jobs.db"
    with pytest.raises(ValueError, match="ASYNCINFER_STORE"):
        _ = Settings(store="postgres://x").store_kind


def test_production_refuses_placeholder_secrets() -> None:
    settings = Settings(environment="production", store="couchbase://db", couchbase_password="password")
    with pytest.raises(ValueError, match="placeholder"):
        settings.check_production_secrets()
    Settings(environment="development", store="couchbase://db").check_production_secrets()
