"""The Elasticsearch indices: templates, time-based layout, lifecycle, document shape.

Mentions live in one index per period of their *creation* time, named
``<alias>-v<template version>-<period>`` (e.g. ``stimmung-mentions-v2-2026.11``), all behind the
read alias ``<alias>`` that every index joins through its template. Why not a data stream or a
write alias with rollover: both decide the target index by *when the document is written*, so a
mention re-delivered after a rollover (at-least-once Kafka, a replay) lands in a second index and
is counted twice. Here the index follows from the mention itself, so ``_id`` = mention id makes
every re-delivery an overwrite: exactly once in the index, whenever it arrives.

- Versioned: the template is named after ``TEMPLATE_VERSION``; a mapping change bumps it and new
  writes go to new ``-v<N>-`` indices while the old ones stay searchable through the alias (and two
  versions can run side by side during a rolling upgrade). A test pins the mapping to the version.
- Composable: component templates for settings and mappings, one index template composing them.
- Lifecycle: where the cluster has ILM, a policy deletes an index once its period is older than
  ``retention_days`` (the index's origination date is set to its period's end); where it has none,
  the sink deletes expired period indices itself, with a warning that ILM is missing.
- Full-text search wants language analyzers: German text also goes to ``text_de`` (``german``:
  "Verspätungen" finds "Verspätung"), English to ``text_en``; ``text`` keeps the standard
  analyzer for every language. A node without the language analyzers still works: the sub-fields
  fall back to ``standard`` and a warning says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from elasticsearch import ApiError, Elasticsearch
from elasticsearch.helpers import scan, streaming_bulk
from pydantic import ValidationError

from stimmung.config import ConfigError, ElasticsearchSettings, read_secret
from stimmung.schemas.mention import EnrichedMention

log = logging.getLogger(__name__)

# Bump whenever mentions_mapping() or the index settings change (tests/unit/test_index.py pins
# the mapping's fingerprint to this number, so a change cannot slip through unversioned).
TEMPLATE_VERSION = 3
LANGUAGE_FIELDS = {"de": ("text_de", "german"), "en": ("text_en", "english")}

def make_client(settings: ElasticsearchSettings) -> Elasticsearch:
    kwargs: dict[str, Any] = {"request_timeout": settings.request_timeout_s}
    api_key = read_secret(settings.api_key, settings.api_key_file, "elasticsearch.api_key")
    password = read_secret(settings.password, settings.password_file, "elasticsearch.password")
    if api_key:
        kwargs["api_key"] = api_key
    elif settings.username and password:
        kwargs["basic_auth"] = (settings.username, password)
    if settings.ca_certs:
        kwargs["ca_certs"] = str(settings.ca_certs)
    return Elasticsearch(settings.url, **kwargs)


@dataclass(frozen=True)
class Capabilities:
    analyzers: frozenset[str]
    filters: frozenset[str] = frozenset()

    def analyzer_for(self, wanted: str) -> str:
        return wanted if wanted in self.analyzers else "standard"

    @property
    def folding(self) -> bool:
        return "asciifolding" in self.filters


FOLDED_ANALYZER = "stimmung_folded"


def detect_capabilities(client: Elasticsearch, analyzers: list[str] | None = None) -> Capabilities:
    """Ask the node which language analyzers and the asciifolding filter exist (400 = missing)."""
    available = set()
    for analyzer in analyzers or [a for _, a in LANGUAGE_FIELDS.values()]:
        try:
            client.indices.analyze(analyzer=analyzer, text="probe")
            available.add(analyzer)
        except ApiError as err:
            if err.status_code != 400:
                raise
            log.warning(
                "Elasticsearch has no %s analyzer (analysis-common module missing?): %s full-text "
                "search falls back to the standard analyzer, so inflected forms will not match",
                analyzer, analyzer.capitalize(),
                extra={"analyzer": analyzer, "fallback": "standard"},
            )
    filters = set()
    try:
        client.indices.analyze(tokenizer="standard", filter=["lowercase", "asciifolding"], text="Café")
        filters.add("asciifolding")
    except ApiError as err:
        if err.status_code != 400:
            raise
        log.warning("Elasticsearch has no asciifolding filter: text.folded is not accent-insensitive "
                    "(brand queries for 'cafe' will not find 'café')", extra={"filter": "asciifolding"})
    return Capabilities(frozenset(available), frozenset(filters))


def index_analysis(caps: Capabilities) -> dict[str, Any]:
    if not caps.folding:
        return {}
    return {"analysis": {"analyzer": {FOLDED_ANALYZER: {
        "type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]}}}}


def mentions_mapping(caps: Capabilities) -> dict[str, Any]:
    keyword = {"type": "keyword"}
    count = {"type": "long"}
    props: dict[str, Any] = {
        "@timestamp": {"type": "date"},
        "schema_version": {"type": "short"},
        "mention_id": keyword,
        "platform": keyword,
        "native_id": keyword,
        "url": {"type": "keyword", "index": False},
        "site": keyword,  # the url's host without "www.": the brand query language's site:
        # text: standard analyzer for every language; text.folded: also accent-insensitive, what
        # brand queries are compiled against (case- and accent-insensitive like the matcher)
        "text": {"type": "text", "analyzer": "standard", "fields": {
            "folded": {"type": "text", "analyzer": FOLDED_ANALYZER if caps.folding else "standard"}}},
        "language_hint": keyword,
        "created_at": {"type": "date"},
        "fetched_at": {"type": "date"},
        "enriched_at": {"type": "date"},
        "reply_to_id": keyword,
        "thread_id": keyword,
        "engagement": {"properties": {"likes": count, "shares": count, "replies": count, "views": count}},
        "author": {"properties": {"pseudonym": keyword, "follower_count": count, "contact_id": keyword,
                                  "influence": {"type": "float"}, "linked_url": {"type": "boolean"}}},
        "language": keyword,
        "language_confidence": {"type": "float"},
        "language_source": keyword,
        "sentiment": {
            "properties": {
                "label": keyword,
                "score": {"type": "float"},
                "probabilities": {
                    "properties": {"negative": {"type": "float"}, "neutral": {"type": "float"},
                                   "positive": {"type": "float"}}
                },
            }
        },
        "topics": {"properties": {"label": keyword, "score": {"type": "float"}}},
        "topic_labels": keyword,
        "brands": {"properties": {"brand": keyword, "query": keyword}},
        "brand_names": keyword,
        "model_versions": {"type": "object", "dynamic": True},
    }
    for field, analyzer in LANGUAGE_FIELDS.values():
        props[field] = {"type": "text", "analyzer": caps.analyzer_for(analyzer)}
    return {
        # strict: a document that does not fit is rejected (and dead-lettered), never silently
        # widened; model_versions is the one open map, with keyword values.
        "dynamic": "strict",
        "dynamic_templates": [
            {"model_versions": {"path_match": "model_versions.*", "mapping": {"type": "keyword"}}}
        ],
        "_meta": {"template_version": TEMPLATE_VERSION},
        "properties": props,
    }


@dataclass(frozen=True)
class IndexLayout:
    """Names of the time-based mention indices and the periods they cover."""

    alias: str
    period: str = "month"
    version: int = TEMPLATE_VERSION

    @classmethod
    def from_settings(cls, settings: ElasticsearchSettings) -> "IndexLayout":
        return cls(settings.mentions_index, settings.index_period)

    @property
    def template(self) -> str:
        return f"{self.alias}-v{self.version}"

    @property
    def pattern(self) -> str:
        return f"{self.alias}-v{self.version}-*"

    @property
    def all_versions_pattern(self) -> str:
        return f"{self.alias}-v*-*"

    def period_key(self, when: datetime) -> str:
        when = when.astimezone(timezone.utc)
        if self.period == "day":
            return when.strftime("%Y.%m.%d")
        if self.period == "week":
            iso = when.isocalendar()
            return f"{iso.year}.w{iso.week:02d}"
        return when.strftime("%Y.%m")

    def index_for(self, when: datetime) -> str:
        return f"{self.alias}-v{self.version}-{self.period_key(when)}"

    def period_end(self, index: str) -> datetime | None:
        """End (exclusive, UTC) of the period an index of this alias covers; None if not ours."""
        prefix = f"{self.alias}-v"
        if not index.startswith(prefix):
            return None
        version, _, key = index[len(prefix):].partition("-")
        if not version.isdigit():
            return None
        try:
            if ".w" in key:
                year, week = key.split(".w")
                start = date.fromisocalendar(int(year), int(week), 1)
                end = start + timedelta(days=7)
            elif key.count(".") == 2:
                end = datetime.strptime(key, "%Y.%m.%d").date() + timedelta(days=1)
            else:
                start = datetime.strptime(key, "%Y.%m").date()
                end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        except ValueError:
            return None
        return datetime(end.year, end.month, end.day, tzinfo=timezone.utc)


@dataclass(frozen=True)
class IndexSetup:
    caps: Capabilities
    ilm: bool
    layout: IndexLayout


def has_ilm(client: Elasticsearch) -> bool:
    try:
        client.ilm.get_status()
        return True
    except ApiError as err:
        if err.status_code in (400, 404, 405, 410):
            return False
        raise


def _lifecycle_policy(retention_days: int) -> dict[str, Any]:
    # min_age counts from index.lifecycle.origination_date, which we set to the period's end:
    # the index is deleted when its newest possible mention is older than the retention.
    return {
        "phases": {
            "hot": {"min_age": "0ms", "actions": {}},
            "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}},
        },
        "_meta": {"managed_by": "stimmung"},
    }


def ensure_indices(client: Elasticsearch, settings: ElasticsearchSettings) -> IndexSetup:
    """Apply templates (idempotent, versioned), the lifecycle policy and the small indices."""
    caps = detect_capabilities(client)
    layout = IndexLayout.from_settings(settings)
    if layout.alias in client.indices.get(index=layout.alias, ignore_unavailable=True, allow_no_indices=True):
        raise ConfigError(
            f"elasticsearch.mentions_index: {layout.alias!r} is a concrete index (made by hand or by an early "
            f"Stimmung), but the name must be free for the read alias over {layout.pattern}; delete or rename "
            "that index, or choose another mentions_index")
    ilm = has_ilm(client)
    index_settings: dict[str, Any] = {"number_of_shards": 1, "auto_expand_replicas": settings.replicas,
                                      "refresh_interval": "1s"}
    policy = f"{settings.mentions_index}-retention"
    if settings.retention_days and ilm:
        client.ilm.put_lifecycle(name=policy, policy=_lifecycle_policy(settings.retention_days))
        index_settings["index.lifecycle.name"] = policy
    elif settings.retention_days:
        log.warning(
            "Elasticsearch has no index lifecycle management (ILM): the sink deletes mention "
            "indices older than the retention itself", extra={"retention_days": settings.retention_days}
        )
    meta = {"managed_by": "stimmung", "template_version": layout.version}
    client.cluster.put_component_template(
        name=f"{layout.template}-settings", template={"settings": index_settings}, version=layout.version, meta=meta)
    client.cluster.put_component_template(
        # the analyzers travel with the mapping that uses them (each component is validated alone)
        name=f"{layout.template}-mappings", template={"settings": index_analysis(caps), "mappings": mentions_mapping(caps)},
        version=layout.version, meta=meta)
    client.indices.put_index_template(
        name=layout.template,
        index_patterns=[layout.pattern],
        composed_of=[f"{layout.template}-settings", f"{layout.template}-mappings"],
        template={"aliases": {layout.alias: {}}},
        priority=200 + layout.version,
        version=layout.version,
        meta=meta,
    )
    _ensure_plain_index(client, settings.alerts_index, alerts_mapping(), settings.replicas)
    _ensure_plain_index(client, settings.consents_index, consents_mapping(), settings.replicas)
    _ensure_plain_index(client, settings.consent_audit_index, consent_audit_mapping(), settings.replicas)
    _ensure_plain_index(client, settings.cases_index, cases_mapping(), settings.replicas)
    _ensure_plain_index(client, settings.erasures_index, erasures_mapping(), settings.replicas)
    older = older_version_indices(client, layout)
    if older:
        log.warning("mention indices of an older template version are still behind the alias; once every sink "
                    "runs this version, run `stimmung migrate-indices` (a replay would otherwise show mentions twice)",
                    extra={"indices": older[:5], "count": len(older), "current_version": layout.version})
    return IndexSetup(caps, ilm, layout)


def _ensure_plain_index(client: Elasticsearch, name: str, mappings: dict[str, Any], replicas: str) -> None:
    client.indices.put_index_template(
        name=name, index_patterns=[name], priority=200, version=TEMPLATE_VERSION,
        template={"settings": {"number_of_shards": 1, "auto_expand_replicas": replicas}, "mappings": mappings},
        meta={"managed_by": "stimmung"},
    )
    if not client.indices.exists(index=name):
        try:
            client.indices.create(index=name)
        except ApiError as err:
            if err.error != "resource_already_exists_exception":
                raise
    else:
        # additive mapping changes reach an existing index; a conflicting one fails loudly here
        client.indices.put_mapping(index=name, **mappings)


def ensure_period_index(client: Elasticsearch, layout: IndexLayout, index: str, ilm: bool) -> None:
    """Create a period index before its first write, with the period's end as ILM origination date."""
    settings: dict[str, Any] = {}
    end = layout.period_end(index)
    if ilm and end is not None:
        settings["index.lifecycle.origination_date"] = int(end.timestamp() * 1000)
    try:
        client.indices.create(index=index, settings=settings or None)
        log.info("created index", extra={"index": index})
    except ApiError as err:
        if err.error != "resource_already_exists_exception":
            raise


