"""X API v2 filtered stream: rules over REST, posts as newline-delimited JSON over one long GET.

- Rules: ``GET/POST /2/tweets/search/stream/rules`` (``{"add": [{"value", "tag"}]}``,
  ``{"delete": {"ids": [...]}}``). Ours carry a ``stimmung:`` tag prefix, so syncing never
  touches rules someone else added to the same app.
- Stream: ``GET /2/tweets/search/stream`` with field expansions; one JSON object per line, an
  empty line as keep-alive every ~20 s. Silence longer than ``stall_s`` means the connection
  is dead even if TCP does not say so (X's guidance: reconnect after 90 s).
- Disconnects are announced in-band as ``{"errors": [{"title": "operational-disconnect", ...}]}``.
Requires a bearer token of an app on a paid tier; a 401/403 is final, not retried.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import httpx

from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.retry import retry_after

TAG_PREFIX = "stimmung:"
TWEET_FIELDS = "created_at,lang,author_id,conversation_id,public_metrics,referenced_tweets,note_tweet"
USER_FIELDS = "username,name,public_metrics"


class StreamRefused(Exception):
    """The stream answered an HTTP error; ``retry_after_s`` when the server said how long."""

    def __init__(self, status: int, body: str, retry_after_s: float | None):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.retry_after_s = retry_after_s


class StreamDisconnected(Exception):
    """X ended the stream in-band (operational-disconnect) or went silent: reconnect."""


class XStreamClient:
    def __init__(self, http: PoliteClient, bearer_token: str, base_url: str = "https://api.x.com",
                 stall_s: float = 90.0):
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {bearer_token}"}
        self.stall_s = stall_s

    @property
    def rules_url(self) -> str:
        return f"{self.base_url}/2/tweets/search/stream/rules"

    async def rules(self) -> list[dict[str, Any]]:
        resp = await self.http.get(self.rules_url, headers=self.headers)
        return list(resp.json().get("data") or [])

    async def _change_rules(self, body: dict[str, Any]) -> None:
        resp = await self.http.post(self.rules_url, headers=self.headers, json=body)
        data = resp.json()
        # A duplicate is fine (another replica added it first); anything else is the operator's rule.
        errors = [e for e in data.get("errors") or [] if e.get("title") != "DuplicateRule"]
        if errors:
            details = "; ".join(f"{e.get('value', '')!r}: {e.get('title')} {e.get('details') or e.get('detail') or ''}".strip()
                                for e in errors)
            raise SourceError(f"x: rules refused: {details}", resp.status_code)

    async def sync_rules(self, wanted: dict[str, str]) -> tuple[int, int]:
        """Make our rules (tag -> value) exactly ``wanted``; returns (added, deleted)."""
        current = [r for r in await self.rules() if str(r.get("tag", "")).startswith(TAG_PREFIX)]
        have = {(r["tag"], r["value"]) for r in current}
        stale = [r["id"] for r in current if (r["tag"], r["value"]) not in {(TAG_PREFIX + t, v) for t, v in wanted.items()}]
        missing = [{"value": v, "tag": TAG_PREFIX + t} for t, v in wanted.items() if (TAG_PREFIX + t, v) not in have]
        if stale:
            await self._change_rules({"delete": {"ids": stale}})
        if missing:
            await self._change_rules({"add": missing})
        return len(missing), len(stale)

    async def stream(self, backfill_minutes: int = 0) -> AsyncIterator[dict[str, Any] | str]:
        """Objects from the stream; a line that is not a JSON object is yielded as the raw string."""
        params = {"tweet.fields": TWEET_FIELDS, "expansions": "author_id", "user.fields": USER_FIELDS}
        if backfill_minutes:
            params["backfill_minutes"] = str(backfill_minutes)
        timeout = httpx.Timeout(30.0, read=self.stall_s)  # a read waits at most stall_s for any byte
        async with self.http.http.stream("GET", f"{self.base_url}/2/tweets/search/stream", params=params,
                                         headers=self.headers, timeout=timeout) as resp:
            if resp.status_code != 200:
                body = (await resp.aread()).decode("utf-8", "replace")
                raise StreamRefused(resp.status_code, body, retry_after(resp.headers))
            try:
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue  # keep-alive
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        yield line
                        continue
                    if not isinstance(obj, dict):
                        yield line
                    elif "data" not in obj and obj.get("errors"):
                        titles = ", ".join(str(e.get("title")) for e in obj["errors"])
                        raise StreamDisconnected(f"x ended the stream: {titles}")
                    else:
                        yield obj
            except httpx.ReadTimeout:
                raise StreamDisconnected(f"no data or keep-alive for {self.stall_s:.0f} s") from None
