"""Mastodon's REST timelines (hashtag and public), read forward with ``min_id`` and ``Link``.

With ``min_id`` a server answers the (up to 40) statuses immediately newer than that id, newest
first, and its ``Link`` header's ``rel="prev"`` URL asks for the next newer page; an empty page
means we are caught up. Rate limits (``X-RateLimit-*``, 300 requests per 5 minutes by default)
are honoured by the PoliteClient. With a token the streaming API (server-sent events) delivers
new statuses as they are posted; REST fills whatever the stream missed.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse

from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.retry import retry_after

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


STREAM_PATHS: dict[str, tuple[str, dict[str, str]]] = {"public": ("/api/v1/streaming/public", {}), "local": ("/api/v1/streaming/public/local", {})}


class MastodonStream:
    """Mastodon's streaming API as server-sent events (``event: update`` + the status as JSON;
    ``:thump`` heartbeats). Public and hashtag streams need a token since Mastodon 4.2."""

    def __init__(self, http: PoliteClient, base_url: str, token: str, streaming_url: str | None = None,
                 stall_s: float = 60.0):
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.streaming_url = streaming_url.rstrip("/") if streaming_url else None
        self.stall_s = stall_s

    async def server(self) -> str:
        """The streaming server the instance announces (often a separate host), else the instance."""
        if self.streaming_url is None:
            try:
                resp = await self.http.get(f"{self.base_url}/api/v2/instance")
                announced = ((resp.json().get("configuration") or {}).get("urls") or {}).get("streaming")
            except (SourceError, ValueError, AttributeError):
                announced = None
            url = str(announced or self.base_url).rstrip("/")
            # announced as a WebSocket address; the same server speaks SSE over HTTP(S)
            self.streaming_url = url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        return self.streaming_url

    @asynccontextmanager
    async def connect(self, timeline: str) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
        """Subscribe; the yielded iterator gives (event, data) pairs. Subscribed on return, so a
        REST catch-up done afterwards overlaps the stream instead of leaving a gap."""
        path, params = STREAM_PATHS.get(timeline, ("/api/v1/streaming/hashtag", {"tag": timeline[4:].lstrip("#")}))
        url = f"{await self.server()}{path}"
        timeout = httpx.Timeout(30.0, read=self.stall_s)
        async with aconnect_sse(self.http.http, "GET", url, params=params, headers=self.headers, timeout=timeout) as source:
            resp = source.response
            if resp.status_code != 200:
                body = (await resp.aread()).decode("utf-8", "replace")
                raise StreamRefused(resp.status_code, body, retry_after(resp.headers))

            async def events() -> AsyncIterator[tuple[str, str]]:
                try:
                    async for sse in source.aiter_sse():
                        yield sse.event, sse.data
                except httpx.ReadTimeout:
                    raise httpx.ReadError(f"no event or heartbeat for {self.stall_s:.0f} s") from None

            yield events()


class StreamRefused(SourceError):
    def __init__(self, status: int, body: str, retry_after_s: float | None):
        super().__init__(f"mastodon streaming answered {status}: {body[:200]}", status)
        self.retry_after_s = retry_after_s
