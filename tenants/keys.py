"""API key format: `cwd_<scope>_<48 hex>`; stored as a SHA-256 hash and looked up by its prefix."""
from __future__ import annotations

import hashlib

KEY_PREFIX = "cwd"
_PREFIX_SECRET_CHARS = 8


def key_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_prefix(plaintext: str) -> str | None:
    """The stored lookup prefix of a key (`cwd_<scope>_<8 hex>`), or None if it is not shaped like one."""
    parts = plaintext.split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[2]) <= _PREFIX_SECRET_CHARS:
        return None
    return f"{parts[0]}_{parts[1]}_{parts[2][:_PREFIX_SECRET_CHARS]}"
