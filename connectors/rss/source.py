"""RSS/Atom feeds -> RawMention: news, blogs, forums.

Cursor per feed: the validators of the last complete fetch (ETag, Last-Modified) and the ids of
recently seen entries (bounded), so a feed that re-lists old entries, or a restart in the middle
of a feed, never publishes an entry twice (and if it did, the mention id would absorb it).
"""

from __future__ import annotations

import calendar
import copy
import hashlib
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import feedparser

from stimmung.connectors.base import Fetched, Rejected, Source, SourceContext
from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.connectors.probe import probe
from stimmung.connectors.rss.client import FeedClient
from stimmung.connectors.rss.settings import RSSSettings
from stimmung.connectors.text import html_to_text
from stimmung.schemas.mention import RawMention
from stimmung.sections import ConfigError

log = logging.getLogger(__name__)


def _entry_id(entry: Any) -> str | None:
    ident = entry.get("id") or entry.get("link")
    if ident:
        return str(ident)[:512]
    title, published = entry.get("title"), entry.get("published") or entry.get("updated")
    if title:
        return "sha1:" + hashlib.sha1(f"{title}\x1f{published}".encode()).hexdigest()
    return None


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), timezone.utc)
    return None


class RSSSource(Source):
    name = "rss"

    def __init__(self, feeds: list[str], http: PoliteClient, *, interval_s: float = 300.0, remember: int = 1000):
        self.feeds = feeds
        self.client = FeedClient(http)
        self.http = http
        self.poll_interval_s = interval_s
        self.remember = remember
        self._state: dict[str, Any] = {"feeds": {}}

    @property
    def checkpoint_key(self) -> str:
        return "rss:" + hashlib.sha256("\n".join(sorted(self.feeds)).encode()).hexdigest()[:16]

    def sweep_cursor(self) -> Any | None:
        return copy.deepcopy(self._state)

    def to_mention(self, feed_url: str, feed: Any, entry: Any) -> RawMention:
        title = html_to_text(entry.get("title"))
        body = html_to_text(entry.get("summary") or (entry.get("content") or [{}])[0].get("value"))
        text = "\n\n".join(p for p in (title, body) if p)
        if not text:
            raise ValueError("entry has neither title nor text")
        author = entry.get("author") or (entry.get("author_detail") or {}).get("name")
        return RawMention(
            platform="rss", native_id=_entry_id(entry) or "", text=text[:20_000], url=entry.get("link"),
            language_hint=(feed.feed.get("language") or None), created_at=_when(entry) or datetime.now(timezone.utc),
            author={"handle": author[:512]} if author else None,
            raw={"feed": feed_url, "entry_id": entry.get("id"), "tags": [t.get("term") for t in entry.get("tags", [])][:20]},
        )

    @classmethod
    def from_settings(cls, section: RSSSettings, context: SourceContext) -> "RSSSource":
        if not section.feeds:
            raise ConfigError("connectors.rss.feeds: no feeds configured")
        return cls(section.feeds, PoliteClient("rss", timeout_s=context.timeout_s), interval_s=section.interval_s)

    async def ping(self) -> str:
        # Every feed: a sweep skips a broken one, but a check is there to name it.
        for url in self.feeds:
            resp = await probe(self.http, "GET", url)
            if not feedparser.parse(resp.content).get("version"):
                raise SourceError(f"rss: {url} answered, but not with an RSS or Atom feed", resp.status_code)
        return f"{len(self.feeds)} feed(s) answered with a feed"

    async def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        self._state = copy.deepcopy(cursor) if cursor else {"feeds": {}}
        self.sweep_errors: list[str] = []
        for url in self.feeds:
            state = self._state["feeds"].setdefault(url, {"etag": None, "modified": None, "seen": []})
            try:
                resp = await self.client.fetch(url, state.get("etag"), state.get("modified"))
            except SourceError as err:  # this feed is broken or gone; the others go on
                log.warning("feed failed", extra={"connector": self.name, "feed": url, "error": str(err)[:300]})
                self.sweep_errors.append(f"{url}: {err}"[:500])
                continue
            if resp.not_modified:
                continue
            feed = resp.feed
            if feed.bozo and not feed.entries:
                yield Fetched(rejected=Rejected(f"{url}: not a feed ({feed.get('bozo_exception')})", "feed_parse",
                                                url.encode()), cursor=None)
                continue
            seen = state["seen"]
            known = set(seen)
            entries = sorted(feed.entries, key=lambda e: (_when(e) or datetime.min.replace(tzinfo=timezone.utc)))
            for position, entry in enumerate(entries):
                ident = _entry_id(entry)
                if ident in known:
                    continue
                try:
                    item = Fetched(mention=self.to_mention(url, feed, entry))
                except ValueError as err:
                    item = Fetched(rejected=Rejected(f"{url}: {err}", "invalid_entry", repr(dict(entry))[:5000], position))
                if ident:
                    seen.append(ident)
                    known.add(ident)
                    del seen[:-self.remember]
                yield Fetched(mention=item.mention, rejected=item.rejected, cursor=copy.deepcopy(self._state))
            # the feed was read completely: only now may the next request be conditional
            state["etag"], state["modified"] = resp.etag, resp.modified

    async def close(self) -> None:
        await self.http.aclose()
