"""The mentions indices: mapping, time-based layout and the document shape.

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
- Lifecycle and the other (small) indices: ``indices.py``; moving mentions from older template
  versions: ``migration.py``.
- Full-text search wants language analyzers: German text also goes to ``text_de`` (``german``:
  "Verspätungen" finds "Verspätung"), English to ``text_en``; ``text`` keeps the standard
  analyzer for every language. A node without the language analyzers still works: the sub-fields
  fall back to ``standard`` and a warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from elasticsearch import Elasticsearch

from stimmung.config import ElasticsearchSettings
from stimmung.pipeline.elastic.client import FOLDED_ANALYZER, LANGUAGE_FIELDS, Capabilities
from stimmung.schemas.mention import EnrichedMention

# Bump whenever mentions_mapping() or the index settings change (tests/unit/test_index.py pins
# the mapping's fingerprint to this number, so a change cannot slip through unversioned).
TEMPLATE_VERSION = 5


def mentions_mapping(caps: Capabilities) -> dict[str, Any]:
    keyword = {"type": "keyword"}
    count = {"type": "long"}
    sentiment = {"properties": {
        "label": keyword, "score": {"type": "float"},
        "probabilities": {"properties": {"negative": {"type": "float"}, "neutral": {"type": "float"},
                                         "positive": {"type": "float"}}},
    }}
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
        "sentiment": sentiment,
        "brand_sentiment": sentiment,
        "topics": {"properties": {"label": keyword, "score": {"type": "float"}}},
        "topic_labels": keyword,
        "complaint": {"properties": {"label": keyword, "probability": {"type": "float"}}},
        "relevance": {"type": "float"},
        "aspects": {"properties": {"label": keyword, "score": {"type": "float"}}},
        "intents": {"properties": {"label": keyword, "score": {"type": "float"}}},
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


def older_version_indices(client: Elasticsearch, layout: IndexLayout) -> list[str]:
    names = client.indices.get(index=layout.all_versions_pattern, expand_wildcards="open", ignore_unavailable=True)
    prefix = f"{layout.alias}-v"
    return sorted(n for n in names if n.startswith(prefix) and (v := n[len(prefix):].partition("-")[0]).isdigit()
                  and int(v) < layout.version and layout.period_end(n) is not None)
