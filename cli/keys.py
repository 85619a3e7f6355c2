"""`asyncinfer keys new`: a new API key, printed once, and the entry the gateway keeps instead of it."""

from __future__ import annotations

import sys

from shared.api_keys import KeyEntryInvalid, new_key


def print_new_key(tenant: str, key_id: str | None) -> int:
    """The key on stdout (for a pipe or a secret store); the entry, and what to do with it, on stderr."""
    try:
        key, entry = new_key(tenant, key_id)
    except KeyEntryInvalid as e:
        print(f"asyncinfer keys new: {e}", file=sys.stderr)
        return 2
    print(key)
    print(f"# Give the key above to tenant {tenant}; it is shown only once. Add this line to the file of "
          "ASYNCINFER_API_KEYS_FILE (the gateways read it within a second), or to ASYNCINFER_API_KEY_ENTRIES:",
          file=sys.stderr)
    print(entry.line(), file=sys.stderr)
    return 0
