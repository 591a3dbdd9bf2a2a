"""Brand queries against the indexed mentions: a backtest before a query goes live, and re-tagging
history after the brands changed (`stimmung brands test`, `stimmung brands retag`).

Both compile brand queries with the parser the stream uses (stimmung.brandquery) to
Elasticsearch queries on ``text.folded``, as `stimmung search` does, so a backtest shows what
search and the tagger will find.

Re-tagging reads every mention in the time range page by page (search_after in a point in time),
asks Elasticsearch in the same request which brand queries each one matches (named queries), and
updates ``brands``/``brand_names`` of the mentions whose tags differ — in place, each update
conditional on the ``_seq_no``/``_primary_term`` it was computed from. When a sink rewrote a
mention in between (a replay), the update is refused with a conflict and that mention is
evaluated again from its new version. No scripts and no update-by-query: the local test node and
some managed clusters have neither.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from elasticsearch import ApiError, Elasticsearch, helpers

from stimmung.brandquery import parse

Pseudonyms = Callable[[str], list[str]] | None
RETAG_FIELDS = ["mention_id", "text", "@timestamp", "brands", "brand_names"]


def _compiled(queries: Sequence[str], pseudonyms_for: Pseudonyms) -> dict[str, Any]:
    clauses = [parse(q).to_elasticsearch(pseudonyms_for) for q in queries]
    return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}


@dataclass
class Sample:
    time: str
    mention_id: str
    text: str


@dataclass
class Backtest:
    query: str
    total: int
    per_day: list[tuple[str, int]]  # (YYYY-MM-DD UTC, count) for every day of the range
    samples: list[Sample]
    brand: str | None = None
    current_total: int | None = None  # what the brand's current queries match
    new: int | None = None  # matched by the query, not by the current ones
    lost: int | None = None  # matched by the current queries, not by this one
    new_samples: list[Sample] = field(default_factory=list)
    lost_samples: list[Sample] = field(default_factory=list)


def _samples(resp: Any) -> list[Sample]:
    return [Sample(h["_source"].get("@timestamp", ""), h["_source"].get("mention_id", h["_id"]),
                   (h["_source"].get("text") or "").replace("\n", " ")) for h in resp["hits"]["hits"]]


def backtest(client: Elasticsearch, index: str, query: str, since: str, brand: str | None = None,
             current_queries: Sequence[str] = (), pseudonyms_for: Pseudonyms = None, samples: int = 5) -> Backtest:
    """How many indexed mentions since ``since`` (date math, e.g. ``now-30d``) the query matches, per
    day, with the newest samples; with ``current_queries``, what it would add and lose."""
    clause = _compiled([query], pseudonyms_for)
    in_range = {"range": {"@timestamp": {"gte": since}}}
    source = ["@timestamp", "mention_id", "text"]
    newest = [{"@timestamp": "desc"}]

    def run(must: list[dict[str, Any]], must_not: list[dict[str, Any]], aggs: dict[str, Any] | None = None) -> Any:
        return client.search(index=index, ignore_unavailable=True, size=samples, sort=newest, source_includes=source,
                             track_total_hits=True, aggs=aggs,
                             query={"bool": {"filter": [in_range, *must], "must_not": must_not}})

    histogram = {"per_day": {"date_histogram": {"field": "@timestamp", "calendar_interval": "day", "min_doc_count": 0,
                                                "time_zone": "UTC", "extended_bounds": {"min": since, "max": "now"}}}}
    resp = run([clause], [], histogram)
    days = [(b["key_as_string"][:10], b["doc_count"]) for b in resp.get("aggregations", {}).get("per_day", {}).get("buckets", [])]
    result = Backtest(query, resp["hits"]["total"]["value"], days, _samples(resp), brand)
    if current_queries:
        current = _compiled(current_queries, pseudonyms_for)
        result.current_total = run([current], [])["hits"]["total"]["value"]
        new, lost = run([clause], [current]), run([current], [clause])
        result.new, result.new_samples = new["hits"]["total"]["value"], _samples(new)
        result.lost, result.lost_samples = lost["hits"]["total"]["value"], _samples(lost)
    return result


@dataclass
class RetagReport:
    scanned: int = 0
    updated: int = 0
    added: Counter = field(default_factory=Counter)  # brand -> mentions newly tagged
    removed: Counter = field(default_factory=Counter)  # brand -> mentions no longer tagged
    conflicts: int = 0  # rewritten by a sink meanwhile, evaluated again
    failed: list[str] = field(default_factory=list)  # mention ids that could not be updated (reason in the log)


def _named(brands: Sequence[tuple[str, Sequence[str]]], pseudonyms_for: Pseudonyms) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """One named query per (brand, query): Elasticsearch reports which of them each hit matches."""
    clauses, names = [], {}
    for b, (brand, queries) in enumerate(brands):
        for q, text in enumerate(queries):
            name = f"b{b}q{q}"
            names[name] = (brand, text)
            clauses.append({"bool": {"filter": [parse(text).to_elasticsearch(pseudonyms_for)], "_name": name}})
    return clauses, names


def _wanted(hit: dict[str, Any], names: dict[str, tuple[str, str]], order: list[str]) -> list[dict[str, str]]:
    """The brands a hit should carry: per brand its first matching query, as the stream tagger does."""
    matched = set(hit.get("matched_queries") or [])
    found: dict[str, str] = {}
    for name in order:
        brand, text = names[name]
        if name in matched and brand not in found:
            found[brand] = text
    return [{"brand": brand, "query": text} for brand, text in found.items()]


def retag(client: Elasticsearch, index: str, brands: Sequence[tuple[str, Sequence[str]]], since: str,
          pseudonyms_for: Pseudonyms = None, progress: Callable[[int, int], None] | None = None,
          page_size: int = 500, max_attempts: int = 5) -> RetagReport:
    """Bring ``brands``/``brand_names`` of every mention since ``since`` in line with ``brands``."""
    clauses, names = _named(brands, pseudonyms_for)
    order = list(names)
    report = RetagReport()
    base_filter = [{"range": {"@timestamp": {"gte": since}}}]

    def query(extra: list[dict[str, Any]]) -> dict[str, Any]:
        return {"bool": {"filter": base_filter + extra, "should": clauses, "minimum_should_match": 0}}

    pit = None
    try:
        pit = client.open_point_in_time(index=index, keep_alive="5m", ignore_unavailable=True)["id"]
    except ApiError:
        pit = None  # search_after alone
    total, after = None, None
    try:
        while True:
            kwargs: dict[str, Any] = dict(query=query([]), size=page_size, seq_no_primary_term=True,
                                          sort=[{"@timestamp": "asc"}, {"mention_id": "asc"}], source_includes=RETAG_FIELDS,
                                          track_total_hits=total is None)
            if after:
                kwargs["search_after"] = after
            resp = (client.search(pit={"id": pit, "keep_alive": "5m"}, **kwargs) if pit
                    else client.search(index=index, ignore_unavailable=True, **kwargs))
            pit = resp.get("pit_id", pit)
            hits = resp["hits"]["hits"]
            if total is None:
                total = resp["hits"]["total"]["value"]
            if not hits:
                break
            _update(client, hits, names, order, report, lambda ids: client.search(
                index=index, query=query([{"ids": {"values": ids}}]), size=len(ids), seq_no_primary_term=True,
                source_includes=RETAG_FIELDS)["hits"]["hits"], max_attempts)
            report.scanned += len(hits)
            if progress:
                progress(report.scanned, total)
            after = hits[-1]["sort"]
    finally:
        if pit:
            try:
                client.close_point_in_time(id=pit)
            except ApiError:
                pass
    return report


def _update(client: Elasticsearch, hits: list[dict[str, Any]], names: dict[str, tuple[str, str]], order: list[str],
            report: RetagReport, reread: Callable[[list[str]], list[dict[str, Any]]], max_attempts: int) -> None:
    for _attempt in range(max_attempts):
        actions: list[dict[str, Any]] = []
        changes: dict[str, tuple[set[str], set[str]]] = {}
        for hit in hits:
            wanted = _wanted(hit, names, order)
            before = sorted({b["brand"] for b in hit["_source"].get("brands") or []})
            after = sorted({b["brand"] for b in wanted})
            if wanted == (hit["_source"].get("brands") or []) and before == sorted(hit["_source"].get("brand_names") or []):
                continue
            changes[hit["_id"]] = (set(before), set(after))
            actions.append({"_op_type": "update", "_index": hit["_index"], "_id": hit["_id"],
                            "if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"],
                            "doc": {"brands": wanted, "brand_names": after}})
        if not actions:
            return
        conflicted = []
        for ok, item in helpers.streaming_bulk(client, actions, raise_on_error=False, raise_on_exception=False,
                                               refresh=False):
            info = item["update"]
            if ok:
                had, has = changes[info["_id"]]
                report.updated += 1
                report.added.update(has - had)
                report.removed.update(had - has)
            elif info.get("status") == 409:
                conflicted.append(info["_id"])
            elif info.get("status") == 404:
                pass  # deleted meanwhile (an erasure): nothing to tag
            else:
                report.failed.append(info["_id"])
        if not conflicted:
            return
        report.conflicts += len(conflicted)
        hits = reread(conflicted)
    report.failed.extend(h["_id"] for h in hits)