def expired_indices(client: Elasticsearch, layout: IndexLayout, retention_days: int, now: datetime) -> list[str]:
    if not retention_days:
        return []
    cutoff = now - timedelta(days=retention_days)
    names = client.indices.get(index=layout.all_versions_pattern, expand_wildcards="open,closed", ignore_unavailable=True)
    return sorted(n for n in names if (end := layout.period_end(n)) is not None and end <= cutoff)


def enforce_retention(client: Elasticsearch, settings: ElasticsearchSettings, now: datetime | None = None) -> list[str]:
    """Delete mention indices whose whole period is older than the retention (no-ILM clusters)."""
    layout = IndexLayout.from_settings(settings)
    expired = expired_indices(client, layout, settings.retention_days, now or datetime.now(timezone.utc))
    for name in expired:
        client.indices.delete(index=name)
        log.info("deleted expired index", extra={"index": name, "retention_days": settings.retention_days})
    return expired


def alerts_mapping() -> dict[str, Any]:
    keyword, date_, count = {"type": "keyword"}, {"type": "date"}, {"type": "long"}
    return {
        "dynamic": "strict",
        "properties": {
            "@timestamp": date_, "schema_version": {"type": "short"},
            "kind": keyword, "case_id": keyword, "queue": keyword, "detail": {"type": "text"},
            "alert_id": keyword, "event_id": keyword, "event": keyword, "status": keyword, "severity": keyword,
            "series": keyword, "brand": keyword, "topic": keyword, "sentiment": keyword,
            "window_start": date_, "window_end": date_, "incident_started": date_, "observed": count,
            "expected": {"type": "double"}, "p_value": {"type": "double"},
            "sentiment_mix": {"properties": {"negative": count, "neutral": count, "positive": count}},
            "platform_mix": {"type": "object", "dynamic": True},  # platform -> count (a small, open set)
            "samples": {"properties": {"mention_id": keyword, "excerpt": {"type": "text"}, "platform": keyword,
                                       "url": {"type": "keyword", "index": False}}},
            "kibana_url": {"type": "keyword", "index": False},
            "created_at": date_,
        },
    }


