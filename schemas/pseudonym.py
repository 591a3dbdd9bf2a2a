"""Keyed pseudonyms for author handles.

An HMAC-SHA256 over (platform, canonical author key) with a secret key (the key per platform is
decided in schemas/identity.py, so every spelling of one account is one author): the same author
maps to the same pseudonym (so analysts can count "who" without knowing who), nobody without the key can
recompute or reverse it, and rotating the key unlinks all past pseudonyms at once.
"""

from __future__ import annotations

import hashlib
import hmac

from stimmung.schemas.identity import author_key, legacy_key

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
        return legacy_key(handle)

    def pseudonym(self, platform: str, handle: str) -> str:
        """The pseudonym of an author, from any spelling a source or an operator uses for them."""
        return self._digest(platform, author_key(platform, handle))

    def legacy_pseudonym(self, platform: str, handle: str) -> str:
        """The pseudonym this handle got before canonical keys (for ``stimmung migrate-authors``)."""
        return self._digest(platform, legacy_key(handle))

    def _digest(self, platform: str, key: str) -> str:
        message = f"{platform.strip().lower()}\x1f{key}".encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:32]

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(key=***)"
