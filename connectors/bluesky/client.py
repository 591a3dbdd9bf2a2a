"""Bluesky Jetstream over WebSocket: the v2 xrpc stream, and the legacy v1 ``/subscribe``.

v2: ``/xrpc/network.bsky.jetstream.subscribeEvents`` with the ``xrpc.v1.json`` subprotocol;
every frame is ``{"$type": "message", "payload": {...#commit|#account|#info...}}`` or a terminal
``{"$type": "error", ...}``; ``cursor`` is the last ``seq`` (inclusive). A cursor older than the
server keeps is refused *before* the upgrade with HTTP 400 ``{"error": "CursorTooOld", ...}``.
v1: ``/subscribe?wantedCollections=...&cursor=<unix µs>`` with ``kind``/``commit``/``time_us``.
Both are normalised to ``Event``. Given Jetstream's zstd dictionary, we ask for compressed frames
(``compress=true`` and the ``Socket-Encoding: zstd`` header): binary frames are then zstd data
compressed against that dictionary, text frames stay plain JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import zstandard
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

SUBPROTOCOL = Subprotocol("xrpc.v1.json")
POST = "app.bsky.feed.post"


class CursorTooOld(Exception):
    def __init__(self, floor: int | None, message: str):
        super().__init__(message)
        self.floor = floor


class StreamError(Exception):
    """A terminal error frame (e.g. ConsumerTooSlow): reconnect from the last durable cursor."""


@dataclass
class Event:
    kind: str  # commit | account | info
    position: int  # v2 seq, v1 time_us: what the cursor resumes from
    did: str | None = None
    time_us: int | None = None
    operation: str | None = None
    collection: str | None = None
    rkey: str | None = None
    record: dict[str, Any] | None = None
    active: bool | None = None
    status: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    raw: str = ""


def _floor(body: str) -> int | None:
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    for key in ("floor", "oldestCursor", "minCursor", "cursor"):
        if isinstance(data.get(key), int):
            return data[key]
    found = re.search(r"(\d{3,})", str(data.get("message", body)))
    return int(found.group(1)) if found else None


def parse_v2(text: str) -> Event:
    frame = json.loads(text)
    if frame.get("$type") == "error":
        raise StreamError(f"{frame.get('error')}: {frame.get('message', '')}")
    p = frame.get("payload") or {}
    kind = str(p.get("$type", "")).rpartition("#")[2]
    return Event(kind=kind, position=int(p["seq"]) if "seq" in p else -1, did=p.get("did"), time_us=p.get("time"),
                 operation=p.get("operation"), collection=p.get("collection"), rkey=p.get("rkey"),
                 record=p.get("record"), active=p.get("active"), status=p.get("status"),
                 info={k: v for k, v in p.items() if kind == "info"}, raw=text)


def parse_v1(text: str) -> Event:
    frame = json.loads(text)
    kind, commit, account = frame.get("kind"), frame.get("commit") or {}, frame.get("account") or {}
    return Event(kind=kind or "", position=int(frame["time_us"]), did=frame.get("did"), time_us=frame.get("time_us"),
                 operation=commit.get("operation"), collection=commit.get("collection"), rkey=commit.get("rkey"),
                 record=commit.get("record"), active=account.get("active"), status=account.get("status"), raw=text)


class JetstreamClient:
    def __init__(self, base_url: str, legacy: bool = False, collections: tuple[str, ...] = (POST,),
                 zstd_dictionary: bytes | None = None):
        self.base_url = base_url.rstrip("/")
        self.legacy = legacy
        self.collections = collections
        self._zstd = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(zstd_dictionary)) if zstd_dictionary else None

    def _decode(self, message: str | bytes) -> str:
        if isinstance(message, str):
            return message
        if self._zstd is not None:
            try:
                # frames may omit the content size: a streaming decompressor does not need it
                return self._zstd.decompressobj().decompress(message).decode("utf-8", "replace")
            except zstandard.ZstdError:
                return f"<undecodable zstd frame of {len(message)} bytes>"
        return message.decode("utf-8", "replace")

    def url(self, cursor: int | None) -> str:
        if self.legacy:
            params = [("wantedCollections", c) for c in self.collections]
            path = "/subscribe"
        else:
            params = [("kinds", "commit"), ("kinds", "account"), ("kinds", "info")]
            params += [("collections", c) for c in self.collections]
            path = "/xrpc/network.bsky.jetstream.subscribeEvents"
        if cursor is not None:
            params.append(("cursor", str(cursor)))
        if self._zstd is not None:
            params.append(("compress", "true"))
        return f"{self.base_url}{path}?{urlencode(params)}"

    async def handshake(self, timeout_s: float = 15.0) -> None:
        """Open the subscription and close it at once: the instance is there and accepts us."""
        ws = await connect(self.url(None), subprotocols=None if self.legacy else [SUBPROTOCOL],
                           additional_headers={"Socket-Encoding": "zstd"} if self._zstd else None,
                           open_timeout=timeout_s)
        await ws.close()

    async def events(self, cursor: int | None) -> AsyncIterator[Event]:
        try:
            ws = await connect(self.url(cursor), subprotocols=None if self.legacy else [SUBPROTOCOL],
                               additional_headers={"Socket-Encoding": "zstd"} if self._zstd else None,
                               max_size=4 * 1024 * 1024, open_timeout=30)
        except InvalidStatus as err:
            body = err.response.body.decode("utf-8", "replace") if err.response.body else ""
            if err.response.status_code == 400 and "CursorTooOld" in body:
                raise CursorTooOld(_floor(body), body) from None
            raise
        parse = parse_v1 if self.legacy else parse_v2
        async with ws:
            async for message in ws:
                text = self._decode(message)
                try:
                    yield parse(text)
                except (ValueError, KeyError, TypeError):  # not JSON, or not an event we understand
                    yield Event(kind="malformed", position=-1, raw=text)