def consents_mapping() -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {"dynamic": "strict", "properties": {
        "schema_version": {"type": "short"}, "pseudonym": keyword, "platform": keyword, "contact_id": keyword,
        "purposes": keyword, "status": keyword, "at": {"type": "date"}, "source": keyword, "evidence": {"type": "text"}}}


def consent_audit_mapping() -> dict[str, Any]:
    mapping = consents_mapping()
    mapping["properties"].update({"action": {"type": "keyword"}, "unlinked_documents": {"type": "long"}})
    del mapping["properties"]["status"]
    return mapping


def cases_mapping() -> dict[str, Any]:
    keyword, date_ = {"type": "keyword"}, {"type": "date"}
    return {"dynamic": "strict", "properties": {
        "schema_version": {"type": "short"}, "case_id": keyword, "queue": keyword, "priority": keyword, "route": keyword,
        "state": keyword, "assignee": keyword, "brand": keyword, "topics": keyword, "sentiment": keyword,
        "language": keyword, "platform": keyword, "author_pseudonym": keyword, "contact_id": keyword,
        "influence": {"type": "float"}, "thread_id": keyword, "title": {"type": "text"},
        "mention_ids": keyword, "mention_count": {"type": "integer"},
        "created_at": date_, "updated_at": date_, "claimed_at": date_, "first_response_at": date_, "resolved_at": date_,
        "first_response_due": date_, "resolution_due": date_, "sla_breached": keyword,
        "first_response_s": {"type": "double"}, "resolution_s": {"type": "double"},
        "replies": {"properties": {"by": keyword, "at": date_, "text": {"type": "text"}}},
        "notes": {"properties": {"by": keyword, "at": date_, "text": {"type": "text"}}},
        "history": {"properties": {"at": date_, "by": keyword, "action": keyword, "detail": {"type": "text"}}},
        "observed": keyword, "url": {"type": "keyword", "index": False}}}


