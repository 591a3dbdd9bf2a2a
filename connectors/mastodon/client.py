"""Mastodon's REST timelines (hashtag and public), read forward with ``min_id`` and ``Link``.

With ``min_id`` a server answers the (up to 40) statuses immediately newer than that id, newest
first, and its ``Link`` header's ``rel="prev"`` URL asks for the next newer page; an empty page
means we are caught up. Rate limits (``X-RateLimit-*``, 300 requests per 5 minutes by default)
are honoured by the PoliteClient.
"""

from __future__ import annotations

from typing import Any, AsyncIterator
from urllib.parse import quote

from stimmung.connectors.http import PoliteClient

PAGE = 40


class MastodonClient:
    def __init__(self, http: PoliteClient, base_url: str, token: str | None = None):
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def timeline_url(self, timeline: str) -> str:
        """``tag:<hashtag>``, ``public`` or ``local``."""
        if timeline.startswith("tag:"):
            return f"{self.base_url}/api/v1/timelines/tag/{quote(timeline[4:].lstrip('#'), safe='')}"
        return f"{self.base_url}/api/v1/timelines/public"

    async def pages_after(self, timeline: str, min_id: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of statuses newer than ``min_id``, oldest page first (each page oldest first).
        Without ``min_id``: only the newest page (a first run starts at "now")."""
        params: dict[str, Any] = {"limit": PAGE}
        if timeline == "local":
            params["local"] = "true"
        if min_id:
            params["min_id"] = min_id
        url: str | None = self.timeline_url(timeline)
        query: dict[str, Any] | None = params
        newest = int(min_id) if min_id and min_id.isdigit() else None
        while url:
            resp = await self.http.get(url, params=query, headers=self.headers)
            page = resp.json()
            if not isinstance(page, list):
                raise ValueError(f"expected a list of statuses, got {type(page).__name__}")
            if not page:
                return
            yield list(reversed(page))
            if not min_id:
                return
            # A server that ignored min_id would hand us the same page forever: stop instead.
            top = max((int(s["id"]) for s in page if str(s.get("id", "")).isdigit()), default=None)
            if top is None or (newest is not None and top <= newest):
                return
            newest = top
            # the prev link carries its own query (min_id of this page's newest status)
            url, query = resp.links.get("prev", {}).get("url"), None
