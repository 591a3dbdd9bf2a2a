"""Reddit posts (search) and comments (per subreddit) -> RawMention.

Listings are newest first: each sweep reads pages until it reaches what it already has (the
previous newest ``created_utc``), then publishes oldest first. Cursor per listing: the newest
``created_utc`` and the fullnames seen in that second.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from stimmung.connectors.base import Fetched, Rejected, Source, SourceContext
from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.connectors.probe import json_body, probe
from stimmung.connectors.reddit.client import RedditClient
from stimmung.connectors.reddit.settings import RedditSettings
from stimmung.schemas.identity import author_key
from stimmung.schemas.mention import RawMention
from stimmung.sections import ConfigError, read_secret


def to_mention(item: dict[str, Any]) -> RawMention:
    name, created = item.get("name"), item.get("created_utc")
    if not name or not isinstance(created, (int, float)):
        raise ValueError("thing lacks name or created_utc")
    if name.startswith("t1_"):
        text = item.get("body") or ""
    else:
        text = "\n\n".join(p for p in (item.get("title"), item.get("selftext")) if p)
    if not text or text in ("[deleted]", "[removed]"):
        raise ValueError("thing has no text (deleted or removed)")
    author = item.get("author")
    return RawMention(
        platform="reddit", native_id=name, text=text[:20_000],
        url=f"https://www.reddit.com{item['permalink']}" if item.get("permalink") else None,
        created_at=datetime.fromtimestamp(created, timezone.utc),
        author={"handle": author_key("reddit", author)} if author and author != "[deleted]" else None,
        engagement={"likes": max(0, int(item.get("score") or 0)), "replies": int(item.get("num_comments") or 0)},
        reply_to_id=item.get("parent_id"), thread_id=item.get("link_id") or (name if name.startswith("t3_") else None),
        raw={"subreddit": item.get("subreddit")},
    )


class RedditSource(Source):
    name = "reddit"

    def __init__(self, client: RedditClient, http: PoliteClient, *, searches: list[str], subreddits: list[str],
                 interval_s: float = 120.0, max_pages: int = 10):
        self.client = client
        self.http = http
        self.listings = [(f"search:{q}", "/search", {"q": q, "sort": "new", "type": "link"}) for q in searches]
        self.listings += [(f"comments:{s}", f"/r/{s}/comments", {}) for s in subreddits]
        self.poll_interval_s = interval_s
        self.max_pages = max_pages
        self._state: dict[str, Any] = {}

    @property
    def checkpoint_key(self) -> str:
        return "reddit:" + hashlib.sha256("\n".join(sorted(k for k, _, _ in self.listings)).encode()).hexdigest()[:16]

    def sweep_cursor(self) -> Any | None:
        return copy.deepcopy(self._state) if self._state else None

    @classmethod
    def from_settings(cls, section: RedditSettings, context: SourceContext) -> "RedditSource":
        secret = read_secret(section.client_secret, section.client_secret_file, "connectors.reddit.client_secret")
        if not section.client_id or not secret:
            raise ConfigError("connectors.reddit: client_id and client_secret (env or file) are required")
        if not section.searches and not section.subreddits:
            raise ConfigError("connectors.reddit: configure searches and/or subreddits")
        http = PoliteClient("reddit", timeout_s=context.timeout_s)
        return cls(RedditClient(http, section.client_id, secret, section.auth_url, section.api_url), http,
                   searches=section.searches, subreddits=section.subreddits, interval_s=section.interval_s,
                   max_pages=section.max_pages)

    async def ping(self) -> str:
        c = self.client
        resp = await probe(self.http, "POST", f"{c.auth_url}/api/v1/access_token", data={"grant_type": "client_credentials"},
                           auth=(c.client_id, c.client_secret))
        token = json_body(resp, "reddit").get("access_token")
        if not token:  # Reddit answers some refusals with 200 and {"error": ...}
            raise SourceError(f"reddit: no access token for this client_id and secret ({resp.text[:200]})", resp.status_code)
        # Every listing: a misspelt subreddit is a 404 (or 403 when private or banned) to name now.
        for _key, path, params in self.listings:
            await probe(self.http, "GET", f"{c.api_url}{path}", params={**params, "limit": 1},
                        headers={"Authorization": f"bearer {token}"})
        return f"token granted; {len(self.listings)} listing(s) answered"

    async def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        self._state = copy.deepcopy(cursor) if cursor else {}
        for key, path, params in self.listings:
            state = self._state.setdefault(key, {"ts": 0, "ids": []})
            known = set(state["ids"])
            fresh: list[dict[str, Any]] = []
            async for page in self.client.listing(path, params, self.max_pages):
                fresh += [i for i in page if (i.get("created_utc") or 0) >= state["ts"] and i.get("name") not in known]
                if any((i.get("created_utc") or 0) < state["ts"] for i in page):
                    break  # reached what we already had
            fresh.sort(key=lambda i: (i.get("created_utc") or 0, str(i.get("name"))))
            for position, item in enumerate(fresh):
                try:
                    out = Fetched(mention=to_mention(item))
                except (ValueError, TypeError) as err:
                    out = Fetched(rejected=Rejected(f"reddit: {err}", "invalid_thing", repr(item)[:5000], position))
                created = item.get("created_utc")
                if isinstance(created, (int, float)):
                    if created > state["ts"]:
                        state["ts"], state["ids"] = created, []
                    state["ids"].append(item.get("name"))
                yield Fetched(mention=out.mention, rejected=out.rejected, cursor=copy.deepcopy(self._state))

    async def close(self) -> None:
        await self.http.aclose()
