"""One request to a source, answered now: the building block of every connector's ``ping()``.

Unlike ``PoliteClient.request`` nothing is retried or waited for: a check (``stimmung connect
NAME --check``, the first readiness answer) must say promptly whether the source is reachable and
accepts our credentials, and why not.
"""

from __future__ import annotations

from typing import Any

import httpx

from stimmung.connectors.http import PoliteClient, SourceError, SourceUnavailable


async def probe(http: PoliteClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The response if it is a success (2xx/3xx); else ``SourceError`` (refused: fix the
    configuration) or ``SourceUnavailable`` (unreachable, failing, rate-limited: try later)."""
    who = http.connector
    try:
        resp = await http.http.request(method, url, **kwargs)
    except httpx.TransportError as err:
        raise SourceUnavailable(f"{who}: cannot reach {url}: {type(err).__name__}: {err}".rstrip(": ")) from None
    status = resp.status_code
    if status < 400:
        return resp
    if status in (401, 403):
        raise SourceError(f"{who}: {url} refused the credentials (HTTP {status}): {resp.text[:200]}", status)
    if status == 404:
        raise SourceError(f"{who}: {url} does not exist (HTTP 404): check the configured URL, name or tag", status)
    if status == 429:
        raise SourceUnavailable(f"{who}: {url} is rate-limiting us (HTTP 429); try again later")
    if status >= 500:
        raise SourceUnavailable(f"{who}: {url} is failing (HTTP {status})")
    raise SourceError(f"{who}: {url} answered HTTP {status}: {resp.text[:200]}", status)


def json_body(resp: httpx.Response, what: str) -> Any:
    """The response's JSON, or ``SourceError`` saying the endpoint is not the API we expect."""
    try:
        return resp.json()
    except ValueError:
        raise SourceError(f"{what}: {resp.url} answered, but not with JSON: is this the right URL?") from None
