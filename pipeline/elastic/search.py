"""Search for on-call staff: a brand query plus facets -> Elasticsearch, and the same slice in Kibana.

The brand query is compiled with the same parser the stream uses (stimmung.brandquery), so what
someone searches is what the enricher tags. Facets (sentiment, topic, brand, language, platform)
and the time range become filters. ``discover_url`` opens exactly that slice in Kibana Discover:
the compiled query as a custom filter (labelled with the query text) plus the facets in KQL.

Large exports (more than ``PAGE_SIZE`` hits) are read page by page with ``search_after`` inside a
point in time, so a sink writing meanwhile neither duplicates nor skips hits between pages; where
the cluster has no point-in-time API, ``search_after`` alone (sorted by time and mention id) is
used, which is stable for everything already indexed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator
from urllib.parse import quote

import prison
from elasticsearch import ApiError, Elasticsearch

from stimmung.brandquery import parse

# The Kibana data view for the mentions alias has this id in deploy/kibana/ (import keeps it).
MENTIONS_DATA_VIEW_ID = "stimmung-mentions"
# Everything the table and the CSV columns (stimmung/tables.py EXPORT_FIELDS) read, and no more
SOURCE_FIELDS = ["@timestamp", "mention_id", "platform", "language", "sentiment.label", "sentiment.score",
                 "topic_labels", "brand_names", "author.pseudonym", "author.follower_count", "author.influence",
                 "engagement.likes", "engagement.shares", "engagement.replies", "relevance", "complaint.label",
                 "complaint.probability", "text", "url"]
_DURATION = re.compile(r"^(\d+)([smhdw])$")
PAGE_SIZE = 1000
# time, then the mention id: a total order, so search_after never skips ties at a page border
_SORT = [{"@timestamp": "desc"}, {"mention_id": "asc"}]


def since_to_date_math(since: str) -> str:
    """``90m``/``1h``/``7d``/``2w`` -> ``now-90m``; an ISO-8601 timestamp is passed through."""
    since = since.strip()
    if _DURATION.match(since):
        return f"now-{since}"
    try:
        datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {since!r}: use a duration like 30m, 1h, 7d, 2w or an ISO timestamp") from None
    return since


@dataclass
class SearchRequest:
    query: str | None = None
    since: str = "24h"
    until: str | None = None
    sentiment: list[str] = field(default_factory=list)
    topic: list[str] = field(default_factory=list)
    brand: list[str] = field(default_factory=list)
    language: list[str] = field(default_factory=list)
    platform: list[str] = field(default_factory=list)
    limit: int = 20
    min_relevance: float | None = None  # mentions without a relevance (heads off) still match

    def relevance_clause(self) -> dict[str, Any] | None:
        if self.min_relevance is None:
            return None
        return {"bool": {"should": [{"range": {"relevance": {"gte": self.min_relevance}}},
                                    {"bool": {"must_not": {"exists": {"field": "relevance"}}}}],
                         "minimum_should_match": 1}}

    def facets(self) -> dict[str, list[str]]:
        return {"sentiment.label": self.sentiment, "topic_labels": self.topic, "brand_names": self.brand,
                "language": self.language, "platform": self.platform}

    def brand_clause(self, pseudonyms_for: Callable[[str], list[str]] | None) -> dict[str, Any] | None:
        return parse(self.query).to_elasticsearch(pseudonyms_for) if self.query else None

    def time_range(self) -> dict[str, str]:
        rng = {"gte": since_to_date_math(self.since)}
        if self.until:
            rng["lt"] = since_to_date_math(self.until)
        return rng

    def body(self, pseudonyms_for: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
        filters: list[dict[str, Any]] = [{"range": {"@timestamp": self.time_range()}}]
        filters += [{"terms": {name: values}} for name, values in self.facets().items() if values]
        if (relevance := self.relevance_clause()) is not None:
            filters.append(relevance)
        must = [c] if (c := self.brand_clause(pseudonyms_for)) else []
        return {
            "query": {"bool": {"must": must, "filter": filters}},
            "sort": list(_SORT),
            "size": min(self.limit, PAGE_SIZE),
            "track_total_hits": True,
            "_source": SOURCE_FIELDS,
            "aggs": {"sentiment": {"terms": {"field": "sentiment.label"}}},
        }


@dataclass
class SearchResult:
    total: int
    hits: list[dict[str, Any]]
    sentiment: dict[str, int]
    discover_url: str | None


def search(client: Elasticsearch, index: str, request: SearchRequest,
           pseudonyms_for: Callable[[str], list[str]] | None = None, kibana_url: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """The newest ``request.limit`` hits as a list (``stream`` for exports that need not fit in memory)."""
    result = stream(client, index, request, pseudonyms_for, kibana_url, progress)
    return SearchResult(result.total, list(result.hits), result.sentiment, result.discover_url)


@dataclass
class StreamedResult:
    total: int
    hits: Iterator[dict[str, Any]]  # lazily paged; read it once
    sentiment: dict[str, int]
    discover_url: str | None


def stream(client: Elasticsearch, index: str, request: SearchRequest,
           pseudonyms_for: Callable[[str], list[str]] | None = None, kibana_url: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> StreamedResult:
    """Total and sentiment mix at once (from the first page); the hits page by page as they are read.

    ``progress(fetched, expected)`` is called after each page."""
    body = request.body(pseudonyms_for)
    url = discover_url(kibana_url, request, pseudonyms_for) if kibana_url else None
    pit = _open_point_in_time(client, index) if request.limit > PAGE_SIZE else None
    first = _page(client, index, body, pit, None, min(PAGE_SIZE, request.limit))
    total = first["hits"]["total"]["value"]
    return StreamedResult(total, _pages(client, index, body, request.limit, pit, first, total, progress),
                          _sentiment_mix(first), url)


def _sentiment_mix(resp: Any) -> dict[str, int]:
    buckets = resp.get("aggregations", {}).get("sentiment", {}).get("buckets", [])
    return {b["key"]: b["doc_count"] for b in buckets}


def _open_point_in_time(client: Elasticsearch, index: str) -> str | None:
    try:
        return client.open_point_in_time(index=index, keep_alive="2m", ignore_unavailable=True)["id"]
    except ApiError:
        return None  # a cluster without the API: search_after alone


def _page(client: Elasticsearch, index: str, body: dict[str, Any], pit: str | None, after: list | None,
          size: int) -> Any:
    page = dict(body, size=size)
    if after is not None:  # total and aggregations came with the first page
        page.update(search_after=after, track_total_hits=False)
        page.pop("aggs", None)
    if pit:
        return client.search(pit={"id": pit, "keep_alive": "2m"}, **page)
    return client.search(index=index, ignore_unavailable=True, **page)


def _pages(client: Elasticsearch, index: str, body: dict[str, Any], limit: int, pit: str | None, first: Any,
           total: int, progress: Callable[[int, int], None] | None) -> Iterator[dict[str, Any]]:
    resp, fetched, expected = first, 0, min(limit, total)
    try:
        while True:
            batch = resp["hits"]["hits"]
            fetched += len(batch)
            if progress:
                progress(fetched, expected)
            yield from (h["_source"] for h in batch)
            if fetched >= limit or len(batch) < min(PAGE_SIZE, limit) or not batch:
                return
            pit = resp.get("pit_id", pit)
            resp = _page(client, index, body, pit, batch[-1]["sort"], min(PAGE_SIZE, limit - fetched))
    finally:
        if pit:
            try:
                client.close_point_in_time(id=pit)
            except ApiError:
                pass  # it expires by itself after keep_alive


def _kql_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def discover_url(kibana_url: str, request: SearchRequest,
                 pseudonyms_for: Callable[[str], list[str]] | None = None) -> str:
    """Kibana Discover for the same slice (rison-encoded app state, Kibana 8.x URL format)."""
    kql = " and ".join(
        "(" + " or ".join(f"{name}:{_kql_value(v)}" for v in values) + ")"
        for name, values in request.facets().items() if values)
    if request.min_relevance is not None:
        kql = " and ".join(filter(None, [kql, f"(relevance >= {float(request.min_relevance)!r} or not relevance:*)"]))
    filters = []
    clause = request.brand_clause(pseudonyms_for)
    if clause:
        filters.append({
            "meta": {"alias": request.query, "disabled": False, "negate": False, "type": "custom",
                     "index": MENTIONS_DATA_VIEW_ID, "key": "query", "value": request.query},
            "query": clause,
            "$state": {"store": "appState"},
        })
    time_to = "now" if not request.until else request.time_range()["lt"]
    g = {"time": {"from": request.time_range()["gte"], "to": time_to}}
    a = {"dataSource": {"dataViewId": MENTIONS_DATA_VIEW_ID, "type": "dataView"},
         "query": {"language": "kuery", "query": kql}, "filters": filters,
         "sort": [["@timestamp", "desc"]]}
    safe = "!'()*,:@$/"
    return (f"{kibana_url.rstrip('/')}/app/discover#/?_g={quote(prison.dumps(g), safe=safe)}"
            f"&_a={quote(prison.dumps(a), safe=safe)}")
