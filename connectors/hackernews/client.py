"""Hacker News through the Algolia search API (``/search_by_date``).

Algolia returns at most 1,000 hits per query (``nbHits`` may say more); ``hits_between`` narrows
the time window by halves until every window fits, then pages through each.
"""

from __future__ import annotations

import logging
from typing import Any

from stimmung.connectors.http import PoliteClient

log = logging.getLogger(__name__)
MAX_REACHABLE_HITS = 1000


class AlgoliaHNClient:
    def __init__(self, http: PoliteClient, base_url: str = "https://hn.algolia.com/api/v1",
                 tags: str = "(story,comment)", hits_per_page: int = 100):
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.tags = tags
        self.hits_per_page = hits_per_page

    async def _page(self, query: str, lo: int, hi: int, page: int) -> dict[str, Any]:
        params = {"query": query, "tags": self.tags, "hitsPerPage": self.hits_per_page, "page": page,
                  "numericFilters": f"created_at_i>={lo},created_at_i<{hi}"}
        resp = await self.http.get(f"{self.base_url}/search_by_date", params=params)
        return resp.json()

    async def hits_between(self, query: str, lo: int, hi: int) -> list[dict[str, Any]]:
        """Every hit with lo <= created_at_i < hi (unordered)."""
        first = await self._page(query, lo, hi, 0)
        total = int(first.get("nbHits", 0))
        if total > MAX_REACHABLE_HITS and hi - lo > 1:
            mid = lo + (hi - lo) // 2
            return await self.hits_between(query, lo, mid) + await self.hits_between(query, mid, hi)
        if total > MAX_REACHABLE_HITS:
            log.warning("more than 1,000 hits within one second; some are unreachable through Algolia",
                        extra={"connector": "hackernews", "query": query, "second": lo, "hits": total})
        hits = list(first.get("hits", []))
        for page in range(1, int(first.get("nbPages", 1))):
            hits += (await self._page(query, lo, hi, page)).get("hits", [])
        return hits
