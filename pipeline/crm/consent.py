"""Consent-gated identity: link an author's mentions to a CRM contact only while consent exists.

Where consent lives, and why each place:
- the compacted topic ``stimmung.consent`` (key = author pseudonym): the source of truth, which
  the enrichment workers keep as a Faust table and consult for every mention they enrich;
- ``stimmung-consents`` in Elasticsearch (id = pseudonym): the sink's view, so a mention enriched
  just before a withdrawal and indexed just after it loses its link on the way in;
- ``stimmung-consent-audit``: every grant, withdrawal and erasure, append-only.

Order on withdrawal: the topic first (no new links), then the sink's view, then every indexed
mention and case of the pseudonym is unlinked (update by query), swept once more after the sinks'
refresh interval, and audited. Nothing here ever stores the handle: records carry the pseudonym.
No linking by guessing: a link exists only for the exact (platform, handle) a consent names.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from elasticsearch import ApiError, Elasticsearch
from elasticsearch.helpers import bulk, scan

from stimmung.config import Settings
from stimmung.kafka import confirm_sent, make_producer
from stimmung.metrics import CONSENT_CHANGES
from stimmung.pipeline.elastic.client import missing_api
from stimmung.pipeline.privacy import pseudonymizer_from_settings
from stimmung.schemas.consent import ConsentAudit, ConsentRecord
from stimmung.schemas.mention import utcnow

log = logging.getLogger(__name__)
UNLINK_SCRIPT = ("if (ctx._source.author != null) { ctx._source.author.remove('contact_id'); "
                 "if (ctx._source.author.linked_url == true) { ctx._source.remove('url'); "
                 "ctx._source.author.remove('linked_url') } }")
UNLINK_CASE_SCRIPT = "ctx._source.remove('contact_id')"
LINK_SCRIPT = "if (ctx._source.author != null) { ctx._source.author.contact_id = params.contact_id }"
LINK_CASE_SCRIPT = "ctx._source.contact_id = params.contact_id"


class ConsentService:
    def __init__(self, settings: Settings, client: Elasticsearch, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.client = client
        self.pseudonymizer = pseudonymizer_from_settings(settings)
        self.sleep = sleep
        es = settings.elasticsearch
        self.state_index, self.audit_index = es.consents_index, es.consent_audit_index

    def pseudonym(self, platform: str, handle: str) -> str:
        return self.pseudonymizer.pseudonym(platform, handle)

    def current(self, pseudonym: str) -> ConsentRecord | None:
        doc = self.client.options(ignore_status=404).get(index=self.state_index, id=pseudonym)
        return ConsentRecord.model_validate(doc["_source"]) if doc.get("found") else None

    def grant(self, platform: str, handle: str, contact_id: str, purposes: list[str], source: str,
              evidence: str | None = None) -> ConsentRecord:
        pseudonym = self.pseudonym(platform, handle)
        before = self.current(pseudonym)
        kept = list(before.purposes) if before and before.contact_id == contact_id and before.status == "granted" else []
        record = ConsentRecord(pseudonym=pseudonym, platform=platform.lower(), contact_id=contact_id,
                               purposes=sorted(set(kept) | set(purposes)), status="granted", source=source,
                               evidence=evidence)
        if before is not None and before.contact_id != contact_id and before.allows(self.settings.crm.linking_purpose):
            # Another contact held this author: that link ends before the new one starts.
            self._unlink(pseudonym)
        self._publish(record)
        linked = 0
        if record.allows(self.settings.crm.linking_purpose):
            # What is indexed already gets the link now, as a withdrawal removes it at once.
            # (Addresses that name the author were never stored: they come back only with new posts.)
            linked = self._link(pseudonym, contact_id)
        self._audit(ConsentAudit(action="grant", pseudonym=pseudonym, platform=record.platform, contact_id=contact_id,
                                 purposes=list(purposes), source=source, evidence=evidence))
        log.info("consent granted", extra={"pseudonym": pseudonym, "linked": linked})
        CONSENT_CHANGES.labels(action="grant").inc()
        return record

    def withdraw(self, platform: str, handle: str, source: str, purposes: list[str] | None = None,
                 evidence: str | None = None) -> tuple[ConsentRecord | None, int]:
        """Withdraw ``purposes`` (all when None); returns the new state and the documents unlinked."""
        pseudonym = self.pseudonym(platform, handle)
        before = self.current(pseudonym)
        if before is None:
            return None, 0
        remaining = [p for p in before.purposes if purposes is not None and p not in purposes]
        record = before.model_copy(update={"purposes": remaining, "status": "granted" if remaining else "withdrawn",
                                           "source": source, "evidence": evidence, "at": utcnow()})
        self._publish(record)
        unlinked = 0
        if not record.allows(self.settings.crm.linking_purpose):
            unlinked = self._unlink(pseudonym)
            # Sinks re-read the consent view every erasure_refresh_s; what they indexed meanwhile goes now.
            self.sleep(self.settings.elasticsearch.erasure_refresh_s + 1.0)
            unlinked += self._unlink(pseudonym)
        self._audit(ConsentAudit(action="withdraw", pseudonym=pseudonym, platform=record.platform,
                                 contact_id=before.contact_id, purposes=purposes or list(before.purposes), source=source,
                                 evidence=evidence, unlinked_documents=unlinked))
        CONSENT_CHANGES.labels(action="withdraw").inc()
        log.info("consent withdrawn", extra={"pseudonym": pseudonym, "unlinked": unlinked})
        return record, unlinked

    def erase(self, pseudonym: str, platform: str, source: str) -> int:
        """For an erasure request: the consent goes (tombstone on the topic), its links go, audited."""
        before = self.current(pseudonym)
        if before is None:
            return 0
        producer = make_producer(self.settings.kafka)
        try:
            confirm_sent(producer, [producer.send(self.settings.kafka.topics.consent, key=pseudonym.encode(), value=None)])
        finally:
            producer.close()
        self.client.options(ignore_status=404).delete(index=self.state_index, id=pseudonym, refresh="wait_for")
        unlinked = self._unlink(pseudonym)
        self._audit(ConsentAudit(action="erase", pseudonym=pseudonym, platform=platform, contact_id=before.contact_id,
                                 source=source, unlinked_documents=unlinked))
        CONSENT_CHANGES.labels(action="erase").inc()
        return unlinked

    def _publish(self, record: ConsentRecord) -> None:
        producer = make_producer(self.settings.kafka)
        try:  # acknowledged before the sink's view changes: the topic is the source of truth
            confirm_sent(producer, [producer.send(self.settings.kafka.topics.consent, key=record.pseudonym.encode(),
                                                  value=record.model_dump_json().encode())])
        finally:
            producer.close()
        self.client.index(index=self.state_index, id=record.pseudonym, document=record.model_dump(mode="json"),
                          refresh="wait_for")

    def _audit(self, entry: ConsentAudit) -> None:
        self.client.index(index=self.audit_index, document=entry.model_dump(mode="json"), refresh="wait_for")

    def _link(self, pseudonym: str, contact_id: str) -> int:
        """Set the contact id on every indexed mention and case of ``pseudonym``; returns how many."""
        es = self.settings.elasticsearch

        def link_mention(source: dict) -> None:
            if source.get("author") is not None:
                source["author"]["contact_id"] = contact_id

        def link_case(source: dict) -> None:
            source["contact_id"] = contact_id

        total = 0
        for index, field, link, script, transform in (
                (es.mentions_index, "author.pseudonym", "author.contact_id", LINK_SCRIPT, link_mention),
                (es.cases_index, "author_pseudonym", "contact_id", LINK_CASE_SCRIPT, link_case)):
            query = {"bool": {"filter": [{"term": {field: pseudonym}}],
                              "must_not": [{"term": {link: contact_id}}]}}
            total += update_by_query(self.client, index, query, script, transform, {"contact_id": contact_id})
        return total

    def _unlink(self, pseudonym: str) -> int:
        """Remove the contact id from every mention and case of ``pseudonym``; returns how many."""
        es = self.settings.elasticsearch
        total = 0
        for index, field, link, script, transform in (
                (es.mentions_index, "author.pseudonym", "author.contact_id", UNLINK_SCRIPT, _drop_author_link),
                (es.cases_index, "author_pseudonym", "contact_id", UNLINK_CASE_SCRIPT, _drop_case_link)):
            query = {"bool": {"filter": [{"term": {field: pseudonym}}, {"exists": {"field": link}}]}}
            total += update_by_query(self.client, index, query, script, transform)
        return total


def update_by_query(client: Elasticsearch, index: str, query: dict, script: str,
                    transform: Callable[[dict], None], params: dict[str, Any] | None = None) -> int:
    """``_update_by_query`` with a Painless ``script``; on a cluster without the reindex or Painless
    modules, the same change as ``transform`` applied to each source, written back with
    optimistic concurrency (a document changed meanwhile is read again on the next pass)."""
    try:
        resp = client.update_by_query(index=index, query=query,
                                      script={"source": script, "lang": "painless", **({"params": params} if params else {})},
                                      refresh=True, conflicts="proceed", ignore_unavailable=True, allow_no_indices=True)
        return int(resp.get("updated", 0))
    except ApiError as err:
        if not (missing_api(err) or "painless" in str(err).lower()):
            raise
    updated = 0
    for _ in range(10):
        client.indices.refresh(index=index, ignore_unavailable=True)
        hits = list(scan(client, index=index, query={"query": query, "seq_no_primary_term": True}, size=500,
                         ignore_unavailable=True))
        if not hits:
            return updated
        actions = []
        for h in hits:
            transform(h["_source"])
            actions.append({"_op_type": "index", "_index": h["_index"], "_id": h["_id"], "_source": h["_source"],
                            "if_seq_no": h["_seq_no"], "if_primary_term": h["_primary_term"]})
        ok, _ = bulk(client, actions, raise_on_error=False, refresh=True)
        updated += ok
    raise RuntimeError(f"documents in {index} kept changing while being updated")


def _drop_author_link(source: dict) -> None:
    author = source.get("author") or {}
    author.pop("contact_id", None)
    if author.pop("linked_url", None):
        source.pop("url", None)  # the address names the author: it goes with the consent


def _drop_case_link(source: dict) -> None:
    source.pop("contact_id", None)


class LinkedAuthors:
    """The sink's view: pseudonyms whose consent currently allows linking (re-read every few seconds)."""

    def __init__(self, client: Elasticsearch, index: str, purpose: str, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.client, self.index, self.purpose, self.refresh_s, self.clock = client, index, purpose, refresh_s, clock
        self._linked: dict[str, str] = {}
        self._loaded_at: float | None = None

    def current(self) -> dict[str, str]:
        """pseudonym -> contact id, for consents that allow linking now."""
        if self._loaded_at is None or self.clock() - self._loaded_at >= self.refresh_s:
            hits = scan(self.client, index=self.index, query={"query": {"bool": {"filter": [
                {"term": {"status": "granted"}}, {"term": {"purposes": self.purpose}}]}}}, size=1000,
                ignore_unavailable=True)
            self._linked = {h["_source"]["pseudonym"]: h["_source"]["contact_id"] for h in hits}
            self._loaded_at = self.clock()
        return self._linked


def consent_value(raw: bytes | None, purpose: str) -> str | None:
    """The contact id a consent-topic value links to for ``purpose`` (None: no link)."""
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if record.get("status") == "granted" and purpose in (record.get("purposes") or []):
        return record.get("contact_id")
    return None
