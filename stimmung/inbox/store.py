"""The inbox's access to the cases index: queue queries, versioned reads, guarded writes, lead
statistics and the audit index.

It wraps the case manager's ``CaseStore`` (same index, same document, same ticket mirror) and
adds what staff in a browser need: every write carries the version (``_seq_no`` and
``_primary_term``) the person saw, and Elasticsearch refuses it when the case changed since —
two agents claiming at once: one wins, the other gets ``Conflict`` with the case as it is now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError

from stimmung.brandquery import BrandQueryError, parse
from stimmung.config import Settings
from stimmung.pipeline.crm.cases import CaseStore, ticket_mirror
from stimmung.schemas.case import Case
from stimmung.schemas.mention import utcnow

log = logging.getLogger(__name__)
STATES = ("active", "open", "in_progress", "done", "all")
PRIORITIES = ("P1", "P2", "P3", "P4")
SENTIMENTS = ("negative", "neutral", "positive")
SORTS = {"newest": [{"created_at": "desc"}], "oldest": [{"created_at": "asc"}],
         "due": [{"first_response_due": "asc"}], "priority": [{"priority": "asc"}, {"created_at": "asc"}]}


class NotFound(Exception):
    """No such case, or not in a queue the user may see (the same answer for both)."""


class Unavailable(Exception):
    """Elasticsearch did not answer; nothing was changed."""


class Conflict(Exception):
    """The case changed since the user loaded it; ``current`` is how it is now."""

    def __init__(self, message: str, current: "Versioned"):
        super().__init__(message)
        self.current = current


class BadQuery(ValueError):
    """A filter or search the user typed is invalid; the message says which and why."""


@dataclass
class Versioned:
    case: Case
    seq_no: int
    primary_term: int

    @property
    def version(self) -> str:
        """What a form sends back: the document version and how many staff actions it had."""
        return f"{self.seq_no}.{self.primary_term}.{len(self.case.history)}"


def parse_version(token: str | None) -> tuple[int, int, int]:
    try:
        seq, term, history = (token or "").split(".")
        return int(seq), int(term), int(history)
    except ValueError:
        raise BadQuery("the form lacks the case version; reload the page") from None


@dataclass
class CaseQuery:
    """A queue view or search, as typed in the filter bar (validated by ``check``)."""

    queues: list[str]
    state: str = "active"
    priority: str | None = None
    brand: str | None = None
    topic: str | None = None
    language: str | None = None
    sentiment: str | None = None
    assignee: str | None = None
    q: str | None = None  # a brand query over the cases' mentions
    sort: str = "newest"
    page: int = 1
    size: int = 50
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.state not in STATES:
            raise BadQuery(f"state {self.state!r}: use one of {', '.join(STATES)}")
        if self.priority and self.priority not in PRIORITIES:
            raise BadQuery(f"priority {self.priority!r}: use one of {', '.join(PRIORITIES)}")
        if self.sentiment and self.sentiment not in SENTIMENTS:
            raise BadQuery(f"sentiment {self.sentiment!r}: use one of {', '.join(SENTIMENTS)}")
        if self.sort not in SORTS:
            raise BadQuery(f"sort {self.sort!r}: use one of {', '.join(SORTS)}")
        if self.page < 1 or self.page > 200:
            raise BadQuery("page must be between 1 and 200")
        if self.q:
            try:
                parse(self.q)
            except BrandQueryError as err:
                raise BadQuery(f"search: {err.message} at character {err.position + 1}") from None

    def filters(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"terms": {"queue": self.queues}}]
        if self.state == "active":
            out.append({"terms": {"state": ["open", "in_progress"]}})
        elif self.state != "all":
            out.append({"term": {"state": self.state}})
        for name in ("priority", "brand", "language", "sentiment", "assignee"):
            if value := getattr(self, name):
                out.append({"term": {name: value}})
        if self.topic:
            out.append({"term": {"topics": self.topic}})
        return out


class InboxStore:
    def __init__(self, client: Elasticsearch, settings: Settings):
        self.client = client
        self.settings = settings
        self.cases = CaseStore(client, settings.elasticsearch.cases_index, ticket_mirror(settings))
        self.audit_index = settings.inbox.audit_index

    # --- reading ----------------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConnectionError, TransportError) as err:  # elasticsearch.ConnectionError is a TransportError
            log.warning("Elasticsearch unavailable", extra={"error": type(err).__name__})
            raise Unavailable("Elasticsearch does not answer; nothing was changed — try again in a moment") from None

    def ping(self) -> bool:
        try:  # the cases index answers (GET / may be closed to clients: not a useful probe)
            self.client.count(index=self.cases.index)
            return True
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False

    def get(self, case_id: str, queues: list[str] | None = None) -> Versioned:
        try:
            doc = self._call(self.client.get, index=self.cases.index, id=case_id)
        except NotFoundError:
            raise NotFound(case_id) from None
        case = Case.model_validate(doc["_source"])
        if queues is not None and case.queue not in queues:
            raise NotFound(case_id)
        return Versioned(case, doc["_seq_no"], doc["_primary_term"])

    def matching_mentions(self, q: str, limit: int = 5000) -> list[str]:
        clause = parse(q).to_elasticsearch()
        resp = self._call(self.client.search, index=self.settings.elasticsearch.mentions_index, query=clause,
                          size=limit, _source=["mention_id"], ignore_unavailable=True)
        return [h["_source"]["mention_id"] for h in resp["hits"]["hits"] if "mention_id" in h["_source"]]

    def _body(self, query: CaseQuery) -> dict[str, Any]:
        filters = query.filters()
        if query.q:
            filters.append({"terms": {"mention_ids": self.matching_mentions(query.q)}})
        return {"query": {"bool": {"filter": filters}}, "sort": SORTS[query.sort] + [{"case_id": "asc"}]}

    def search(self, query: CaseQuery) -> tuple[int, list[Versioned]]:
        query.check()
        if not query.queues:
            return 0, []
        resp = self._call(self.client.search, index=self.cases.index, **self._body(query), size=query.size,
                          from_=(query.page - 1) * query.size, seq_no_primary_term=True, track_total_hits=True,
                          ignore_unavailable=True)
        hits = resp["hits"]["hits"]
        return resp["hits"]["total"]["value"], [
            Versioned(Case.model_validate(h["_source"]), h["_seq_no"], h["_primary_term"]) for h in hits]

    def export(self, query: CaseQuery, limit: int) -> Iterator[Case]:
        """Every case of the query (up to ``limit``), in pages after the sort values."""
        query.check()
        if not query.queues:
            return
        body, after, sent = self._body(query), None, 0
        while sent < limit:
            extra: dict[str, Any] = {"search_after": after} if after else {}
            resp = self._call(self.client.search, index=self.cases.index, **body, size=min(500, limit - sent),
                              ignore_unavailable=True, **extra)
            hits = resp["hits"]["hits"]
            if not hits:
                return
            for h in hits:
                yield Case.model_validate(h["_source"])
            sent += len(hits)
            after = hits[-1]["sort"]

    def changed_since(self, queues: list[str], since: datetime, limit: int = 100) -> list[Case]:
        if not queues:
            return []
        resp = self._call(self.client.search, index=self.cases.index, size=limit, ignore_unavailable=True,
                          query={"bool": {"filter": [{"terms": {"queue": queues}},
                                                     {"range": {"updated_at": {"gt": since.isoformat()}}}]}},
                          sort=[{"updated_at": "asc"}])
        return [Case.model_validate(h["_source"]) for h in resp["hits"]["hits"]]

    def mentions(self, case: Case, limit: int = 50) -> list[dict[str, Any]]:
        """The case's mentions and the rest of their thread, oldest first."""
        should: list[dict[str, Any]] = [{"terms": {"mention_id": case.mention_ids}}]
        if case.thread_id:
            should.append({"term": {"thread_id": case.thread_id}})
        try:
            resp = self._call(self.client.search, index=self.settings.elasticsearch.mentions_index, size=limit,
                              query={"bool": {"should": should, "minimum_should_match": 1}},
                              sort=[{"created_at": "asc"}], ignore_unavailable=True)
        except ApiError:
            return []
        return [h["_source"] for h in resp["hits"]["hits"]]

    def alerts(self, case: Case, limit: int = 20) -> list[dict[str, Any]]:
        clauses: list[dict[str, Any]] = [{"term": {"case_id": case.case_id}}]
        if case.brand:
            since = (case.created_at - timedelta(hours=6)).isoformat()
            clauses.append({"bool": {"filter": [{"term": {"kind": "spike"}}, {"term": {"brand": case.brand}},
                                                {"range": {"window_end": {"gte": since}}}]}})
        try:
            resp = self._call(self.client.search, index=self.settings.elasticsearch.alerts_index, size=limit,
                              query={"bool": {"should": clauses, "minimum_should_match": 1}},
                              sort=[{"created_at": "desc"}], ignore_unavailable=True)
        except ApiError:
            return []
        return [h["_source"] for h in resp["hits"]["hits"]]

    # --- writing ----------------------------------------------------------------------------------
    def change(self, case_id: str, version: str | None, queues: list[str],
               action: Callable[[Case], str | None]) -> Versioned:
        """Apply ``action`` to the case as the user saw it (``version``). When a colleague acted on
        it since (its history grew), raise Conflict with the case as it is now; changes of the
        case manager alone (a joined mention, an SLA mark) do not count, the action applies on top.
        Every write is guarded by ``if_seq_no``/``if_primary_term``: of two racing writes one fails.
        ``action`` raises actions.ActionRefused for a change that does not apply."""
        seen_seq, seen_term, seen_history = parse_version(version)
        current = self.get(case_id, queues)
        for _ in range(3):
            same = (current.seq_no, current.primary_term) == (seen_seq, seen_term)
            if not same and len(current.case.history) != seen_history:
                raise Conflict(_what_changed(current.case), current)
            event = action(current.case)
            current.case.updated_at = utcnow()
            try:
                resp = self._call(self.client.index, index=self.cases.index, id=case_id,
                                  document=current.case.model_dump(mode="json"), if_seq_no=current.seq_no,
                                  if_primary_term=current.primary_term, refresh="wait_for")
            except ConflictError:
                current = self.get(case_id, queues)
                continue
            if event:
                self.cases.mirror(current.case, event)
            return Versioned(current.case, resp["_seq_no"], resp["_primary_term"])
        raise Conflict(_what_changed(current.case), current)

    # --- audit ------------------------------------------------------------------------------------
    def ensure_audit_index(self) -> None:
        keyword = {"type": "keyword"}
        mappings = {"dynamic": "strict", "properties": {
            "at": {"type": "date"}, "who": keyword, "via": keyword, "action": keyword, "outcome": keyword,
            "case_id": keyword, "queue": keyword, "detail": {"type": "text"}, "client": keyword}}
        if not self.client.indices.exists(index=self.audit_index):
            try:
                self.client.indices.create(index=self.audit_index, mappings=mappings,
                                           settings={"number_of_shards": 1,
                                                     "auto_expand_replicas": self.settings.elasticsearch.replicas})
            except ApiError as err:
                if err.error != "resource_already_exists_exception":
                    raise

    def audit(self, who: str, action: str, outcome: str, via: str = "local", case_id: str | None = None,
              queue: str | None = None, detail: str | None = None, client: str | None = None) -> None:
        """Append one audit record; an audit failure is logged, never raised into the action."""
        doc = {"at": utcnow().isoformat(), "who": who, "via": via, "action": action, "outcome": outcome,
               "case_id": case_id, "queue": queue, "detail": (detail or "")[:1000] or None, "client": client}
        try:
            self.client.index(index=self.audit_index, document={k: v for k, v in doc.items() if v is not None})
        except Exception as err:  # noqa: BLE001 - see docstring
            log.error("audit record not written", extra={"action": action, "error": type(err).__name__})

    def audit_trail(self, case_id: str, limit: int = 100) -> list[dict[str, Any]]:
        resp = self._call(self.client.search, index=self.audit_index, size=limit, ignore_unavailable=True,
                          query={"term": {"case_id": case_id}}, sort=[{"at": "asc"}])
        return [h["_source"] for h in resp["hits"]["hits"]]

    # --- lead view --------------------------------------------------------------------------------
    def lead_stats(self, queues: list[str], days: int = 14, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        since = (now - timedelta(days=days)).isoformat()
        in_queues = {"terms": {"queue": queues}}
        recent_or_active = {"bool": {"should": [{"terms": {"state": ["open", "in_progress"]}},
                                                {"range": {"resolved_at": {"gte": since}}}], "minimum_should_match": 1}}

        def per_day(field_at: str, seconds: str) -> dict[str, Any]:
            return {"filter": {"range": {field_at: {"gte": since}}}, "aggs": {"days": {
                "date_histogram": {"field": field_at, "calendar_interval": "day", "format": "yyyy-MM-dd"},
                "aggs": {"queues": {"terms": {"field": "queue", "size": 50}, "aggs": {
                    "p": {"percentiles": {"field": seconds, "percents": [50, 90]}}}}}}}}

        resp = self._call(self.client.search, index=self.cases.index, size=0, ignore_unavailable=True,
                          query={"bool": {"filter": [in_queues]}}, aggs={
                              "states": {"filter": recent_or_active, "aggs": {"queues": {
                                  "terms": {"field": "queue", "size": 50},
                                  "aggs": {"state": {"terms": {"field": "state", "size": 5}}}}}},
                              "first_response": per_day("first_response_at", "first_response_s"),
                              "resolution": per_day("resolved_at", "resolution_s"),
                              "breaches": {"filter": {"range": {"created_at": {"gte": since}}}, "aggs": {"queues": {
                                  "terms": {"field": "queue", "size": 50},
                                  "aggs": {"kind": {"terms": {"field": "sla_breached", "size": 2}}}}}}})
        aggs = resp.get("aggregations") or {}
        states = {b["key"]: {s["key"]: s["doc_count"] for s in b["state"]["buckets"]}
                  for b in aggs.get("states", {}).get("queues", {}).get("buckets", [])}
        breaches = {b["key"]: {k["key"]: k["doc_count"] for k in b["kind"]["buckets"]}
                    for b in aggs.get("breaches", {}).get("queues", {}).get("buckets", [])}
        day_names = [(now - timedelta(days=d)).strftime("%Y-%m-%d") for d in range(days - 1, -1, -1)]

        def percentiles(name: str) -> dict[str, dict[str, list[float | None]]]:
            table: dict[str, dict[str, dict[str, float | None]]] = {}
            for day in aggs.get(name, {}).get("days", {}).get("buckets", []):
                for q in day["queues"]["buckets"]:
                    values = q["p"]["values"]
                    for pct in ("50.0", "90.0"):
                        minutes = values.get(pct)
                        table.setdefault(pct, {}).setdefault(q["key"], {})[day["key_as_string"]] = (
                            minutes / 60 if minutes is not None else None)
            return {pct: {queue: [by_day.get(d) for d in day_names] for queue, by_day in per_queue.items()}
                    for pct, per_queue in table.items()}

        return {"states": states, "breaches": breaches, "days": day_names,
                "first_response": percentiles("first_response"), "resolution": percentiles("resolution")}


def _what_changed(case: Case) -> str:
    last = case.history[-1] if case.history else None
    if last is not None:
        detail = f" {last.detail}" if last.detail else ""
        return f"{case.case_id} was changed meanwhile: {last.by} {last.action} it{detail} at {last.at:%H:%M:%S}"
    return f"{case.case_id} was changed meanwhile (state {case.state.replace('_', ' ')})"