def erasures_mapping() -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {
        "dynamic": "strict",
        "properties": {
            "schema_version": {"type": "short"},
            "pseudonym": keyword, "platform": keyword, "erased_at": {"type": "date"},
            "reason": keyword, "requested_by": keyword, "deleted": {"type": "long"},
        },
    }


# Fields a document has beyond the EnrichedMention it was made from (derived for search/facets).
INDEX_ONLY_FIELDS = ("@timestamp", "topic_labels", "brand_names", "site", "text_de", "text_en")


def site_of(url: str | None) -> str | None:
    host = urlsplit(url).hostname if url else None
    return host.removeprefix("www.") if host else None


def to_document(mention: EnrichedMention) -> dict[str, Any]:
    """The Elasticsearch source for a mention (``_id`` = mention id, set by the sink)."""
    doc = mention.model_dump(mode="json")
    doc["@timestamp"] = doc["created_at"]
    doc["topic_labels"] = [t["label"] for t in doc["topics"]]
    doc["brand_names"] = sorted({b["brand"] for b in doc["brands"]})
    doc["site"] = site_of(mention.url)
    language_field = LANGUAGE_FIELDS.get(mention.language)
    if language_field:
        doc[language_field[0]] = mention.text
    return doc


@dataclass
class MigrationReport:
    indices: list[str]  # older-version indices found (and deleted once copied)
    copied: int = 0
    kept_newer: int = 0  # the current version already had the mention (a newer write): left as is
    failed: int = 0


