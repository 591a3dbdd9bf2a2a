"""Stable identifiers.

A mention's id depends only on (platform, native id), so every re-delivery, re-import or replay
of the same post maps to the same Kafka key and the same Elasticsearch ``_id``: at-least-once
delivery becomes effectively-once without any coordination.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

# Fixed namespace for Stimmung mention ids (never change: it would re-key every stored mention).
MENTION_NAMESPACE = uuid.UUID("5f1d0c36-5a0e-4c47-9d59-0b6f4a7f3e21")


@lru_cache(maxsize=16384)  # validation, serialisation and the sink each ask for the same id
def mention_id(platform: str, native_id: str) -> str:
    """UUIDv5 of ``platform`` and ``native_id`` (platform is case-insensitive, the id is not)."""
    if not platform or not native_id:
        raise ValueError("platform and native_id are required for a mention id")
    return str(uuid.uuid5(MENTION_NAMESPACE, f"{platform.strip().lower()}\x1f{native_id.strip()}"))
