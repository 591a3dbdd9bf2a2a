"""The HTTP side every polling connector shares: polite by default.

- 429 and 503 wait as long as the server says (``Retry-After``, or the ``X-RateLimit-Reset`` of
  an exhausted budget), then retry; the wait is counted in
  ``stimmung_connector_rate_limit_wait_seconds_total``.
- When a response says the budget is used up (``X-RateLimit-Remaining: 0``), the *next* request
  waits for the reset instead of provoking a 429.
- Connection errors, timeouts and 5xx retry with exponential backoff and jitter, up to
  ``max_attempts``; then ``SourceUnavailable`` tells the runner to back off the whole poll.
- Other 4xx are the caller's problem: raised at once as ``SourceError`` (wrong token, bad query).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import httpx

from stimmung import __version__
from stimmung.metrics import CONNECTOR_ERRORS, CONNECTOR_RATE_LIMIT_WAIT, CONNECTOR_UP
from stimmung.retry import Backoff, retry_after

log = logging.getLogger(__name__)
USER_AGENT = f"stimmung/{__version__} (+https://github.com/stimmung/stimmung; social listening)"


class SourceError(RuntimeError):
    """The source refused the request for a reason retrying will not fix."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class SourceUnavailable(SourceError):
    """The source stayed unreachable or failing after every retry."""


class PoliteClient:
    def __init__(self, connector: str, *, headers: dict[str, str] | None = None, timeout_s: float = 30.0,
                 max_attempts: int = 6, max_wait_s: float = 900.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.connector = connector
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self._not_before = 0.0  # monotonic time before which the budget is exhausted
        self.http = httpx.AsyncClient(headers={"User-Agent": USER_AGENT, **(headers or {})}, timeout=timeout_s,
                                      follow_redirects=True, transport=transport)

    async def _wait(self, seconds: float, why: str) -> None:
        seconds = min(seconds, self.max_wait_s)
        if seconds > 0:
            CONNECTOR_RATE_LIMIT_WAIT.labels(connector=self.connector).inc(seconds)
            log.info("waiting for the source's rate limit", extra={"connector": self.connector, "wait_s": round(seconds, 2), "why": why})
            await self.sleep(seconds)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        backoff = Backoff(base_s=0.5, cap_s=60.0)
        last_error = ""
        for _attempt in range(1, self.max_attempts + 1):
            ahead = self._not_before - time.monotonic()
            if ahead > 0:
                await self._wait(ahead, "budget exhausted")
            try:
                resp = await self.http.request(method, url, **kwargs)
            except httpx.TransportError as err:  # refused, reset, timed out, dropped mid-body
                CONNECTOR_ERRORS.labels(connector=self.connector, kind="connection").inc()
                CONNECTOR_UP.labels(connector=self.connector).set(0)
                last_error = f"{type(err).__name__}: {err}"
                await self.sleep(backoff.next_delay())
                continue
            wait = retry_after(resp.headers)
            if resp.status_code in (429, 503):
                CONNECTOR_ERRORS.labels(connector=self.connector, kind=str(resp.status_code)).inc()
                last_error = f"HTTP {resp.status_code}"
                await self._wait(wait if wait is not None else backoff.next_delay(), f"HTTP {resp.status_code}")
                continue
            if resp.status_code >= 500:
                CONNECTOR_ERRORS.labels(connector=self.connector, kind="5xx").inc()
                CONNECTOR_UP.labels(connector=self.connector).set(0)
                last_error = f"HTTP {resp.status_code}"
                await self.sleep(backoff.next_delay())
                continue
            CONNECTOR_UP.labels(connector=self.connector).set(1)
            if wait is not None:  # this answer used up the budget: the next request waits
                self._not_before = time.monotonic() + min(wait, self.max_wait_s)
            if resp.status_code >= 400 and resp.status_code != 304:
                CONNECTOR_ERRORS.labels(connector=self.connector, kind=str(resp.status_code)).inc()
                raise SourceError(f"{self.connector}: {url} answered {resp.status_code}: {resp.text[:200]}",
                                  resp.status_code)
            return resp
        raise SourceUnavailable(f"{self.connector}: {url} failed {self.max_attempts} times (last: {last_error})")

    async def aclose(self) -> None:
        await self.http.aclose()