def older_version_indices(client: Elasticsearch, layout: IndexLayout) -> list[str]:
    names = client.indices.get(index=layout.all_versions_pattern, expand_wildcards="open", ignore_unavailable=True)
    prefix = f"{layout.alias}-v"
    return sorted(n for n in names if n.startswith(prefix) and (v := n[len(prefix):].partition("-")[0]).isdigit()
                  and int(v) < layout.version and layout.period_end(n) is not None)


def _migration_actions(client: Elasticsearch, setup: IndexSetup, old: str, report: MigrationReport):
    """Bulk "create" actions for the documents of one older-version index (unreadable ones counted)."""
    created_targets: set[str] = set()
    for hit in scan(client, index=old, query={"query": {"match_all": {}}}, size=500):
        source = {k: v for k, v in hit["_source"].items() if k not in INDEX_ONLY_FIELDS}
        try:
            mention = EnrichedMention.model_validate(source)
        except ValidationError as err:
            report.failed += 1
            log.error("cannot migrate a document", extra={"index": old, "id": hit["_id"], "error": str(err)[:300]})
            continue
        target = setup.layout.index_for(mention.created_at)
        if target not in created_targets:
            ensure_period_index(client, setup.layout, target, setup.ilm)
            created_targets.add(target)
        yield {"_op_type": "create", "_index": target, "_id": hit["_id"], "_source": to_document(mention)}


def migrate_older_versions(client: Elasticsearch, settings: ElasticsearchSettings, progress=None) -> MigrationReport:
    """Copy mentions from older template versions into the current one, then delete the old indices.

    After a mapping change the old-version indices stay readable through the alias; but a replay
    (or the demo run again) writes the same mentions into the new version, and the alias then
    shows them twice. Run this once every sink runs the new version: each old document is
    rebuilt by ``to_document`` (the new derived fields) and created in its period index of the
    current version; an id that is already there is a newer write and is kept. An old index is
    deleted only when every one of its documents is accounted for. Uses scroll + bulk only (no
    reindex API, no scripts: our test node has neither). ``progress(n)`` is called per document.
    """
    setup = ensure_indices(client, settings)
    layout = setup.layout
    report = MigrationReport(older_version_indices(client, layout))
    for old in report.indices:
        failed_before = report.failed
        actions = _migration_actions(client, setup, old, report)
        for ok, item in streaming_bulk(client, actions, chunk_size=500, raise_on_error=False, max_retries=5):
            result = item["create"]
            if ok:
                report.copied += 1
            elif result.get("status") == 409:
                report.kept_newer += 1
            else:
                report.failed += 1
                log.error("cannot migrate a document", extra={"index": old, "id": result.get("_id"),
                                                             "error": str(result.get("error"))[:300]})
            if progress:
                progress(1)
        if report.failed == failed_before:
            client.indices.delete(index=old)
            log.info("migrated and deleted an older-version index", extra={"index": old})
        else:
            log.error("kept an older-version index: some documents could not be migrated", extra={"index": old})
    client.indices.refresh(index=layout.alias)
    return report
