"""API keys at rest (shared/api_keys.py): hashed entries, a file read again on change, two keys per tenant."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from cli.main import main
from shared import api_keys
from shared.api_keys import KeyEntryInvalid, KeyRing, KeysUnreadable, new_key, parse_entries
from shared.config import Settings


def write(path: Path, *lines: str) -> None:
    path.write_text("\n".join(lines) + "\n")
    stamp = path.stat().st_mtime_ns + 1_000_000_000  # a second later: a coarse clock still sees a change
    os.utime(path, ns=(stamp, stamp))


def test_an_entry_holds_the_keys_hash_not_the_key() -> None:
    key, entry = new_key("alice", "k1")
    assert key.startswith("aik_k1_") and len(key) > 40
    line = entry.line()
    assert line == f"k1:sha256:{hashlib.sha256(key.encode()).hexdigest()}:alice" and key not in line
    ring = KeyRing(entries=line)
    assert ring.tenant_of(key) == "alice"
    assert ring.tenant_of(key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # a wrong secret
    assert ring.tenant_of(key.replace("aik_k1_", "aik_k2_")) is None  # another id
    assert ring.tenant_of("k1") is None and ring.tenant_of("é") is None
    assert ring.tenants() == {"alice"}


def test_entries_are_parsed_strictly_and_never_quoted() -> None:
    _, a = new_key("alice", "a")
    _, b = new_key("bob", "b")
    text = f"# keys\n{a.line()}  # alice's\n\n{b.line()}"
    assert [entry.tenant for entry in parse_entries(text, "f")] == ["alice", "bob"]
    assert len(parse_entries(f"{a.line()},{b.line()}", "env")) == 2
    with pytest.raises(KeyEntryInvalid, match="line 2") as refused:
        parse_entries(f"{a.line()}\naik_oops_secretpastedbymistake", "f")
    assert "secretpasted" not in str(refused.value)
    with pytest.raises(KeyEntryInvalid, match="twice"):
        parse_entries(f"{a.line()}\n{a.line()}", "f")
    with pytest.raises(KeyEntryInvalid):
        new_key("alice", "has_underscore")


def test_two_keys_of_one_tenant_both_work_and_a_removed_one_stops_after_the_file_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_keys, "FILE_CHECK_INTERVAL_S", 0.0)
    old, old_entry = new_key("alice", "old")
    new, new_entry = new_key("alice", "new")
    file = tmp_path / "keys"
    write(file, old_entry.line(), new_entry.line())
    ring = KeyRing(file=str(file))
    assert ring.tenant_of(old) == ring.tenant_of(new) == "alice"

    write(file, new_entry.line())  # rotation done: the old key revoked
    assert ring.tenant_of(old) is None
    assert ring.tenant_of(new) == "alice"


def test_a_broken_file_keeps_the_last_good_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, entry = new_key("alice")
    file = tmp_path / "keys"
    write(file, entry.line())
    ring = KeyRing(file=str(file))
    write(file, "not an entry")
    with caplog.at_level(logging.ERROR):
        ring.reload()  # what SIGHUP does
    assert ring.tenant_of(key) == "alice" and "previous ones stay" in caplog.text
    file.unlink()
    ring.reload()
    assert ring.tenant_of(key) == "alice"


def test_a_keys_file_that_cannot_be_read_at_start_stops_the_gateway_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(KeysUnreadable, match=r"ASYNCINFER_API_KEYS_FILE: .*No such file"):
        KeyRing(file=str(tmp_path / "missing"))
    (tmp_path / "bad").write_text("aik_pasted_secret\n")
    with pytest.raises(KeysUnreadable, match="line 1") as refused:
        KeyRing(file=str(tmp_path / "bad"))
    assert "secret" not in str(refused.value)


def test_an_empty_keys_file_refuses_everyone(tmp_path: Path) -> None:
    file = tmp_path / "keys"
    file.write_text("# nobody yet\n")
    ring = KeyRing(file=str(file))
    assert ring.enabled and ring.tenant_of("anything") is None
    assert not KeyRing().enabled


def test_plain_keys_still_work_in_development_and_are_refused_in_production() -> None:
    ring = KeyRing(plain={"dev-key": "alice"})
    assert ring.tenant_of("dev-key") == "alice" and ring.tenant_of("dev-kez") is None
    with pytest.raises(ValueError, match="plain keys, refused in production"):
        Settings(environment="production", api_keys={"k": "alice"})
    _, entry = new_key("alice")
    with pytest.raises(ValueError, match="ASYNCINFER_STREAM_TOKEN_SECRET"):
        Settings(environment="production", api_key_entries=entry.line())
    Settings(environment="production", api_key_entries=entry.line(), stream_token_secret="s" * 32)
    with pytest.raises(ValueError, match="key-id:sha256"):
        Settings(api_key_entries="k:tenant")


def test_keys_new_prints_the_key_once_and_its_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--tenant", "alice", "--id", "laptop"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    entry = err.strip().splitlines()[-1]
    assert key.startswith("aik_laptop_") and key not in err
    assert KeyRing(entries=entry).tenant_of(key) == "alice"
    assert main(["keys", "new", "--tenant", "a:b"]) == 2
