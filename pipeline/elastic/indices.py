"""Applying the index templates: the mentions' versioned templates and lifecycle, and the small indices.

Lifecycle: where the cluster has ILM, a policy deletes a mention index once its period is older
than ``retention_days`` (the index's origination date is set to its period's end); where it has
none, the sink deletes expired period indices itself (``enforce_retention``), with a warning that
ILM is missing. The small indices (alerts, consents and their audit, cases, erasures) are single
plain indices with strict mappings; additive mapping changes reach them on the next start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from stimmung.config import ConfigError, ElasticsearchSettings
from stimmung.pipeline.elastic.client import Capabilities, detect_capabilities, has_ilm, index_analysis
from stimmung.pipeline.elastic.mentions import TEMPLATE_VERSION, IndexLayout, mentions_mapping, older_version_indices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSetup:
    caps: Capabilities
    ilm: bool
    layout: IndexLayout


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


def ensure_indices(client: Elasticsearch, settings: ElasticsearchSettings, *, staff_command: bool = False) -> IndexSetup:
    """Apply templates (idempotent, versioned), the lifecycle policy and the small indices.

    ``staff_command``: a one-shot command (search, erase, consent, cases) that merely makes sure
    the indices exist — the cluster's missing ILM is the operator's news (setup, the sink), not
    a warning on every staff action."""
    note = log.debug if staff_command else log.warning
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
        note(
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
    if client.indices.exists(index=settings.alerts_index):
        # the template shapes new indices only; alert evidence fields (added later) are additive
        client.indices.put_mapping(index=settings.alerts_index, properties=alerts_mapping()["properties"])
    _ensure_plain_index(client, settings.consents_index, consents_mapping(), settings.replicas)
    _ensure_plain_index(client, settings.consent_audit_index, consent_audit_mapping(), settings.replicas)
    _ensure_plain_index(client, settings.cases_index, cases_mapping(), settings.replicas)
    _ensure_plain_index(client, settings.erasures_index, erasures_mapping(), settings.replicas)
    older = older_version_indices(client, layout)
    if older:
        note("mention indices of an older template version are still behind the alias; once every sink "
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
            "series": keyword, "brand": keyword, "topic": keyword, "sentiment": keyword, "min_relevance": {"type": "float"},
            "window_start": date_, "window_end": date_, "incident_started": date_, "observed": count,
            "expected": {"type": "double"}, "p_value": {"type": "double"},
            "expected_lower": {"type": "double"}, "expected_upper": {"type": "double"}, "score": {"type": "double"},
            "threshold": {"type": "double"}, "distinct_authors": count, "distinct_texts": count, "top_terms": keyword,
            "negative_share": {"type": "double"}, "baseline_share": {"type": "double"},
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
