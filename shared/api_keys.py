"""API keys at rest: the gateway holds a hash of each key, never the key.

A key is `aik_<key-id>_<secret>`, the secret 32 random bytes (base64url). An entry is
`key-id:sha256:<hex>:tenant`: the id finds the entry, the hash is compared in constant time. Entries
come from ASYNCINFER_API_KEY_ENTRIES (separated by `,` or new lines) and from the file
ASYNCINFER_API_KEYS_FILE (one a line, `#` comments), which is read again on SIGHUP and, at most once
a second, when its modification time or size changed: a key removed from the file is refused from
then on, with no restart. Two entries (two ids) for one tenant are both valid, which is how a key is
rotated: add the new one, move clients over, remove the old one.

Why an unsalted SHA-256 and not a slow, salted hash (scrypt, argon2): salts and slowness protect
low-entropy secrets (passwords) against guessing. A key's secret is 256 random bits; nobody can guess
it from its hash however fast the hash is, and one SHA-256 per request costs nothing, where scrypt
would cost milliseconds of CPU on every request.

ASYNCINFER_API_KEYS (`key:tenant,…`, the keys themselves) is still read, for development and tests;
production refuses it (shared/config.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shared.errors import StartupError

log = logging.getLogger(__name__)

KEY_PREFIX = "aik_"
KEY_ID_PATTERN = r"[A-Za-z0-9-]{1,64}"  # no `_`: it separates the id from the secret
HASH_SCHEME = "sha256"
_ENTRY = re.compile(rf"({KEY_ID_PATTERN}):{HASH_SCHEME}:([0-9a-f]{{64}}):(\S+)")
# How often, at most, a request looks whether the keys file changed.
FILE_CHECK_INTERVAL_S = 1.0


class KeyEntryInvalid(ValueError):
    pass


class KeysUnreadable(StartupError):
    """The keys file cannot be read, or holds something that is not an entry, when the gateway starts."""


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    digest: bytes
    tenant: str

    def line(self) -> str:
        return f"{self.key_id}:{HASH_SCHEME}:{self.digest.hex()}:{self.tenant}"


def digest_of(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key(tenant: str, key_id: str | None = None) -> tuple[str, KeyEntry]:
    """A new key and its entry (the line the gateway's file needs)."""
    key_id = key_id or secrets.token_hex(4)
    if not re.fullmatch(KEY_ID_PATTERN, key_id):
        raise KeyEntryInvalid(f"key id {key_id!r}: use letters, digits and `-` (at most 64)")
    if not re.fullmatch(r"\S+", tenant) or ":" in tenant:
        raise KeyEntryInvalid(f"tenant {tenant!r}: no spaces or colons")
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, KeyEntry(key_id, digest_of(key), tenant)


def key_id_of(key: str) -> str | None:
    """The id part of an `aik_<id>_<secret>` key; None for anything else."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, _, secret = key.removeprefix(KEY_PREFIX).partition("_")
    return key_id if key_id and secret else None


def parse_entries(text: str, source: str) -> list[KeyEntry]:
    """Entries separated by new lines or `,`; `#` starts a comment. KeyEntryInvalid names the bad one."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        for item in raw.split("#", 1)[0].split(","):
            if not item.strip():
                continue
            match = _ENTRY.fullmatch(item.strip())
            if not match:
                # The item itself is not quoted: a key pasted by mistake would end up in a log.
                raise KeyEntryInvalid(f"{source}, line {number}: an entry is not key-id:{HASH_SCHEME}:<64 hex>:tenant")
            entries.append(KeyEntry(match[1], bytes.fromhex(match[2]), match[3]))
    seen: set[str] = set()
    for entry in entries:
        if entry.key_id in seen:
            raise KeyEntryInvalid(f"{source}: key id {entry.key_id!r} appears twice")
        seen.add(entry.key_id)
    return entries


class KeyRing:
    """The keys one gateway accepts, reloaded from its file without a restart."""

    def __init__(self, *, plain: dict[str, str] | None = None, entries: str = "", file: str = "") -> None:
        self._plain = dict(plain or {})
        self._static = parse_entries(entries, "ASYNCINFER_API_KEY_ENTRIES")
        self._file = Path(file) if file else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._by_id: dict[str, KeyEntry] = {}
        self._from_file: list[KeyEntry] = []
        if self._file is not None:
            try:  # at start, a file that cannot be read or parsed stops the gateway, in one line
                self._stamp = self._file_stamp()
                self._from_file = parse_entries(self._file.read_text(), str(self._file))
            except (OSError, KeyEntryInvalid) as e:
                raise KeysUnreadable(f"ASYNCINFER_API_KEYS_FILE: {e}") from None
        self._index()

    @property
    def enabled(self) -> bool:
        """Keys are required once any source is configured (a keys file with no entries refuses everyone)."""
        return bool(self._plain or self._static or self._file is not None)

    def tenants(self) -> set[str]:
        return {*self._plain.values(), *(entry.tenant for entry in self._by_id.values())}

    def tenant_of(self, key: str) -> str | None:
        """The tenant of `key`, or None when no entry (or plain key) matches."""
        self.reload_if_changed()
        key_id = key_id_of(key)
        entry = self._by_id.get(key_id) if key_id else None
        if entry is not None and secrets.compare_digest(digest_of(key), entry.digest):
            return entry.tenant
        for known, tenant in self._plain.items():
            # As bytes: compare_digest refuses str with non-ASCII characters, which any header may carry.
            if secrets.compare_digest(key.encode(), known.encode()):
                return tenant
        return None

    def reload(self) -> None:
        """Read the file again (SIGHUP); a file that became invalid or unreadable keeps the last good keys."""
        if self._file is None:
            return
        with self._lock:
            self._checked = time.monotonic()
            try:
                stamp = self._file_stamp()
                entries = parse_entries(self._file.read_text(), str(self._file))
            except (OSError, KeyEntryInvalid) as e:
                log.error("API keys not reloaded, the previous ones stay in force: %s", e)
                return
            self._stamp, self._from_file = stamp, entries
            self._index()
        log.info("API keys reloaded from %s: %d entries", self._file, len(entries))

    def reload_if_changed(self) -> None:
        if self._file is None or time.monotonic() - self._checked < FILE_CHECK_INTERVAL_S:
            return
        self._checked = time.monotonic()
        try:
            changed = self._file_stamp() != self._stamp
        except OSError:
            changed = True  # gone or unreadable: reload says so, and keeps the last good keys
        if changed:
            self.reload()

    def _file_stamp(self) -> tuple[int, int]:
        assert self._file is not None
        status = os.stat(self._file)
        return status.st_mtime_ns, status.st_size

    def _index(self) -> None:
        by_id: dict[str, KeyEntry] = {}
        for entry in [*self._static, *self._from_file]:
            if entry.key_id in by_id:
                log.warning("API key id %s is both in ASYNCINFER_API_KEY_ENTRIES and the keys file; the file's "
                            "entry is used", entry.key_id)
            by_id[entry.key_id] = entry
        self._by_id = by_id
