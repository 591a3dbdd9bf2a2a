"""Reddit's OAuth API: an application-only token (client credentials), then Listings.

``/search?q=…&sort=new`` finds posts (t3) site-wide or in one subreddit; ``/r/<sub>/comments``
lists a subreddit's newest comments (t1). Listings are newest first and paged with ``after``;
the ``X-Ratelimit-*`` headers (reset in seconds) are honoured by the PoliteClient.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

from stimmung.connectors.http import PoliteClient, SourceError


class RedditClient:
    def __init__(self, http: PoliteClient, client_id: str, client_secret: str,
                 auth_url: str = "https://www.reddit.com", api_url: str = "https://oauth.reddit.com"):
        self.http = http
        self.client_id, self.client_secret = client_id, client_secret
        self.auth_url, self.api_url = auth_url.rstrip("/"), api_url.rstrip("/")
        self._token: str | None = None
        self._expires = 0.0

    async def token(self) -> str:
        if self._token is None or time.monotonic() > self._expires - 60:
            resp = await self.http.post(f"{self.auth_url}/api/v1/access_token", data={"grant_type": "client_credentials"},
                                        auth=(self.client_id, self.client_secret))
            body = resp.json()
            if "access_token" not in body:
                raise SourceError(f"reddit: no access token ({body.get('error', body)})")
            self._token = body["access_token"]
            self._expires = time.monotonic() + float(body.get("expires_in", 3600))
        return self._token

    async def listing(self, path: str, params: dict[str, Any], pages: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Up to ``pages`` pages of a Listing, newest first, each item the ``data`` of a thing."""
        after = None
        for _ in range(pages):
            query = {**params, "limit": 100, "raw_json": 1, **({"after": after} if after else {})}
            resp = await self.http.get(f"{self.api_url}{path}", params=query,
                                       headers={"Authorization": f"bearer {await self.token()}"})
            data = resp.json().get("data") or {}
            children = [c.get("data") or {} for c in data.get("children", [])]
            if not children:
                return
            yield children
            after = data.get("after")
            if not after:
                return
