"""Mastodon statuses from hashtag/public timelines of several instances -> RawMention.

The same status reaches many instances under different local ids; its ``uri`` is global, so it
is the native id: seen through two instances it is still one mention. Boosts are skipped (the
original is a status of its own). Cursor: the newest local id per (instance, timeline).
"""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime
from typing import Any, AsyncIterator

from stimmung.connectors.base import Fetched, Rejected, Source
from stimmung.connectors.http import PoliteClient
from stimmung.connectors.mastodon.client import MastodonClient
from stimmung.connectors.text import html_to_text
from stimmung.schemas.mention import RawMention


def to_mention(status: dict[str, Any], instance: str) -> RawMention:
    account = status.get("account") or {}
    text = "\n\n".join(p for p in (html_to_text(status.get("spoiler_text")), html_to_text(status.get("content"))) if p)
    if not status.get("uri") or not status.get("created_at") or not text:
        raise ValueError("status lacks uri, created_at or content")
    acct = account.get("acct") or account.get("username")
    if acct and "@" not in acct:  # local accounts are given without their domain
        acct = f"{acct}@{instance}"
    return RawMention(
        platform="mastodon", native_id=str(status["uri"])[:512], text=text[:20_000],
        url=status.get("url") or status.get("uri"), language_hint=status.get("language"),
        created_at=datetime.fromisoformat(str(status["created_at"]).replace("Z", "+00:00")),
        author={"handle": acct, "display_name": account.get("display_name") or None,
                "follower_count": account.get("followers_count")} if acct else None,
        engagement={"likes": status.get("favourites_count") or 0, "shares": status.get("reblogs_count") or 0,
                    "replies": status.get("replies_count") or 0},
        reply_to_id=str(status["in_reply_to_id"]) if status.get("in_reply_to_id") else None,
        raw={"instance": instance, "id": status.get("id"), "tags": [t.get("name") for t in status.get("tags", [])][:20]},
    )


class MastodonSource(Source):
    name = "mastodon"

    def __init__(self, instances: list[tuple[str, list[str], str | None]], http: PoliteClient, interval_s: float = 60.0):
        """instances: (base URL, timelines like ``tag:nordbahn``/``public``/``local``, token or None)."""
        self.instances = [(MastodonClient(http, url, token), timelines) for url, timelines, token in instances]
        self.http = http
        self.poll_interval_s = interval_s
        self._state: dict[str, str] = {}

    @property
    def checkpoint_key(self) -> str:
        spec = "\n".join(sorted(f"{c.base_url} {t}" for c, ts in self.instances for t in ts))
        return "mastodon:" + hashlib.sha256(spec.encode()).hexdigest()[:16]

    def sweep_cursor(self) -> Any | None:
        return copy.deepcopy(self._state) if self._state else None

    async def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        self._state = dict(cursor or {})
        for client, timelines in self.instances:
            instance = client.base_url.split("://", 1)[-1]
            for timeline in timelines:
                key = f"{client.base_url} {timeline}"
                async for page in client.pages_after(timeline, self._state.get(key)):
                    for position, status in enumerate(page):
                        if status.get("id"):
                            self._state[key] = str(status["id"])
                        if status.get("reblog"):
                            continue
                        try:
                            item = Fetched(mention=to_mention(status, instance))
                        except (ValueError, TypeError) as err:
                            item = Fetched(rejected=Rejected(f"mastodon {instance}: {err}", "invalid_status",
                                                            repr(status)[:5000], position))
                        yield Fetched(mention=item.mention, rejected=item.rejected, cursor=dict(self._state))

    async def close(self) -> None:
        await self.http.aclose()
