"""``connectors.rss``: which feeds, how often."""

from __future__ import annotations

from pydantic import Field

from stimmung.sections import Section


class RSSSettings(Section):
    """RSS/Atom feeds: which feeds, how often."""

    feeds: list[str] = Field(default_factory=list, description="Feed URLs (RSS 0.9x/1.0/2.0, Atom)")
    interval_s: float = Field(300.0, gt=0, description="Seconds between sweeps")
