"""The mentions index in Elasticsearch: template, capability detection, document shape.

Full-text search wants language analyzers: the German text of a German mention goes to
``text_de`` (``german`` analyzer: "Verspätungen" finds "Verspätung"), English to ``text_en``;
``text`` keeps the standard analyzer for every language. A node without the language analyzers
(e.g. a minimal test distribution lacking the analysis-common module) still works: the
sub-fields fall back to the standard analyzer and a warning says so, never a crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from stimmung.config import ElasticsearchSettings, read_secret
from stimmung.schemas.mention import EnrichedMention

log = logging.getLogger(__name__)

TEMPLATE_VERSION = 1
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

    def analyzer_for(self, wanted: str) -> str:
        return wanted if wanted in self.analyzers else "standard"


def detect_capabilities(client: Elasticsearch, analyzers: list[str] | None = None) -> Capabilities:
    """Ask the node which language analyzers exist (``_analyze`` with each; 400 = missing)."""
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
    return Capabilities(frozenset(available))


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
        "text": {"type": "text", "analyzer": "standard"},
        "language_hint": keyword,
        "created_at": {"type": "date"},
        "fetched_at": {"type": "date"},
        "enriched_at": {"type": "date"},
        "reply_to_id": keyword,
        "thread_id": keyword,
        "engagement": {"properties": {"likes": count, "shares": count, "replies": count, "views": count}},
        "author": {"properties": {"pseudonym": keyword, "follower_count": count}},
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
        "_meta": {"template_version": TEMPLATE_VERSION, "analyzers": sorted(caps.analyzers)},
        "properties": props,
    }


def ensure_mentions_index(client: Elasticsearch, settings: ElasticsearchSettings) -> Capabilities:
    """Put the index template (idempotent, versioned) and create the index if it is missing."""
    caps = detect_capabilities(client)
    name = settings.mentions_index
    client.indices.put_index_template(
        name=name,
        index_patterns=[f"{name}*"],
        priority=100,
        version=TEMPLATE_VERSION,
        template={
            "settings": {"number_of_shards": 1, "refresh_interval": "1s"},
            "mappings": mentions_mapping(caps),
        },
        meta={"managed_by": "stimmung"},
    )
    if not client.indices.exists(index=name):
        try:
            client.indices.create(index=name)
            log.info("created index", extra={"index": name})
        except ApiError as err:
            if err.error != "resource_already_exists_exception":
                raise
    return caps


def to_document(mention: EnrichedMention) -> dict[str, Any]:
    """The Elasticsearch source for a mention (``_id`` = mention id, set by the sink)."""
    doc = mention.model_dump(mode="json")
    doc["@timestamp"] = doc["created_at"]
    doc["topic_labels"] = [t["label"] for t in doc["topics"]]
    doc["brand_names"] = sorted({b["brand"] for b in doc["brands"]})
    language_field = LANGUAGE_FIELDS.get(mention.language)
    if language_field:
        doc[language_field[0]] = mention.text
    return doc
