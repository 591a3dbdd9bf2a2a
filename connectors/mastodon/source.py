"""Mastodon statuses from hashtag/public timelines of several instances -> RawMention.

The same status reaches many instances under different local ids; its ``uri`` is global, so it
is the native id: seen through two instances it is still one mention. Boosts are skipped (the
original is a status of its own). Cursor: the newest local id per (instance, timeline).

Instances with a token (and ``stream``) are followed live: subscribe to the streaming API first,
then catch up over REST from the cursor, then read the stream, skipping what the catch-up already
gave; after a disconnect the same again, with backoff. Instances without one are polled. In that
mode ``fetch`` never ends; items of all timelines share one bounded queue (backpressure).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx

from stimmung.connectors.base import Fetched, Rejected, Source, SourceContext
from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.connectors.mastodon.client import MastodonClient, MastodonStream, StreamRefused
from stimmung.connectors.mastodon.settings import MastodonSettings
from stimmung.connectors.probe import json_body, probe
from stimmung.connectors.text import html_to_text
from stimmung.metrics import CONNECTOR_ERRORS, CONNECTOR_RATE_LIMIT_WAIT, CONNECTOR_UP
from stimmung.retry import Backoff
from stimmung.schemas.identity import mastodon_account
from stimmung.schemas.mention import RawMention
from stimmung.sections import ConfigError, read_secret

log = logging.getLogger(__name__)


def to_mention(status: dict[str, Any], instance: str) -> RawMention:
    account = status.get("account") or {}
    text = "\n\n".join(p for p in (html_to_text(status.get("spoiler_text")), html_to_text(status.get("content"))) if p)
    if not status.get("uri") or not status.get("created_at") or not text:
        raise ValueError("status lacks uri, created_at or content")
    acct = account.get("acct") or account.get("username")
    if acct:  # user@host whichever instance reported it (local accounts come without their domain)
        acct = mastodon_account(str(acct), instance)
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


@dataclass(frozen=True)
class Instance:
    url: str
    timelines: list[str]
    token: str | None = None
    stream: bool = False  # follow the streaming API (needs the token)
    streaming_url: str | None = None


def _newer(a: str, b: str | None) -> bool:
    """Mastodon ids are numeric strings that grow with time (compare as numbers, not text)."""
    if b is None:
        return True
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return a > b


class MastodonSource(Source):
    name = "mastodon"

    def __init__(self, instances: list[Instance | tuple], http: PoliteClient, interval_s: float = 60.0,
                 queue_size: int = 1000, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 max_reconnects: int | None = None, stream_stall_s: float = 60.0):
        """instances: ``Instance``s, or (base URL, timelines like ``tag:nordbahn``/``public``/``local``, token)."""
        self.instances = [i if isinstance(i, Instance) else Instance(*i) for i in instances]
        self.clients = [(MastodonClient(http, i.url, i.token), i) for i in self.instances]
        self.http = http
        self.interval_s = interval_s
        self.streaming = any(i.stream and i.token for i in self.instances)
        self.poll_interval_s = 0.0 if self.streaming else interval_s  # 0: fetch is a never-ending stream
        self.queue_size = queue_size
        self.sleep = sleep
        self.max_reconnects = max_reconnects  # None: forever (tests bound it)
        self.stream_stall_s = stream_stall_s  # Mastodon sends a heartbeat every ~15 s
        self._state: dict[str, str] = {}

    @property
    def checkpoint_key(self) -> str:
        spec = "\n".join(sorted(f"{c.base_url} {t}" for c, i in self.clients for t in i.timelines))
        return "mastodon:" + hashlib.sha256(spec.encode()).hexdigest()[:16]

    def sweep_cursor(self) -> Any | None:
        return copy.deepcopy(self._state) if self._state else None

    @staticmethod
    def _item(status: dict[str, Any], instance: str, position: int | None = None) -> Fetched | None:
        if status.get("reblog"):
            return None
        try:
            return Fetched(mention=to_mention(status, instance))
        except (ValueError, TypeError, AttributeError) as err:
            return Fetched(rejected=Rejected(f"mastodon {instance}: {err}", "invalid_status", repr(status)[:5000], position))

    def _advance(self, key: str, status_id: str | None, item: Fetched | None) -> Fetched | None:
        if status_id and _newer(status_id, self._state.get(key)):
            self._state[key] = status_id
        if item is None:
            return None
        return Fetched(mention=item.mention, rejected=item.rejected, cursor=dict(self._state))

    @classmethod
    def from_settings(cls, section: MastodonSettings, context: SourceContext) -> "MastodonSource":
        if not section.instances:
            raise ConfigError("connectors.mastodon.instances: no instances configured")
        instances: list[Instance | tuple] = []
        for n, i in enumerate(section.instances):
            token = read_secret(i.token, i.token_file, f"connectors.mastodon.instances[{n}].token")
            instances.append(Instance(i.url, i.timelines, token, stream=i.streaming and token is not None,
                                      streaming_url=i.streaming_url))
        return cls(instances, PoliteClient("mastodon", timeout_s=context.timeout_s), interval_s=section.interval_s)

    async def ping(self) -> str:
        # Each instance's first timeline, newest status only, with the token: Mastodon refuses an
        # invalid token on every endpoint, and some instances refuse timelines without one.
        for client, inst in self.clients:
            timeline = inst.timelines[0]
            params = {"limit": 1, **({"local": "true"} if timeline == "local" else {})}
            resp = await probe(self.http, "GET", client.timeline_url(timeline), params=params, headers=client.headers)
            if not isinstance(json_body(resp, "mastodon"), list):
                raise SourceError(f"mastodon: {resp.url} answered, but not with a timeline: is {inst.url} a Mastodon instance?")
        return f"{len(self.clients)} instance(s) answered"

    async def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        self._state = dict(cursor or {})
        if not self.streaming:
            for client, inst in self.clients:
                for timeline in inst.timelines:
                    async for key, status_id, item in self._catch_up(client, timeline):
                        out = self._advance(key, status_id, item)
                        if out is not None:
                            yield out
            return
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.queue_size)
        tasks = [asyncio.create_task(self._follow(client, inst, timeline, queue))
                 for client, inst in self.clients for timeline in inst.timelines]
        running = len(tasks)
        try:
            while running:
                entry = await queue.get()
                if entry is None:  # a follower ended (tests bound reconnects)
                    running -= 1
                    continue
                if isinstance(entry, BaseException):
                    raise entry
                out = self._advance(*entry)
                if out is not None:
                    yield out
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _catch_up(self, client: MastodonClient, timeline: str) -> AsyncIterator[tuple[str, str | None, Fetched | None]]:
        key = f"{client.base_url} {timeline}"
        instance = client.base_url.split("://", 1)[-1]
        async for page in client.pages_after(timeline, self._state.get(key)):
            for position, status in enumerate(page):
                yield key, str(status["id"]) if status.get("id") else None, self._item(status, instance, position)

    async def _follow(self, client: MastodonClient, inst: Instance, timeline: str, queue: asyncio.Queue) -> None:
        key = f"{client.base_url} {timeline}"
        instance = client.base_url.split("://", 1)[-1]
        stream = MastodonStream(self.http, inst.url, inst.token, inst.streaming_url, self.stream_stall_s) if inst.stream and inst.token else None
        backoff = Backoff(base_s=1.0, cap_s=120.0)
        reconnects = 0
        try:
            while self.max_reconnects is None or reconnects <= self.max_reconnects:
                if stream is None:  # no token: poll this timeline
                    async for entry in self._catch_up(client, timeline):
                        await queue.put(entry)
                    reconnects += 1
                    await self.sleep(self.interval_s)
                    continue
                delay = None
                try:
                    async with stream.connect(timeline) as events:
                        # Subscribed: everything from now on is buffered in the connection while
                        # REST fetches what was posted since the cursor.
                        seen = self._state.get(key)
                        async for entry in self._catch_up(client, timeline):
                            seen = entry[1] if entry[1] and _newer(entry[1], seen) else seen
                            await queue.put(entry)
                        CONNECTOR_UP.labels(connector=self.name).set(1)
                        backoff.reset()
                        async for event, data in events:
                            if event not in ("update", "status.update"):
                                continue  # deletes, notifications, filters_changed
                            try:
                                status = json.loads(data)
                            except ValueError:
                                await queue.put((key, None, Fetched(rejected=Rejected(
                                    f"mastodon {instance}: stream event is not JSON", "invalid_status", data[:5000]))))
                                continue
                            status_id = str(status.get("id") or "") if isinstance(status, dict) else ""
                            if event == "update" and status_id and not _newer(status_id, seen):
                                continue  # the catch-up already gave it
                            seen = status_id if status_id and _newer(status_id, seen) else seen
                            item = self._item(status, instance) if isinstance(status, dict) else Fetched(
                                rejected=Rejected(f"mastodon {instance}: status is not an object", "invalid_status", data[:5000]))
                            await queue.put((key, status_id or None, item))
                except StreamRefused as err:
                    if err.status in (401, 403, 404):
                        raise
                    if err.retry_after_s is not None:
                        delay = err.retry_after_s
                        CONNECTOR_RATE_LIMIT_WAIT.labels(connector=self.name).inc(delay)
                    why = str(err)
                except (httpx.TransportError, SourceError) as err:  # dropped, stalled, REST catch-up failing
                    if isinstance(err, SourceError) and err.status in (401, 403):
                        raise
                    why = f"{type(err).__name__}: {err}"
                else:
                    why = "stream ended"
                CONNECTOR_ERRORS.labels(connector=self.name, kind="stream").inc()
                CONNECTOR_UP.labels(connector=self.name).set(0)
                reconnects += 1
                delay = backoff.next_delay() if delay is None else delay
                log.warning("mastodon stream interrupted; catching up and reconnecting",
                            extra={"connector": self.name, "instance": instance, "error": why[:300], "retry_in_s": round(delay, 2)})
                await self.sleep(delay)
            await queue.put(None)
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # surfaces in fetch(): the runner decides
            await queue.put(err)

    async def close(self) -> None:
        await self.http.aclose()
