"""Erasure of an author's mentions from Elasticsearch, and the records that keep them erased.

Order matters: the erasure record is written (and made searchable) *before* anything is deleted,
so a sink that re-reads the records can never re-index what is being erased; a second sweep after
the sinks' refresh interval removes documents from batches that were already in flight. A replay
of the Kafka topics later is harmless: the sink drops mentions of erased pseudonyms.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from elasticsearch import ApiError, Elasticsearch
from elasticsearch.helpers import bulk, scan

from stimmung.config import ElasticsearchSettings
from stimmung.metrics import ERASURES
from stimmung.schemas.erasure import ErasureRecord

log = logging.getLogger(__name__)

AUTHOR_FIELD = "author.pseudonym"
CASE_AUTHOR_FIELD = "author_pseudonym"


def _missing_api(err: ApiError) -> bool:
    # A node without the reindex module has no handler for _delete_by_query (400/405).
    text = str(err).lower()
    return err.status_code in (400, 404, 405, 410) and ("no handler" in text or "incorrect http method" in text)


def delete_mentions_of(client: Elasticsearch, index: str, pseudonyms: list[str], field: str = AUTHOR_FIELD) -> tuple[int, str]:
    """Delete every document by these pseudonyms (mentions, or cases with ``field``); returns (deleted, method)."""
    query = {"terms": {field: pseudonyms}}
    try:
        resp = client.delete_by_query(index=index, query=query, refresh=True, conflicts="proceed",
                                      wait_for_completion=True, ignore_unavailable=True)
        return int(resp.get("deleted", 0)), "delete_by_query"
    except ApiError as err:
        if not _missing_api(err):
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

    consent = client.options(ignore_status=404).get(index=settings.consents_index, id=pseudonym, _source=False)
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
    # Their cases go too (they quote the mentions); consent links are removed by the caller
    # (ConsentService.erase), which also needs Kafka.
    cases, _ = delete_mentions_of(client, settings.cases_index, names, field=CASE_AUTHOR_FIELD)
    deleted += cases
    for record in records:
        record.deleted = deleted  # documents removed by this request (all its pseudonyms)
    _write_records(client, settings.erasures_index, records)
    ERASURES.inc(len(records))
    # Log the pseudonyms, never the handle the operator typed.
    log.info("erased author", extra={"pseudonyms": names, "deleted": deleted, "method": method, "reason": reason})
    return ErasureResult(names, deleted, method)


def _write_records(client: Elasticsearch, index: str, records: Iterable[ErasureRecord]) -> None:
    for record in records:
        client.index(index=index, id=record.pseudonym, document=record.model_dump(mode="json"), refresh="wait_for")


class ErasureList:
    """The pseudonyms the sink must never index (re-read from Elasticsearch every few seconds)."""

    def __init__(self, client: Elasticsearch, index: str, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.client, self.index, self.refresh_s, self.clock = client, index, refresh_s, clock
        self._pseudonyms: frozenset[str] = frozenset()
        self._loaded_at: float | None = None

    def load(self) -> None:
        hits = scan(self.client, index=self.index, query={"query": {"match_all": {}}, "_source": ["pseudonym"]},
                    size=1000, ignore_unavailable=True)
        self._pseudonyms = frozenset(h["_source"]["pseudonym"] for h in hits)
        self._loaded_at = self.clock()

    def current(self) -> frozenset[str]:
        """The erased pseudonyms, re-read when the last read is older than ``refresh_s``.

        If Elasticsearch cannot be asked, the caller's bulk request would fail too: the error
        propagates and the batch is retried, never indexed against a stale list past its age.
        """
        if self._loaded_at is None or self.clock() - self._loaded_at >= self.refresh_s:
            self.load()
        return self._pseudonyms
