"""``connectors.hackernews``: Algolia's Hacker News search."""

from __future__ import annotations

from pydantic import Field

from stimmung.sections import Section


class HackerNewsSettings(Section):
    """Hacker News through Algolia's search API."""

    queries: list[str] = Field(default_factory=list, description="Algolia search queries, e.g. the brand names (default: the brands)")
    base_url: str = Field("https://hn.algolia.com/api/v1", description="Algolia HN search API")
    tags: str = Field("(story,comment)", description="Algolia tag filter: which item types")
    hits_per_page: int = Field(100, ge=1, le=1000, description="Page size of each search request")
    interval_s: float = Field(60.0, gt=0, description="Seconds between sweeps")
    start_back_s: int = Field(86_400, ge=0, description="First run: how far back to start")
