"""RSS/Atom over HTTP: conditional GETs (ETag / Last-Modified), parsing with feedparser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import feedparser

from stimmung.connectors.http import PoliteClient


@dataclass
class FeedResponse:
    not_modified: bool
    etag: str | None
    modified: str | None
    feed: Any = None  # feedparser.FeedParserDict


class FeedClient:
    def __init__(self, http: PoliteClient):
        self.http = http

    async def fetch(self, url: str, etag: str | None, modified: str | None) -> FeedResponse:
        headers = {"Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5"}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        resp = await self.http.get(url, headers=headers)
        if resp.status_code == 304:
            return FeedResponse(True, etag, modified)
        parsed = feedparser.parse(resp.content, response_headers={k.lower(): v for k, v in resp.headers.items()})
        return FeedResponse(False, resp.headers.get("ETag"), resp.headers.get("Last-Modified"), parsed)
