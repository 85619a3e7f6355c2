"""The settings object: environment parsing, store URLs, production secrets."""

from __future__ import annotations

import pytest

from shared.config import Settings, get_settings
from shared.errors import SettingsInvalid


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
    with pytest.raises(ValueError, match="use sqlite:///path or couchbase://host"):
        Settings(store="postgres://x")


def test_a_bad_store_url_is_refused_on_every_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked when the settings are built, so a copy with overrides gets the same check."""
    with pytest.raises(ValueError, match="use sqlite:///path"):
        Settings().with_overrides(store="postgres://x")
    monkeypatch.setenv("ASYNCINFER_STORE", "postgres://x")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsInvalid) as refused:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(refused.value)
    assert message.startswith("ASYNCINFER_STORE: 'postgres://x': use sqlite:///path") and "\n" not in message


def test_production_refuses_placeholder_secrets() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        Settings(environment="production", store="couchbases://db", couchbase_password="password")
    Settings(environment="development", store="couchbase://db")
    Settings(environment="production", store="couchbases://db", couchbase_password="a-real-one")


def test_production_refuses_couchbase_without_tls_to_another_host() -> None:
    with pytest.raises(ValueError, match=r"reaches db\.example without TLS; use couchbases://"):
        Settings(environment="production", store="couchbase://db.example", couchbase_password="a-real-one")
    # A mesh sidecar's local listener (mTLS beyond it), or TLS itself, or development: accepted.
    Settings(environment="production", store="couchbase://127.0.0.1:21210?network=external", couchbase_password="x1")
    Settings(environment="production", store="couchbases://db.example", couchbase_password="a-real-one")
    Settings(environment="development", store="couchbase://db.example")


def test_production_refuses_the_mesh_without_an_acl_token() -> None:
    with pytest.raises(ValueError, match="ASYNCINFER_MESH=consul in production needs ASYNCINFER_CONSUL_TOKEN"):
        Settings(environment="production", mesh="consul")
    Settings(environment="production", mesh="consul", consul_token="9a7c…-a-token")
    Settings(environment="development", mesh="consul")


def test_no_authentication_on_purpose_excludes_keys() -> None:
    with pytest.raises(ValueError, match="ASYNCINFER_AUTH=none and API keys are both set"):
        Settings(auth="none", api_keys={"k": "t"})


def test_api_docs_are_off_in_production_unless_asked_for() -> None:
    assert Settings().api_docs_served
    assert not Settings(environment="production").api_docs_served
    assert Settings(environment="production", api_docs=True).api_docs_served
    assert not Settings(api_docs=False).api_docs_served


def test_a_rates_burst_is_twice_the_rate_unless_set() -> None:
    assert Settings(rate_limit_per_s=5).rate_limit_burst_size == 10
    assert Settings(rate_limit_per_s=0.2).rate_limit_burst_size == 1
    assert Settings(rate_limit_per_s=5, rate_limit_burst=3).rate_limit_burst_size == 3


def test_panel_origins_are_origins_without_a_wildcard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCINFER_PANEL_ORIGINS", "https://panels.example.com, http://127.0.0.1:8090/")
    assert Settings().panel_origins == ["https://panels.example.com", "http://127.0.0.1:8090"]
    for refused in ("*", "https://panels.example.com/team", "panels.example.com"):
        monkeypatch.setenv("ASYNCINFER_PANEL_ORIGINS", refused)
        with pytest.raises(ValueError, match=r"ASYNCINFER_PANEL_ORIGINS: .* is not an origin"):
            Settings()
