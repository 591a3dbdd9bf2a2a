"""Erasure of an author's mentions from Elasticsearch, and the records that keep them erased.

Order matters: the erasure record is written (and made searchable) *before* anything is deleted,
so a sink that re-reads the records can never re-index what is being erased; a second sweep after
the sinks' refresh interval removes documents from batches that were already in flight. A replay
of the Kafka topics later is harmless: the sink drops mentions of erased pseudonyms.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from elasticsearch import ApiError, Elasticsearch
from elasticsearch.helpers import bulk, scan

from stimmung.config import ElasticsearchSettings, Settings
from stimmung.metrics import ERASURES
from stimmung.pipeline.crm.consent import ConsentService
from stimmung.pipeline.elastic.client import missing_api
from stimmung.pipeline.erased import ErasureList  # noqa: F401  (re-exported: the sink imports it from here)
from stimmung.pipeline.privacy import pseudonymizer_from_settings
from stimmung.schemas.erasure import ErasureRecord

log = logging.getLogger(__name__)

AUTHOR_FIELD = "author.pseudonym"
CASE_AUTHOR_FIELD = "author_pseudonym"
PSEUDONYM = re.compile(r"psn_[0-9a-f]{32}")


def delete_mentions_of(client: Elasticsearch, index: str, pseudonyms: list[str], field: str = AUTHOR_FIELD) -> tuple[int, str]:
    """Delete every document by these pseudonyms (mentions, or cases with ``field``); returns (deleted, method)."""
    query = {"terms": {field: pseudonyms}}
    try:
        resp = client.delete_by_query(index=index, query=query, refresh=True, conflicts="proceed",
                                      wait_for_completion=True, ignore_unavailable=True)
        return int(resp.get("deleted", 0)), "delete_by_query"
    except ApiError as err:
        if not missing_api(err):
            raise
    # Fallback (clusters without the reindex module): page through the hits, delete in bulk,
    # repeat until a refreshed search finds nothing.
    deleted = 0
    while True:
        client.indices.refresh(index=index, ignore_unavailable=True)
        hits = list(scan(client, index=index, query={"query": query, "_source": False}, size=1000,
                         ignore_unavailable=True))
        if not hits:
            return deleted, "search+bulk"
        ok, _ = bulk(client, ({"_op_type": "delete", "_index": h["_index"], "_id": h["_id"]} for h in hits),
                     raise_on_error=False, refresh=True)
        deleted += ok


@dataclass
class ErasureResult:
    pseudonyms: list[str]
    deleted: int
    method: str


def platforms_in_index(client: Elasticsearch, index: str) -> list[str]:
    resp = client.search(index=index, size=0, aggs={"p": {"terms": {"field": "platform", "size": 1000}}},
                         ignore_unavailable=True)
    return sorted(b["key"] for b in resp.get("aggregations", {}).get("p", {}).get("buckets", []))


@dataclass
class AuthorFootprint:
    """What the index holds of one pseudonym: mentions, cases, and whether a consent record exists."""
    pseudonym: str
    platform: str
    mentions: int
    cases: int
    consent: bool

    @property
    def empty(self) -> bool:
        return not (self.mentions or self.cases or self.consent)


def footprint(client: Elasticsearch, settings: ElasticsearchSettings, pseudonym: str, platform: str) -> AuthorFootprint:
    """Count what an erasure of ``pseudonym`` would remove (shown before the operator confirms)."""
    def count(index: str, field: str) -> int:
        client.indices.refresh(index=index, ignore_unavailable=True)
        return int(client.count(index=index, query={"term": {field: pseudonym}}, ignore_unavailable=True)["count"])

    consent = client.options(ignore_status=404).get(index=settings.consents_index, id=pseudonym, source=False)
    return AuthorFootprint(pseudonym, platform, count(settings.mentions_index, AUTHOR_FIELD),
                           count(settings.cases_index, CASE_AUTHOR_FIELD), bool(consent.get("found")))


def erase(client: Elasticsearch, settings: ElasticsearchSettings, pseudonyms: dict[str, str], *,
          reason: str = "data-subject-request", requested_by: str | None = None,
          sweep_after_s: float | None = None, sleep: Callable[[float], None] = time.sleep) -> ErasureResult:
    """Erase the mentions of ``pseudonyms`` (pseudonym -> platform) and record it."""
    names = sorted(pseudonyms)
    records = [ErasureRecord(pseudonym=p, platform=pseudonyms[p], reason=reason, requested_by=requested_by)
               for p in names]
    _write_records(client, settings.erasures_index, records)
    deleted, method = delete_mentions_of(client, settings.mentions_index, names)
    # Sinks pick the records up within erasure_refresh_s; anything they indexed before that goes now.
    sleep(settings.erasure_refresh_s + 1.0 if sweep_after_s is None else sweep_after_s)
    more, _ = delete_mentions_of(client, settings.mentions_index, names)
    deleted += more
    # Their cases go too (they quote the mentions); consent links are removed by erase_authors
    # (ConsentService.erase), which also needs Kafka.
    cases, _ = delete_mentions_of(client, settings.cases_index, names, field=CASE_AUTHOR_FIELD)
    deleted += cases
    # and analysts' corrections of their mentions (a note may quote or describe the author)
    corrections, _ = delete_mentions_of(client, settings.corrections_index, names, field=CASE_AUTHOR_FIELD)
    deleted += corrections
    for record in records:
        record.deleted = deleted  # documents removed by this request (all its pseudonyms)
    _write_records(client, settings.erasures_index, records)
    ERASURES.inc(len(records))
    # Log the pseudonyms, never the handle the operator typed.
    log.info("erased author", extra={"pseudonyms": names, "deleted": deleted, "method": method, "reason": reason})
    return ErasureResult(names, deleted, method)


def pseudonyms_of(settings: Settings, client: Elasticsearch, handle: str,
                  platforms: Sequence[str] = ()) -> dict[str, str]:
    """pseudonym -> platform for an author's handle on ``platforms`` (default: every platform in the index).

    Each platform's canonical pseudonym (any spelling: ``@user@host``, a profile URL), and the one
    the same spelling got before canonical keys, so data not yet migrated is found too."""
    pseudonymizer = pseudonymizer_from_settings(settings)
    platforms = list(platforms) or platforms_in_index(client, settings.elasticsearch.mentions_index)
    found = {pseudonymizer.pseudonym(p, handle): p for p in platforms}
    for p in platforms:
        found.setdefault(pseudonymizer.legacy_pseudonym(p, handle), p)
    return found


def not_pseudonyms(values: Iterable[str]) -> list[str]:
    """The values that are not pseudonyms (``psn_`` + 32 hex digits): a typo must not erase nothing silently."""
    return [v for v in values if not PSEUDONYM.fullmatch(v)]


def erase_authors(settings: Settings, client: Elasticsearch, pseudonyms: dict[str, str], *, reason: str,
                  requested_by: str | None, consent_source: str, sweep_after_s: float | None = None) -> ErasureResult:
    """A whole erasure request: the mentions and cases (``erase``), then each author's consent and its links."""
    result = erase(client, settings.elasticsearch, pseudonyms, reason=reason, requested_by=requested_by,
                   sweep_after_s=sweep_after_s)
    consents = ConsentService(settings, client)
    for pseudonym, platform in pseudonyms.items():
        consents.erase(pseudonym, platform, consent_source)
    return result


def _write_records(client: Elasticsearch, index: str, records: Iterable[ErasureRecord]) -> None:
    for record in records:
        client.index(index=index, id=record.pseudonym, document=record.model_dump(mode="json"), refresh="wait_for")
