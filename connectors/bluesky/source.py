"""Bluesky posts from Jetstream -> RawMention; deleted/taken-down accounts -> privacy signals.

The author is identified by DID (stable; handles change), so a ``#account`` event's DID maps to
the same pseudonym as the author's mentions. Resume: the cursor is inclusive, so events at or
before the last published position are dropped. A cursor older than the server keeps restarts
at the floor it names (the gap is logged and counted); ``ConsumerTooSlow`` and dropped
connections reconnect from the last position with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from stimmung.connectors.base import Fetched, PrivacySignal, Rejected, Source, SourceContext
from stimmung.connectors.bluesky.client import POST, CursorTooOld, Event, JetstreamClient, StreamError
from stimmung.connectors.bluesky.settings import BlueskySettings
from stimmung.connectors.http import SourceError, SourceUnavailable
from stimmung.metrics import CONNECTOR_ERRORS, CONNECTOR_UP
from stimmung.retry import Backoff
from stimmung.schemas.identity import author_key
from stimmung.schemas.mention import RawMention
from stimmung.sections import ConfigError

log = logging.getLogger(__name__)
GONE = {"deleted", "takendown", "suspended"}


def to_mention(event: Event) -> RawMention:
    record = event.record or {}
    text = record.get("text")
    if not event.did or not event.rkey or not isinstance(text, str) or not text.strip():
        raise ValueError("post without did, rkey or text")
    created = record.get("createdAt")
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    except (AttributeError, ValueError):
        when = None
    if when is None or when.tzinfo is None:
        when = datetime.fromtimestamp((event.time_us or 0) / 1e6, timezone.utc)
    reply = record.get("reply") or {}
    langs = record.get("langs") or []
    return RawMention(
        platform="bluesky", native_id=f"at://{event.did}/{event.collection or POST}/{event.rkey}", text=text[:20_000],
        url=f"https://bsky.app/profile/{event.did}/post/{event.rkey}", created_at=when,
        language_hint=langs[0] if langs and isinstance(langs[0], str) else None,
        author={"handle": author_key("bluesky", event.did)},  # the DID: canonical (schemas/identity.py)
        reply_to_id=(reply.get("parent") or {}).get("uri"), thread_id=(reply.get("root") or {}).get("uri"),
    )


class JetstreamSource(Source):
    name = "bluesky"

    def __init__(self, client: JetstreamClient, *, max_reconnects: int | None = None):
        self.client = client
        self.max_reconnects = max_reconnects  # None: forever (tests bound it)
        self.poll_interval_s = 0.0  # a stream: fetch does not end on its own

    @property
    def checkpoint_key(self) -> str:
        return f"bluesky:{self.client.base_url}:{'v1' if self.client.legacy else 'v2'}"

    @classmethod
    def from_settings(cls, section: BlueskySettings, context: SourceContext) -> "JetstreamSource":
        dictionary = None
        if section.zstd_dictionary is not None:
            try:
                dictionary = Path(section.zstd_dictionary).read_bytes()
            except OSError as err:
                raise ConfigError(f"connectors.bluesky.zstd_dictionary: cannot read {section.zstd_dictionary}: "
                                  f"{err.strerror}") from None
        return cls(JetstreamClient(section.url, section.legacy, tuple(section.collections), dictionary))

    async def ping(self) -> str:
        url = self.client.url(None)
        try:
            await self.client.handshake()
        except InvalidStatus as err:
            status = err.response.status_code
            if status >= 500 or status == 429:
                raise SourceUnavailable(f"bluesky: {url} is failing (HTTP {status})") from None
            raise SourceError(f"bluesky: {url} refused the WebSocket upgrade (HTTP {status}): is this a Jetstream "
                              f"instance{' serving v1 (legacy: true)' if not self.client.legacy else ''}?", status) from None
        except (InvalidHandshake, InvalidURI) as err:
            raise SourceError(f"bluesky: {url} does not speak WebSocket: {err}") from None
        except (OSError, asyncio.TimeoutError) as err:
            raise SourceUnavailable(f"bluesky: cannot reach {url}: {type(err).__name__}: {err}") from None
        return "Jetstream accepted the subscription"

    async def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        position: int | None = (cursor or {}).get("position")
        backoff = Backoff(base_s=1.0, cap_s=120.0)
        reconnects = 0
        while self.max_reconnects is None or reconnects <= self.max_reconnects:
            try:
                async for event in self.client.events(position):
                    backoff.reset()
                    CONNECTOR_UP.labels(connector=self.name).set(1)
                    if event.kind == "malformed":
                        yield Fetched(rejected=Rejected("bluesky: unparsable frame", "invalid_frame", event.raw[:5000]))
                        continue
                    if event.kind == "info":
                        log.warning("jetstream info", extra={"connector": self.name, "info": event.info})
                        continue
                    if position is not None and event.position <= position:
                        continue  # the resume cursor is inclusive: already published
                    position = event.position
                    if event.kind == "account":
                        if event.active is False and (event.status or "") in GONE and event.did:
                            yield Fetched(privacy=PrivacySignal("bluesky", event.did, event.status or "",
                                                                str(event.time_us)), cursor={"position": position})
                        continue
                    if event.kind != "commit" or event.operation != "create" or event.collection != POST:
                        continue
                    try:
                        yield Fetched(mention=to_mention(event), cursor={"position": position})
                    except (ValueError, TypeError) as err:
                        yield Fetched(rejected=Rejected(f"bluesky: {err}", "invalid_post", event.raw[:5000]),
                                      cursor={"position": position})
                reason = "closed by server"
            except CursorTooOld as err:
                CONNECTOR_ERRORS.labels(connector=self.name, kind="cursor_too_old").inc()
                log.warning("cursor older than the server keeps: restarting at its floor; events in between are lost",
                            extra={"connector": self.name, "cursor": position, "floor": err.floor})
                position = err.floor
                reason = "cursor too old"
            except StreamError as err:
                CONNECTOR_ERRORS.labels(connector=self.name, kind="stream_error").inc()
                reason = str(err)
            except (ConnectionClosed, InvalidHandshake, InvalidStatus, OSError) as err:
                CONNECTOR_ERRORS.labels(connector=self.name, kind="connection").inc()
                CONNECTOR_UP.labels(connector=self.name).set(0)
                reason = f"{type(err).__name__}: {err}"
            reconnects += 1
            delay = 0.0 if reason == "cursor too old" else backoff.next_delay()
            log.warning("jetstream disconnected; reconnecting", extra={
                "connector": self.name, "reason": reason[:300], "cursor": position, "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)
