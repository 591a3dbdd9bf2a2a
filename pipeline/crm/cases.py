"""Social CRM cases: routing rules turn mentions into cases for team queues; staff work them.

``stimmung cases run`` (the case manager) reads the enriched topic (its own consumer group):
1. each mention is matched against ``crm.routes`` (brand, topic, sentiment, language, influence,
   a brand query on the text); the first matching rule names queue and priority;
2. it joins the open case of the same author or thread in that queue, or opens a new one (id
   derived from queue and first mention: a replay finds the same case and skips the mention it
   already holds);
3. offsets are committed after Elasticsearch acknowledged the batch.
Every ``crm.sla_check_s`` it marks open cases past their SLA, counts them and sends SLA alerts
through the alerting channels, and exports first-response and resolution times (set by staff
with ``stimmung cases claim|reply|close``) as Prometheus histograms, once per case.
Cases mirror to a ticketing system when ``crm.ticket_webhook.url`` is set (signed JSON).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable

import httpx
from elasticsearch import ApiError as _ApiError
from elasticsearch import ConflictError, Elasticsearch, NotFoundError
from elasticsearch import ConnectionError as _ESConnectionError
from elasticsearch import TransportError as _TransportError
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from stimmung.brandquery import Target, parse
from stimmung.config import CaseRouteSettings, Settings, read_secret
from stimmung.health import HEALTH
from stimmung.kafka import group_consumer
from stimmung.metrics import (
    CASE_FIRST_RESPONSE_SECONDS,
    CASE_MENTIONS,
    CASE_MENTIONS_SKIPPED,
    CASE_RESOLUTION_SECONDS,
    CASE_SLA_BREACHES,
    CASES_OPENED,
)
from stimmung.pipeline.erased import ErasureList
from stimmung.schemas.alert import Alert
from stimmung.schemas.case import Case, Reply
from stimmung.schemas.mention import EnrichedMention, utcnow

log = logging.getLogger(__name__)
CASE_NAMESPACE = uuid.UUID("6f1c9a52-3c1e-4d7e-9a51-1b6c2f0e8d11")


class CaseError(Exception):
    """A staff action that cannot be applied (unknown case, wrong state)."""


class Router:
    def __init__(self, routes: list[CaseRouteSettings]):
        self.routes = [(r, parse(r.query) if r.query else None) for r in routes]

    def route(self, m: EnrichedMention) -> CaseRouteSettings | None:
        brands = {b.brand for b in m.brands}
        topics = {t.label for t in m.topics}
        sentiment = m.sentiment.label if m.sentiment else None
        influence = m.author.influence if m.author and m.author.influence is not None else 0.0
        for rule, query in self.routes:
            if rule.brands and not brands & set(rule.brands):
                continue
            if rule.topics and not topics & set(rule.topics):
                continue
            if rule.sentiments and sentiment not in rule.sentiments:
                continue
            if rule.languages and m.language not in rule.languages:
                continue
            if rule.min_influence is not None and influence < rule.min_influence:
                continue
            if query is not None and not query.matches(Target.of(m.text, m.language, m.url, None)):
                continue
            return rule
        return None


def new_case(rule: CaseRouteSettings, m: EnrichedMention) -> Case:
    now = utcnow()
    brand = sorted({b.brand for b in m.brands})
    return Case(
        case_id="case-" + uuid.uuid5(CASE_NAMESPACE, f"{rule.queue}:{m.mention_id}").hex[:16], queue=rule.queue,
        priority=rule.priority, route=rule.name, brand=brand[0] if brand else None, topics=[t.label for t in m.topics],
        sentiment=m.sentiment.label if m.sentiment else None, language=m.language, platform=m.platform,
        author_pseudonym=m.author.pseudonym if m.author else None, contact_id=m.author.contact_id if m.author else None,
        influence=m.author.influence if m.author else None, thread_id=m.thread_id, title=m.text[:300], url=m.url,
        mention_ids=[m.mention_id], mention_count=1, created_at=now, updated_at=now,
        first_response_due=now + timedelta(seconds=rule.first_response_sla_s),
        resolution_due=now + timedelta(seconds=rule.resolution_sla_s))


class CaseStore:
    """Cases in Elasticsearch, changed with optimistic concurrency (seq_no/primary_term)."""

    def __init__(self, client: Elasticsearch, index: str, mirror: Callable[[Case, str], None] | None = None):
        self.client, self.index = client, index
        self.mirror = mirror or (lambda case, event: None)

    def get(self, case_id: str) -> tuple[Case, int, int]:
        try:
            doc = self.client.get(index=self.index, id=case_id)
        except NotFoundError:
            raise CaseError(f"no case {case_id}") from None
        return Case.model_validate(doc["_source"]), doc["_seq_no"], doc["_primary_term"]

    def put(self, case: Case, seq: tuple[int, int] | None = None, create: bool = False) -> None:
        kwargs: dict[str, Any] = {"if_seq_no": seq[0], "if_primary_term": seq[1]} if seq else {}
        if create:
            kwargs["op_type"] = "create"
        self.client.index(index=self.index, id=case.case_id, document=case.model_dump(mode="json"),
                          refresh="wait_for", **kwargs)

    def find(self, query: dict[str, Any], size: int = 1) -> list[Case]:
        resp = self.client.search(index=self.index, query=query, size=size, sort=[{"created_at": "desc"}],
                                  ignore_unavailable=True)
        return [Case.model_validate(h["_source"]) for h in resp["hits"]["hits"]]

    def open_case_for(self, queue: str, m: EnrichedMention) -> Case | None:
        same = [{"term": {"author_pseudonym": m.author.pseudonym}}] if m.author else []
        if m.thread_id:
            same.append({"term": {"thread_id": m.thread_id}})
        if not same:
            return None
        found = self.find({"bool": {"filter": [{"term": {"queue": queue}}, {"terms": {"state": ["open", "in_progress"]}}],
                                    "should": same, "minimum_should_match": 1}})
        return found[0] if found else None

    def update(self, case_id: str, change: Callable[[Case], str | None]) -> Case:
        """Apply ``change`` (returns the mirror event name or None) with retries on concurrent edits."""
        for _ in range(5):
            case, seq_no, term = self.get(case_id)
            event = change(case)
            case.updated_at = utcnow()
            try:
                self.put(case, (seq_no, term))
            except ConflictError:
                continue
            if event:
                self.mirror(case, event)
            return case
        raise CaseError(f"case {case_id} keeps changing; try again")


# --- staff actions (CLI) -------------------------------------------------------------------------

def _held_by_other(c: Case, who: str, take_over: bool, doing: str) -> None:
    if c.assignee and c.assignee != who and not take_over:
        raise CaseError(f"{c.case_id} is assigned to {c.assignee}; {doing} it anyway with --take-over")


def apply_claim(c: Case, who: str, take_over: bool = False) -> str:
    """Staff rules, pure: a case held by someone else is not taken over silently."""
    if c.state == "done":
        raise CaseError(f"{c.case_id} is closed")
    if c.assignee == who and c.state == "in_progress":
        raise CaseError(f"{c.case_id} is already yours")
    _held_by_other(c, who, take_over, "claim")
    c.assignee, c.state = who, "in_progress"
    c.claimed_at = c.claimed_at or utcnow()
    return "claimed"


def apply_reply(c: Case, who: str, text: str, take_over: bool = False) -> str:
    if not text or not text.strip():
        raise CaseError("a reply needs text (an empty one would count as the first response)")
    if c.state == "done":
        raise CaseError(f"{c.case_id} is closed")
    _held_by_other(c, who, take_over, "answer")
    now = utcnow()
    c.replies.append(Reply(by=who, at=now, text=text.strip()))
    if c.first_response_at is None:
        c.first_response_at = now
        c.first_response_s = (now - c.created_at).total_seconds()
    c.assignee = who
    c.state = "in_progress"
    return "replied"


def apply_close(c: Case, who: str, text: str | None = None, take_over: bool = False) -> str:
    if c.state == "done":
        raise CaseError(f"{c.case_id} is already closed")
    _held_by_other(c, who, take_over, "close")
    now = utcnow()
    if text and text.strip():
        c.replies.append(Reply(by=who, at=now, text=text.strip()))
        if c.first_response_at is None:
            c.first_response_at, c.first_response_s = now, (now - c.created_at).total_seconds()
    c.state, c.resolved_at = "done", now
    c.resolution_s = (now - c.created_at).total_seconds()
    c.assignee = c.assignee if c.assignee and not take_over else who
    return "closed"


def claim(store: CaseStore, case_id: str, who: str, take_over: bool = False) -> Case:
    return store.update(case_id, lambda c: apply_claim(c, who, take_over))


def reply(store: CaseStore, case_id: str, who: str, text: str, take_over: bool = False) -> Case:
    if not text or not text.strip():  # before any read: nothing to change
        raise CaseError("a reply needs text (an empty one would count as the first response)")
    return store.update(case_id, lambda c: apply_reply(c, who, text, take_over))


def close(store: CaseStore, case_id: str, who: str, text: str | None = None, take_over: bool = False) -> Case:
    return store.update(case_id, lambda c: apply_close(c, who, text, take_over))


def ticket_mirror(settings: Settings) -> Callable[[Case, str], None] | None:
    """Signed JSON to a ticketing system (Zendesk/Jira/ServiceNow via their webhook intake)."""
    hook = settings.crm.ticket_webhook
    if not hook.url:
        return None
    url: str = hook.url
    secret = read_secret(hook.secret, hook.secret_file, "crm.ticket_webhook.secret")

    def send(case: Case, event: str) -> None:
        body = json.dumps({"event": event, "case": case.model_dump(mode="json")}).encode()
        headers = {"Content-Type": "application/json", "X-Stimmung-Event": f"case.{event}",
                   "Idempotency-Key": f"{case.case_id}:{event}:{case.updated_at.isoformat()}"}
        if secret:
            headers["X-Stimmung-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        for attempt in range(3):
            try:
                resp = httpx.post(url, content=body, headers=headers, timeout=10)
                if resp.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(2 ** attempt)
        log.error("ticket mirror failed", extra={"case": case.case_id, "event": event})

    return send


# --- the case manager ---------------------------------------------------------------------------

class CaseManager:
    def __init__(self, settings: Settings, client: Elasticsearch, group_id: str | None = None):
        self.settings = settings
        self.client = client
        self.router = Router(settings.crm.routes)
        self.store = CaseStore(client, settings.elasticsearch.cases_index, ticket_mirror(settings))
        # Like the sink: a replay of an erased author's posts must never bring them back as a case
        # (the text and address would name the author again). erase() deletes cases once more
        # after this list's refresh interval, so nothing opened in between survives either.
        self.erasures = ErasureList(client, settings.elasticsearch.erasures_index,
                                    settings.elasticsearch.erasure_refresh_s)
        self.group_id = group_id or f"{settings.pipeline.app_id}-cases"
        self._stop = threading.Event()
        self._next_check = 0.0

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def handle(self, m: EnrichedMention) -> str | None:
        """Route one mention: 'opened', 'joined', 'duplicate', 'erased' or None (no rule matched)."""
        rule = self.router.route(m)
        if rule is None:
            return None
        if m.author is not None and m.author.pseudonym in self.erasures.current():
            CASE_MENTIONS_SKIPPED.labels(reason="erased").inc()
            return "erased"
        if self.store.find({"term": {"mention_ids": m.mention_id}}):
            return "duplicate"  # a replay: the mention is already in its case
        existing = self.store.open_case_for(rule.queue, m)
        if existing is not None:
            def join(c: Case) -> str:
                if m.mention_id not in c.mention_ids:
                    c.mention_ids.append(m.mention_id)
                    c.mention_count = len(c.mention_ids)
                    if m.author and m.author.contact_id:
                        c.contact_id = m.author.contact_id
                return "updated"
            self.store.update(existing.case_id, join)
            CASE_MENTIONS.labels(queue=rule.queue).inc()
            return "joined"
        case = new_case(rule, m)
        try:
            self.store.put(case, create=True)
        except ConflictError:
            return "duplicate"
        self.store.mirror(case, "opened")
        CASES_OPENED.labels(queue=case.queue, priority=case.priority).inc()
        CASE_MENTIONS.labels(queue=case.queue).inc()
        log.info("case opened", extra={"case": case.case_id, "queue": case.queue, "priority": case.priority})
        return "opened"

    def check(self, dispatcher=None, now: datetime | None = None) -> dict[str, int]:
        """SLA breaches and response-time metrics; returns what it did."""
        now = now or utcnow()
        done = {"breaches": 0, "observed": 0}
        for kind, due, met in (("first_response", "first_response_due", "first_response_at"),
                               ("resolution", "resolution_due", "resolved_at")):
            late = self.store.find({"bool": {"filter": [{"range": {due: {"lt": now.isoformat()}}}],
                                             "must_not": [{"exists": {"field": met}}, {"term": {"sla_breached": kind}}]}},
                                   size=200)
            for case in late:
                def mark(c: Case, kind=kind) -> str:
                    if kind not in c.sla_breached:
                        c.sla_breached.append(kind)
                    return "sla_breached"
                self.store.update(case.case_id, mark)
                CASE_SLA_BREACHES.labels(queue=case.queue, kind=kind).inc()
                done["breaches"] += 1
                if dispatcher is not None:
                    asyncio.run(dispatcher.deliver(sla_alert(case, kind, now)))
        for kind, field, seconds, histogram in (
                ("first_response", "first_response_at", "first_response_s", CASE_FIRST_RESPONSE_SECONDS),
                ("resolution", "resolved_at", "resolution_s", CASE_RESOLUTION_SECONDS)):
            for case in self.store.find({"bool": {"filter": [{"exists": {"field": field}}],
                                                  "must_not": [{"term": {"observed": kind}}]}}, size=500):
                histogram.labels(queue=case.queue, priority=case.priority).observe(getattr(case, seconds) or 0.0)

                def observed(c: Case, kind=kind) -> None:
                    if kind not in c.observed:
                        c.observed.append(kind)
                self.store.update(case.case_id, observed)
                done["observed"] += 1
        return done

    def run(self, until: Callable[[], bool] | None = None) -> None:
        from stimmung.pipeline.alerts.deliveries import Dispatcher

        s = self.settings
        dispatcher = Dispatcher(s.alerting) if s.alerting.channels else None
        consumer = group_consumer(s.kafka, s.kafka.topics.enriched, self.group_id, "cases", 200,
                                  should_stop=self._stop.is_set)
        HEALTH.set_ready("cases", True, "consumer subscribed")
        log.info("case manager started", extra={"routes": len(s.crm.routes), "group": self.group_id})
        outage = _ElasticsearchOutage(self._stop)
        try:
            while not self._stop.is_set() and not (until and until()):
                HEALTH.beat("cases", 300.0)
                offsets: dict[TopicPartition, OffsetAndMetadata] = {}
                unhandled: dict[TopicPartition, int] = {}
                try:
                    for tp, records in consumer.poll(timeout_ms=500).items():
                        unhandled[tp] = records[0].offset
                        for r in records:
                            try:
                                self.handle(EnrichedMention.model_validate_json(r.value or b""))
                            except ValidationError:
                                pass  # malformed: the sink dead-letters it
                            offsets[tp] = OffsetAndMetadata(r.offset + 1, "", -1)
                            unhandled[tp] = r.offset + 1
                    if time.monotonic() >= self._next_check:
                        self.check(dispatcher)
                        self._next_check = time.monotonic() + s.crm.sla_check_s
                    outage.over()
                except _ES_UNAVAILABLE as err:
                    if not _retryable(err):
                        raise
                    # Elasticsearch went away mid-poll: keep what is done, read the rest again
                    # once it is back (issue #20: the case manager used to exit here).
                    for tp, offset in unhandled.items():
                        consumer.seek(tp, offset)
                    if offsets:
                        consumer.commit(offsets)
                    outage.wait(err)
                    continue
                if offsets:
                    consumer.commit(offsets)  # every case write above was acknowledged (refresh=wait_for)
        finally:
            consumer.close(autocommit=False)
            if dispatcher is not None:
                asyncio.run(dispatcher.aclose())


_ES_UNAVAILABLE = (_TransportError, _ESConnectionError, _ApiError)


def _retryable(err: Exception) -> bool:
    return not isinstance(err, _ApiError) or err.status_code in (429, 502, 503, 504)


class _ElasticsearchOutage:
    """Capped backoff while Elasticsearch is away; one line when it goes, one when it is back."""

    def __init__(self, stop: threading.Event):
        from stimmung.retry import Backoff

        self.stop, self.backoff, self.since = stop, Backoff(base_s=0.5, cap_s=15.0), None

    def wait(self, err: Exception) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("case manager: Elasticsearch unavailable; waiting for it", extra={"error": str(err)[:300]})
            HEALTH.set_ready("elasticsearch", False, "unavailable")
        self.stop.wait(max(0.2, self.backoff.next_delay()))

    def over(self) -> None:
        if self.since is not None:
            log.warning("case manager: Elasticsearch answers after %.0f s", time.monotonic() - self.since)
            HEALTH.set_ready("elasticsearch", True, "answers")
            self.since = None
            self.backoff.reset()


def sla_alert(case: Case, kind: str, now: datetime) -> Alert:
    due = case.first_response_due if kind == "first_response" else case.resolution_due
    minutes = int((now - due).total_seconds() // 60)
    what = "no first response" if kind == "first_response" else "not resolved"
    return Alert(kind="sla", alert_id=f"sla:{case.case_id}:{kind}", event_id=f"sla:{case.case_id}:{kind}:fired",
                 event="fired", status="firing", severity="critical" if case.priority in ("P1", "P2") else "warning",
                 series=f"case={case.case_id}", brand=case.brand or "-", topic=case.topics[0] if case.topics else None,
                 window_start=case.created_at, window_end=now, observed=case.mention_count, expected=0.0, p_value=1.0,
                 case_id=case.case_id, queue=case.queue,
                 detail=f"{what} {minutes} min after the {kind.replace('_', ' ')} SLA ({case.priority})")
