"""Posts from X's filtered stream -> RawMention.

The stream has no resume position: what is missed while disconnected is gone, unless the app's
tier offers ``backfill_minutes`` (up to 5), which we request on every reconnect for the time we
were away (duplicates are absorbed by mention ids). Rules are synced from the settings before
the first connect. Reconnects follow X's published guidance: on HTTP errors wait from 5 s,
doubling up to 320 s; on 429 from 60 s (or as long as the rate-limit headers say); on network
errors and stalls from 0.25 s up to 16 s. 401/403 (bad token, tier without stream access) stop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx

from stimmung.connectors.base import Fetched, Rejected, Source, SourceContext
from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.connectors.probe import json_body, probe
from stimmung.connectors.x.client import TAG_PREFIX, StreamDisconnected, StreamRefused, XStreamClient
from stimmung.connectors.x.settings import XSettings
from stimmung.metrics import CONNECTOR_ERRORS, CONNECTOR_RATE_LIMIT_WAIT, CONNECTOR_UP
from stimmung.retry import Backoff
from stimmung.schemas.mention import RawMention
from stimmung.sections import ConfigError, read_secret

log = logging.getLogger(__name__)
FINAL_STATUS = {400, 401, 403, 404}


def to_mention(obj: dict[str, Any]) -> RawMention:
    data = obj.get("data")
    if not isinstance(data, dict) or not data.get("id") or not data.get("created_at"):
        raise ValueError("post lacks data.id or data.created_at")
    text = (data.get("note_tweet") or {}).get("text") or data.get("text")  # long posts: the full text
    if not isinstance(text, str) or not text.strip():
        raise ValueError("post has no text")
    users = {u.get("id"): u for u in (obj.get("includes") or {}).get("users") or [] if isinstance(u, dict)}
    user = users.get(data.get("author_id")) or {}
    # The numeric user id is the author's key (usernames can be renamed); the username is display only.
    handle = data.get("author_id") or user.get("id") or user.get("username")
    metrics = data.get("public_metrics") or {}
    replied = [r.get("id") for r in data.get("referenced_tweets") or [] if r.get("type") == "replied_to"]
    return RawMention(
        platform="x", native_id=str(data["id"]), text=text[:20_000],
        # The /i/web/ form needs no handle: the address does not name the author.
        url=f"https://x.com/i/web/status/{data['id']}",
        created_at=datetime.fromisoformat(str(data["created_at"]).replace("Z", "+00:00")),
        language_hint=data.get("lang") if data.get("lang") not in (None, "und", "zxx", "qme", "qht") else None,
        author={"handle": str(handle), "display_handle": user.get("username") or None, "display_name": user.get("name") or None,
                "follower_count": (user.get("public_metrics") or {}).get("followers_count")} if handle else None,
        engagement={"likes": metrics.get("like_count") or 0,
                    "shares": (metrics.get("retweet_count") or 0) + (metrics.get("quote_count") or 0),
                    "replies": metrics.get("reply_count") or 0, "views": metrics.get("impression_count")},
        reply_to_id=replied[0] if replied else None, thread_id=data.get("conversation_id"),
        raw={"matching_rules": [str(r.get("tag", "")).removeprefix(TAG_PREFIX) for r in obj.get("matching_rules") or []]},
    )


class XStreamSource(Source):
    name = "x"

    def __init__(self, client: XStreamClient, rules: dict[str, str], *, backfill_minutes: int = 0,
                 max_reconnects: int | None = None, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
        self.client = client
        self.rules = rules
        self.backfill_minutes = backfill_minutes
        self.max_reconnects = max_reconnects  # None: forever (tests bound it)
        self.sleep = sleep
        self.poll_interval_s = 0.0  # a stream

    @property
    def checkpoint_key(self) -> str:
        return f"x:{self.client.base_url}"

    def _backfill(self, last_seen: float | None) -> int:
        if not self.backfill_minutes or last_seen is None:
            return 0
        away = math.ceil((time.time() - last_seen) / 60)
        return max(1, min(self.backfill_minutes, away))

    @classmethod
    def from_settings(cls, section: XSettings, context: SourceContext) -> "XStreamSource":
        token = read_secret(section.bearer_token, section.bearer_token_file, "connectors.x.bearer_token")
        if not token:
            raise ConfigError("connectors.x: bearer_token (env or file) is required")
        rules = section.rules or {b: f'"{b}" -is:retweet' for b in context.brands}
        if not rules:
            raise ConfigError("connectors.x.rules: no rules configured (and no brands to build them from)")
        http = PoliteClient("x", timeout_s=context.timeout_s)
        return cls(XStreamClient(http, token, section.base_url, section.stall_s), rules,
                   backfill_minutes=section.backfill_minutes)

    async def ping(self) -> str:
        # Reading the rules needs what the stream needs: a valid bearer token of an enrolled app.
        resp = await probe(self.client.http, "GET", self.client.rules_url, headers=self.client.headers)
        body = json_body(resp, "x")
        if not isinstance(body, dict):
            raise SourceError(f"x: {resp.url} answered, but not with the stream rules")
        return f"stream rules readable ({len(body.get('data') or [])} rule(s) set)"

    async def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        added, deleted = await self.client.sync_rules(self.rules)
        log.info("x stream rules synced", extra={"connector": self.name, "rules": len(self.rules), "added": added, "deleted": deleted})
        # The cursor only remembers when we last heard from the stream (for backfill after a restart).
        last_seen: float | None = (cursor or {}).get("seen_at")
        http_backoff, limit_backoff, net_backoff = Backoff(5.0, 320.0), Backoff(60.0, 900.0), Backoff(0.25, 16.0)
        reconnects = 0
        while True:
            try:
                async for obj in self.client.stream(self._backfill(last_seen)):
                    for backoff in (http_backoff, limit_backoff, net_backoff):
                        backoff.reset()
                    CONNECTOR_UP.labels(connector=self.name).set(1)
                    last_seen = time.time()
                    position = {"seen_at": last_seen}
                    if isinstance(obj, str):
                        yield Fetched(rejected=Rejected("x: stream line is not a JSON object", "invalid_line", obj[:5000]),
                                      cursor=position)
                        continue
                    try:
                        yield Fetched(mention=to_mention(obj), cursor=position)
                    except (ValueError, TypeError, AttributeError) as err:
                        yield Fetched(rejected=Rejected(f"x: {err}", "invalid_post", repr(obj)[:5000]), cursor=position)
                raise StreamDisconnected("x closed the stream")
            except StreamRefused as err:
                CONNECTOR_ERRORS.labels(connector=self.name, kind=str(err.status)).inc()
                if err.status in FINAL_STATUS:
                    raise SourceError(f"x: the filtered stream refused us ({err}); check the bearer token and the app's tier",
                                      err.status) from None
                if err.status == 429:
                    delay = err.retry_after_s if err.retry_after_s is not None else limit_backoff.next_delay() + 60.0
                    CONNECTOR_RATE_LIMIT_WAIT.labels(connector=self.name).inc(delay)
                else:
                    delay = 5.0 + http_backoff.next_delay()
                why = str(err)
            except (StreamDisconnected, httpx.TransportError) as err:
                CONNECTOR_ERRORS.labels(connector=self.name, kind="connection").inc()
                delay = net_backoff.next_delay()
                why = f"{type(err).__name__}: {err}"
            CONNECTOR_UP.labels(connector=self.name).set(0)
            reconnects += 1
            if self.max_reconnects is not None and reconnects > self.max_reconnects:
                return
            log.warning("x stream interrupted; reconnecting", extra={"connector": self.name, "error": why[:300],
                                                                     "retry_in_s": round(delay, 2)})
            await self.sleep(delay)

    async def close(self) -> None:
        await self.client.http.aclose()
