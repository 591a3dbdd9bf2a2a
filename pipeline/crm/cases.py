"""Social CRM cases: routing rules turn mentions into cases for team queues; staff work them.

``stimmung cases run`` (the case manager) reads the enriched topic (its own consumer group):
1. each mention is matched against ``crm.routes`` (brand, topic, sentiment, language, influence,
   a brand query on the text); the first matching rule names queue and priority;
2. it joins the open case of the same author or thread in that queue, or opens a new one (id
   derived from queue and first mention: a replay finds the same case and skips the mention it
   already holds);
3. offsets are committed after Elasticsearch acknowledged the batch.
It works a poll batch at a time (issue #20: one write with ``refresh=wait_for`` per mention held it
to ~1 mention/s): two terms searches find the batch's mentions already held and the open cases of
its authors and threads, the batch's cases are planned in memory (a mention can join a case opened
earlier in the same batch), and one bulk request writes them, with optimistic concurrency (create
for new ids, if_seq_no/if_primary_term for updates; the mentions of a conflicting write are placed
again) and one refresh, so the next batch's searches see this one's cases.
Every ``crm.sla_check_s`` it marks open cases past their SLA, counts them and sends SLA alerts
through the alerting channels, and exports first-response and resolution times (set by staff
with ``stimmung cases claim|reply|close``) as Prometheus histograms, once per case.
Cases mirror to a ticketing system when ``crm.ticket_webhook.url`` is set (signed JSON).
(Over ~400 lines: the staff rules, the store and the batch planner share the Case document's
invariants; split apart they would import each other.)
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
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

import httpx
from elasticsearch import ApiError as _ApiError
from elasticsearch import ConflictError, Elasticsearch, NotFoundError
from elasticsearch import ConnectionError as _ESConnectionError
from elasticsearch import TransportError as _TransportError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from stimmung.brandquery import Target, parse
from stimmung.config import CaseRouteSettings, Settings, read_secret
from stimmung.health import HEALTH
from stimmung.kafka import commit_or_hold, group_consumer
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
            if not m.relevant_at(rule.min_relevance):
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

    def held(self, mention_ids: list[str]) -> set[str]:
        """Those of ``mention_ids`` that some case holds already (a replay): one terms query. Each hit
        holds at least one of them, so ``len(mention_ids)`` hits are all there can be."""
        if not mention_ids:
            return set()
        wanted = set(mention_ids)
        resp = self.client.search(index=self.index, query={"terms": {"mention_ids": sorted(wanted)}}, size=len(wanted),
                                  source_includes=["mention_ids"], ignore_unavailable=True)
        return {mid for h in resp["hits"]["hits"] for mid in h["_source"].get("mention_ids", []) if mid in wanted}

    def open_cases(self, queues: Iterable[str], authors: Iterable[str], threads: Iterable[str],
                   size: int) -> tuple[list[tuple[Case, int, int]], bool]:
        """Open cases of these queues whose author or thread is one of these, newest first, with their
        seq_no/primary_term; the flag says whether that was all of them (else the newest ``size``)."""
        same = [{"terms": {f: sorted(set(v))}} for f, v in (("author_pseudonym", authors), ("thread_id", threads)) if v]
        if not same:
            return [], True
        resp = self.client.search(
            index=self.index, size=size, sort=[{"created_at": "desc"}], seq_no_primary_term=True,
            track_total_hits=True, ignore_unavailable=True,
            query={"bool": {"filter": [{"terms": {"queue": sorted(set(queues))}},
                                       {"terms": {"state": ["open", "in_progress"]}}],
                            "should": same, "minimum_should_match": 1}})
        hits = resp["hits"]["hits"]
        found = [(Case.model_validate(h["_source"]), h["_seq_no"], h["_primary_term"]) for h in hits]
        return found, resp["hits"]["total"]["value"] <= len(hits)

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
        return self.handle_batch([m])[0]

    def handle_batch(self, mentions: list[EnrichedMention]) -> list[str | None]:
        """Route a poll batch, in order; one outcome per mention as ``handle`` gives it. Returns once
        Elasticsearch acknowledged (and refreshed) every case written."""
        outcomes: list[str | None] = [None] * len(mentions)
        erased = self.erasures.current()
        pending: list[_Routed] = []
        for i, m in enumerate(mentions):
            rule = self.router.route(m)
            if rule is None:
                continue
            if m.author is not None and m.author.pseudonym in erased:
                CASE_MENTIONS_SKIPPED.labels(reason="erased").inc()
                outcomes[i] = "erased"
                continue
            pending.append(_Routed(i, m, rule))
        for attempt in range(5):
            if not pending:
                return outcomes
            if attempt:  # someone else wrote those cases: let the searches see their writes
                self.client.indices.refresh(index=self.store.index)
            pending = self._place(pending, outcomes)
        raise CaseError(f"cases of {len(pending)} mentions keep changing under the case manager; try again")

    def _place(self, pending: list[_Routed], outcomes: list[str | None]) -> list[_Routed]:
        """Plan and write the cases of ``pending``; returns the mentions whose write met a conflict."""
        held = self.store.held([r.m.mention_id for r in pending])
        candidates, complete = self.store.open_cases(
            [r.rule.queue for r in pending], [r.m.author.pseudonym for r in pending if r.m.author],
            [r.m.thread_id for r in pending if r.m.thread_id], size=min(10_000, 4 * len(pending) + 100))
        known = {case.case_id: _Planned(case, (seq, term)) for case, seq, term in candidates}
        plans: dict[str, _Planned] = {}
        placed: set[str] = set()
        for r in pending:
            if r.m.mention_id in held or r.m.mention_id in placed:
                outcomes[r.index] = "duplicate"  # a replay: the mention is already in its case
                continue
            placed.add(r.m.mention_id)
            target = _newest_open(r, [*known.values(), *plans.values()])
            if target is None and not complete:
                # more open cases than one search returned: ask for this mention's own, as before
                target = self._open_case_of(r, known)
            if target is None:
                case = new_case(r.rule, r.m)
                plans[case.case_id] = _Planned(case, None, [r])
                continue
            plans[target.case.case_id] = target
            target.members.append(r)
            c, m = target.case, r.m
            if m.mention_id not in c.mention_ids:
                c.mention_ids.append(m.mention_id)
                c.mention_count = len(c.mention_ids)
                if m.author and m.author.contact_id:
                    c.contact_id = m.author.contact_id
            c.updated_at = utcnow()
        return self._write(plans, outcomes)

    def _open_case_of(self, r: _Routed, known: dict[str, _Planned]) -> _Planned | None:
        found = self.store.open_case_for(r.rule.queue, r.m)
        if found is None:
            return None
        if found.case_id not in known:
            case, seq, term = self.store.get(found.case_id)
            known[found.case_id] = _Planned(case, (seq, term))
        return known[found.case_id]

    def _write(self, plans: dict[str, _Planned], outcomes: list[str | None]) -> list[_Routed]:
        if not plans:
            return []
        operations: list[dict[str, Any]] = []
        for case_id, plan in plans.items():
            if plan.seq is None:
                operations.append({"create": {"_index": self.store.index, "_id": case_id}})
            else:
                operations.append({"index": {"_index": self.store.index, "_id": case_id,
                                             "if_seq_no": plan.seq[0], "if_primary_term": plan.seq[1]}})
            operations.append(plan.case.model_dump(mode="json"))
        # One refresh for the whole batch: the next batch's searches must see these cases (and
        # the inbox shows them at once).
        resp = self.client.bulk(operations=operations, refresh=True)
        again: list[_Routed] = []
        for plan, item in zip(plans.values(), resp["items"]):
            result = next(iter(item.values()))
            status = result.get("status", 500)
            if status == 409:
                again.extend(plan.members)  # changed (or created) meanwhile: place these again
                continue
            if status >= 300:
                raise CaseWriteRefused(status, result.get("error"))
            case = plan.case
            opened = plan.seq is None
            for n, r in enumerate(plan.members):
                outcomes[r.index] = "opened" if opened and n == 0 else "joined"
                CASE_MENTIONS.labels(queue=case.queue).inc()
            if opened:
                CASES_OPENED.labels(queue=case.queue, priority=case.priority).inc()
                log.info("case opened", extra={"case": case.case_id, "queue": case.queue, "priority": case.priority})
            self.store.mirror(case, "opened" if opened else "updated")
        return again

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
                batch = consumer.poll(timeout_ms=500)
                offsets = {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in batch.items() if records}
                handled = False
                try:
                    if batch:
                        mentions = []
                        for records in batch.values():
                            for r in records:
                                try:
                                    mentions.append(EnrichedMention.model_validate_json(r.value or b""))
                                except ValidationError:
                                    pass  # malformed: the sink dead-letters it
                        self.handle_batch(mentions)
                        handled = True
                        commit_or_hold(consumer, offsets, "case manager")  # every case write was acknowledged
                    if time.monotonic() >= self._next_check:
                        self.check(dispatcher)
                        self._next_check = time.monotonic() + s.crm.sla_check_s
                    outage.over()
                except _ES_UNAVAILABLE as err:
                    if not _retryable(err):
                        raise
                    # Elasticsearch went away: read the batch again once it is back (issue #20: the
                    # case manager used to exit here). What was written already is found again
                    # as held by its case: the replay changes nothing.
                    if not handled:
                        for tp, records in batch.items():
                            if records:
                                consumer.seek(tp, records[0].offset)
                    outage.wait(err)
                    continue
        finally:
            consumer.close(autocommit=False)
            if dispatcher is not None:
                asyncio.run(dispatcher.aclose())


@dataclass
class _Routed:
    index: int  # position in the batch (its outcome)
    m: EnrichedMention
    rule: CaseRouteSettings


@dataclass
class _Planned:
    """A case as this batch will write it: ``seq`` None = a new case (create), else the
    (seq_no, primary_term) it was read at."""
    case: Case
    seq: tuple[int, int] | None
    members: list[_Routed] = dataclass_field(default_factory=list)


def _newest_open(r: _Routed, cases: Iterable[_Planned]) -> _Planned | None:
    """The open case of the mention's queue by its author or in its thread, newest first, as the
    search of ``CaseStore.open_case_for`` finds it."""
    author = r.m.author.pseudonym if r.m.author else None
    thread = r.m.thread_id
    matching = [p for p in cases if p.case.queue == r.rule.queue and p.case.state in ("open", "in_progress")
                and ((author is not None and p.case.author_pseudonym == author)
                     or (thread is not None and p.case.thread_id == thread))]
    return max(matching, key=lambda p: p.case.created_at, default=None)


class CaseWriteRefused(Exception):
    """Elasticsearch refused a case in the bulk request (other than a version conflict)."""

    def __init__(self, status_code: int, error: Any):
        super().__init__(f"Elasticsearch refused a case write ({status_code}): {str(error)[:300]}")
        self.status_code = status_code


_ES_UNAVAILABLE = (_TransportError, _ESConnectionError, _ApiError, CaseWriteRefused)


def _retryable(err: Exception) -> bool:
    if isinstance(err, (_ApiError, CaseWriteRefused)):
        return err.status_code in (429, 502, 503, 504)
    return True


class _ElasticsearchOutage:
    """Capped backoff while Elasticsearch is away; one line when it goes, one when it is back."""

    def __init__(self, stop: threading.Event):
        from stimmung.retry import Backoff

        self.stop, self.backoff = stop, Backoff(base_s=0.5, cap_s=15.0)
        self.since: float | None = None

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
