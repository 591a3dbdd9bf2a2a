"""Hacker News stories and comments matching search queries -> RawMention.

Cursor per query: the newest ``created_at_i`` published and the ids seen in that second. The
next sweep asks from that second on (inclusive: items of the same second can arrive late) and
drops the ids it already has.
"""

from __future__ import annotations

import copy
import hashlib
import time
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

from stimmung.connectors.base import Fetched, Rejected, Source, SourceContext
from stimmung.connectors.hackernews.client import AlgoliaHNClient
from stimmung.connectors.hackernews.settings import HackerNewsSettings
from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.connectors.probe import json_body, probe
from stimmung.connectors.text import html_to_text
from stimmung.schemas.mention import RawMention
from stimmung.sections import ConfigError

ITEM_URL = "https://news.ycombinator.com/item?id={}"


def to_mention(hit: dict[str, Any]) -> RawMention:
    object_id, created = hit.get("objectID"), hit.get("created_at_i")
    if not object_id or not isinstance(created, int):
        raise ValueError("hit lacks objectID or created_at_i")
    if hit.get("comment_text"):
        text = html_to_text(hit["comment_text"])
    else:  # a story: its title, and its text for Ask/Show HN
        text = "\n\n".join(p for p in (html_to_text(hit.get("title")), html_to_text(hit.get("story_text"))) if p)
    if not text:
        raise ValueError("hit has no title or text")
    return RawMention(
        platform="hackernews", native_id=str(object_id), text=text[:20_000], url=ITEM_URL.format(object_id),
        created_at=datetime.fromtimestamp(created, timezone.utc),
        author={"handle": hit["author"]} if hit.get("author") else None,
        engagement={"likes": hit.get("points") or 0, "replies": hit.get("num_comments") or 0},
        reply_to_id=str(hit["parent_id"]) if hit.get("parent_id") else None,
        thread_id=str(hit["story_id"]) if hit.get("story_id") else None,
        raw={"tags": hit.get("_tags", [])[:10], "story_url": hit.get("url") or hit.get("story_url")},
    )


class HackerNewsSource(Source):
    name = "hackernews"

    def __init__(self, queries: list[str], http: PoliteClient, *, base_url: str = "https://hn.algolia.com/api/v1",
                 tags: str = "(story,comment)", hits_per_page: int = 100, interval_s: float = 60.0,
                 start_back_s: int = 86_400, clock: Callable[[], float] = time.time):
        self.queries = queries
        self.http = http
        self.client = AlgoliaHNClient(http, base_url, tags, hits_per_page)
        self.poll_interval_s = interval_s
        self.start_back_s = start_back_s
        self.clock = clock
        self._state: dict[str, Any] = {}

    @property
    def checkpoint_key(self) -> str:
        return "hackernews:" + hashlib.sha256("\n".join(sorted(self.queries)).encode()).hexdigest()[:16]

    def sweep_cursor(self) -> Any | None:
        return copy.deepcopy(self._state) if self._state else None

    @classmethod
    def from_settings(cls, section: HackerNewsSettings, context: SourceContext) -> "HackerNewsSource":
        queries = section.queries or list(context.brands)
        if not queries:
            raise ConfigError("connectors.hackernews.queries: no queries configured (and no brands to search for)")
        return cls(queries, PoliteClient("hackernews", timeout_s=context.timeout_s), base_url=section.base_url,
                   tags=section.tags, hits_per_page=section.hits_per_page, interval_s=section.interval_s,
                   start_back_s=section.start_back_s)

    async def ping(self) -> str:
        resp = await probe(self.http, "GET", f"{self.client.base_url}/search_by_date",
                           params={"query": self.queries[0], "tags": self.client.tags, "hitsPerPage": 1})
        body = json_body(resp, "hackernews")
        if not isinstance(body, dict) or "hits" not in body:
            raise SourceError(f"hackernews: {resp.url} is not Algolia's search API (no 'hits' in the answer)")
        return f"Algolia search answered ({body.get('nbHits', '?')} hits for {self.queries[0]!r})"

    async def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        self._state = copy.deepcopy(cursor) if cursor else {}
        now = int(self.clock())
        for query in self.queries:
            state = self._state.setdefault(query, {"ts": now - self.start_back_s, "ids": []})
            known = set(state["ids"])
            hits = await self.client.hits_between(query, state["ts"], now + 1)
            hits.sort(key=lambda h: (h.get("created_at_i") or 0, str(h.get("objectID"))))
            for position, hit in enumerate(hits):
                object_id = str(hit.get("objectID"))
                if object_id in known:
                    continue
                try:
                    item = Fetched(mention=to_mention(hit))
                except ValueError as err:
                    item = Fetched(rejected=Rejected(f"hackernews: {err}", "invalid_hit", repr(hit)[:5000], position))
                created = hit.get("created_at_i")
                if isinstance(created, int) and created >= state["ts"]:
                    if created > state["ts"]:
                        state["ts"], state["ids"] = created, []
                    state["ids"].append(object_id)
                known.add(object_id)
                yield Fetched(mention=item.mention, rejected=item.rejected, cursor=copy.deepcopy(self._state))

    async def close(self) -> None:
        await self.http.aclose()
