"""``connectors.bluesky``: which Jetstream instance, which collections."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from stimmung.sections import Section


class BlueskySettings(Section):
    """Bluesky through a Jetstream instance."""

    url: str = Field("wss://jetstream2.us-east.bsky.network", description="Jetstream instance (ws:// or wss://)")
    legacy: bool = Field(False, description="The instance only serves the v1 /subscribe endpoint")
    collections: list[str] = Field(default_factory=lambda: ["app.bsky.feed.post"], description="Record collections to receive")
    zstd_dictionary: Path | None = Field(
        None, description="Jetstream's zstd dictionary file: ask for compressed frames (about 1/5 of the bandwidth)")
