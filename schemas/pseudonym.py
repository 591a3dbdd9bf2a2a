"""Keyed pseudonyms for author handles.

An HMAC-SHA256 over (platform, normalised handle) with a secret key: the same author maps to the
same pseudonym (so analysts can count "who" without knowing who), nobody without the key can
recompute or reverse it, and rotating the key unlinks all past pseudonyms at once.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

PSEUDONYM_PREFIX = "psn_"
MIN_KEY_BYTES = 16


class Pseudonymizer:
    def __init__(self, key: str | bytes):
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(raw) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonymisation key must be at least {MIN_KEY_BYTES} bytes")
        self._key = raw

    @staticmethod
    def normalise_handle(handle: str) -> str:
        # Handles are case-insensitive on every platform we know; '@' is decoration.
        return unicodedata.normalize("NFKC", handle).strip().lstrip("@").casefold()

    def pseudonym(self, platform: str, handle: str) -> str:
        message = f"{platform.strip().lower()}\x1f{self.normalise_handle(handle)}".encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:32]

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(key=***)"
