"""The Elasticsearch sink: enriched topic -> bulk index, offsets committed after the batch settled.

One batch at a time (bounded by count, bytes and time):
  1. parse each message; malformed ones become dead letters;
  2. bulk-index the rest with ``_id`` = mention id (a re-delivery overwrites, never duplicates);
  3. per item: 2xx done; 429/5xx retried with exponential backoff and jitter; any other error
     (e.g. a mapping conflict) becomes a dead letter carrying Elasticsearch's reason;
  4. dead letters are flushed to Kafka, and only then are the batch's offsets committed.
Mentions of erased authors and mentions older than the retention are skipped (counted), so a
replay cannot bring back what was deleted. Each mention goes to the index of its creation period
(see index.py), created before its first write.
While Elasticsearch is unreachable the sink stops fetching (partitions paused: backpressure) and
retries with backoff, polling only to keep its group membership; then it catches up. A circuit
breaker turns repeated failures into one clear "open" state: no requests for ``circuit_reset_s``,
then a single trial request, logged and exported as ``stimmung_sink_circuit_state``.

One module on purpose (about 460 lines): the batch's life (prepare, bulk write with retries and
the circuit breaker, settle, commit) is one ordering argument; its parts are read together.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TypeVar

import orjson
import pybreaker
from elasticsearch import ApiError, Elasticsearch, TransportError
from kafka import TopicPartition
from kafka.errors import CommitFailedError, IllegalGenerationError, KafkaError, RebalanceInProgressError, UnknownMemberIdError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from stimmung.config import Settings
from stimmung.health import HEALTH
from stimmung.kafka import DeadLetters, GroupConsumer, KafkaWait, group_consumer, make_producer
from stimmung.metrics import (
    MENTIONS_INDEXED,
    SINK_BULK_BYTES,
    SINK_BULK_SECONDS,
    SINK_CIRCUIT_OPENED,
    SINK_CIRCUIT_STATE,
    SINK_RETRIES,
    SINK_SKIPPED,
    SINK_UP,
)
from stimmung.pipeline.crm.consent import LinkedAuthors
from stimmung.pipeline.elastic.client import make_client
from stimmung.pipeline.elastic.indices import enforce_retention, ensure_indices, ensure_period_index
from stimmung.pipeline.elastic.mentions import IndexLayout, to_document
from stimmung.pipeline.enrich import InMessage
from stimmung.pipeline.erasure import ErasureList
from stimmung.retry import Backoff
from stimmung.schemas.deadletter import DeadLetter
from stimmung.schemas.mention import EnrichedMention

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 502, 503, 504}
RETENTION_CHECK_S = 3600.0
LOOP_STALE_S = 120.0  # the main loop beats at least every batch wait or retry: silence this long = stuck
T = TypeVar("T")


@dataclass(slots=True)
class Doc:
    origin: InMessage
    index: str
    doc_id: str
    source: bytes  # the JSON document
    size: int


@dataclass
class Prepared:
    docs: list[Doc]
    dead_letters: list[DeadLetter]
    skipped: dict[str, int]


def prepare(messages: list[InMessage], layout: IndexLayout, erased: frozenset[str] = frozenset(),
            not_before: datetime | None = None, linked: dict[str, str] | None = None) -> Prepared:
    """Parse a batch into documents; malformed -> dead letters; erased/expired -> skipped;
    a CRM link whose consent is gone (``linked``: pseudonym -> contact id) is dropped."""
    out = Prepared([], [], {})
    for msg in messages:
        try:
            mention = EnrichedMention.model_validate_json(msg.value or b"")
        except ValidationError as err:
            out.dead_letters.append(msg.dead_letter("sink", DeadLetter.kind(err), DeadLetter.describe(err)))
            continue
        skip = ("erased" if mention.author is not None and mention.author.pseudonym in erased
                else "retention" if not_before is not None and mention.created_at < not_before else None)
        if skip:
            out.skipped[skip] = out.skipped.get(skip, 0) + 1
            continue
        author = mention.author
        if linked is not None and author is not None and author.contact_id and linked.get(author.pseudonym) != author.contact_id:
            # enriched before a withdrawal, indexed after it: the link must not reach the index
            author.contact_id = None
            if author.linked_url:
                author.linked_url, mention.url = None, None
            out.skipped["unlinked"] = out.skipped.get("unlinked", 0) + 1
        # Encoded once here (orjson: several times faster than the client's stdlib json); the
        # bulk body is these bytes, and their length is what the byte bound counts.
        doc = to_document(mention)
        try:
            source = orjson.dumps(doc)
        except TypeError:
            # orjson refuses what JSON allows (integers beyond 64 bits): let Elasticsearch judge
            # the document and dead-letter it with its own reason, like any mapping error.
            source = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        out.docs.append(Doc(msg, layout.index_for(mention.created_at), mention.mention_id, source, len(source)))
    return out


class _CircuitLog(pybreaker.CircuitBreakerListener):
    STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        name = new_state.name if new_state is not None else pybreaker.STATE_CLOSED
        SINK_CIRCUIT_STATE.set(self.STATES.get(name, 0))
        if name == pybreaker.STATE_OPEN:
            SINK_CIRCUIT_OPENED.inc()
            log.error("circuit open: Elasticsearch keeps failing; no requests for %.0f s, then one trial",
                      cb.reset_timeout, extra={"circuit": "open", "failures": cb.fail_counter,
                                               "reset_s": cb.reset_timeout})
        elif name == pybreaker.STATE_HALF_OPEN:
            log.warning("circuit half-open: sending one trial request", extra={"circuit": "half-open"})
        else:
            log.warning("circuit closed: Elasticsearch answers again", extra={"circuit": "closed"})


def make_breaker(fail_max: int, reset_s: float) -> pybreaker.CircuitBreaker:
    # Only "Elasticsearch is away or overloaded" counts as failure; a 400 is an answer.
    answered = lambda e: isinstance(e, ApiError) and e.status_code not in RETRYABLE_STATUS  # noqa: E731
    return pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_s, exclude=[answered],
                                    listeners=[_CircuitLog()], name="elasticsearch")


class BulkWriter:
    """Indexes a batch; returns dead letters for items Elasticsearch permanently refused."""

    def __init__(self, client: Elasticsearch, layout: IndexLayout, ilm: bool = False, max_item_retries: int = 8,
                 breaker: pybreaker.CircuitBreaker | None = None,
                 sleep: Callable[[float], None] = time.sleep, should_stop: Callable[[], bool] = lambda: False,
                 on_unavailable: Callable[[], None] = lambda: None):
        self.client = client
        self.layout = layout
        self.ilm = ilm
        self.max_item_retries = max_item_retries
        self.breaker = breaker or make_breaker(5, 30.0)
        self.sleep = sleep
        self.should_stop = should_stop
        self.on_unavailable = on_unavailable
        self._ensured: set[str] = set()

    def call(self, what: str, fn: Callable[..., T], *args: Any,
             on_unavailable: Callable[[], None] | None = None, **kwargs: Any) -> T:
        """Call Elasticsearch through the circuit breaker, retrying until it answers (it may be
        down for a while); raises only when stopping or for a real (non-retryable) error."""
        backoff = Backoff(base_s=0.5, cap_s=15.0)
        while True:
            try:
                result = self.breaker.call(fn, *args, **kwargs)
                SINK_UP.set(1)
                HEALTH.set_ready("elasticsearch", True)
                return result
            except pybreaker.CircuitBreakerError:
                # Open: nothing was sent. Wait in short steps so stopping and polling stay prompt.
                SINK_UP.set(0)
                delay = min(1.0, self.breaker.reset_timeout)
                reason = "circuit_open"
            except (TransportError, ConnectionError) as err:
                SINK_UP.set(0)
                delay = backoff.next_delay()
                reason = "unavailable"
                log.warning("Elasticsearch unavailable; retrying", extra={"request": what, "error": str(err)[:300], "retry_in_s": round(delay, 2)})
            except ApiError as err:
                if err.status_code not in RETRYABLE_STATUS:
                    raise
                SINK_UP.set(1)
                delay = backoff.next_delay()
                reason = str(err.status_code)
                log.warning("Elasticsearch refused the request; retrying", extra={"request": what, "status": err.status_code, "retry_in_s": round(delay, 2)})
            SINK_RETRIES.labels(reason=reason).inc()
            HEALTH.set_ready("elasticsearch", False, reason)
            if self.should_stop():
                raise InterruptedError("stopping while Elasticsearch is unavailable")
            (on_unavailable or self.on_unavailable)()
            self.sleep(delay)

    def _bulk(self, docs: list[Doc]) -> list[dict[str, Any]]:
        for index in {d.index for d in docs} - self._ensured:
            self.call("create_index", ensure_period_index, self.client, self.layout, index, self.ilm)
            self._ensured.add(index)
        operations: list[bytes] = []
        for d in docs:
            operations.append(orjson.dumps({"index": {"_index": d.index, "_id": d.doc_id}}))
            operations.append(d.source)
        started = time.perf_counter()
        response = self.call("bulk", self.client.bulk, operations=operations, refresh=False)
        SINK_BULK_SECONDS.observe(time.perf_counter() - started)
        SINK_BULK_BYTES.observe(sum(d.size for d in docs))
        return response["items"]

    def write(self, docs: list[Doc]) -> tuple[int, list[DeadLetter]]:
        """Index ``docs``; return (indexed count, dead letters). Raises only when stopping."""
        letters: list[DeadLetter] = []
        indexed = 0
        todo = docs
        backoff = Backoff(base_s=0.2, cap_s=10.0)
        attempt = 0
        while todo:
            items = self._bulk(todo)
            retry: list[Doc] = []
            for doc, item in zip(todo, items, strict=True):
                result = item.get("index", {})
                status = result.get("status", 0)
                if 200 <= status < 300:
                    indexed += 1
                    continue
                error = result.get("error") or {}
                reason = error.get("reason", "unknown") if isinstance(error, dict) else str(error)
                etype = error.get("type", "unknown") if isinstance(error, dict) else "unknown"
                if status in RETRYABLE_STATUS and attempt < self.max_item_retries:
                    retry.append(doc)
                    continue
                if status in RETRYABLE_STATUS:
                    etype, reason = "retries_exhausted", f"still {status} after {attempt} retries: {reason}"
                caused = error.get("caused_by", {}).get("reason") if isinstance(error, dict) else None
                letters.append(doc.origin.dead_letter("sink", etype, f"{reason}" + (f" (caused by: {caused})" if caused else "")))
            if retry:
                attempt += 1
                SINK_RETRIES.labels(reason="item").inc(len(retry))
                self.sleep(backoff.next_delay())
            todo = retry
        MENTIONS_INDEXED.labels(index=self.layout.alias).inc(indexed)
        return indexed, letters


class ElasticsearchSink:
    def __init__(self, settings: Settings, group_id: str | None = None):
        self.settings = settings
        self.group_id = group_id or f"{settings.pipeline.app_id}-sink"
        self._stop = threading.Event()
        self.consumer: GroupConsumer | None = None

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def _keep_membership(self) -> None:
        """While Elasticsearch is down: pause fetching, but poll so the group keeps us."""
        HEALTH.beat("sink", LOOP_STALE_S)  # waiting on purpose is not being stuck
        if self.consumer is not None:
            assigned = self.consumer.assignment()
            if assigned:
                self.consumer.pause(*assigned)
            self.consumer.poll(timeout_ms=0)

    def _pause(self, seconds: float) -> None:
        """The writer's backoff sleep, cut short by a stop request."""
        self._stop.wait(seconds)

    def run(self, until: Callable[[], bool] | None = None) -> None:
        s = self.settings
        client = make_client(s.elasticsearch)
        HEALTH.beat("sink", LOOP_STALE_S)
        try:
            # Elasticsearch or Kafka may be away or still starting: wait for them (not ready
            # meanwhile); a stop request during the wait ends the run cleanly.
            setup = self._until_elasticsearch_answers(ensure_indices, client, s.elasticsearch)
            HEALTH.set_ready("elasticsearch", True, "templates applied")
            consumer = group_consumer(s.kafka, s.kafka.topics.enriched, self.group_id, "sink", s.pipeline.sink_batch_size,
                                      should_stop=self._stop.is_set)
        except InterruptedError as err:
            log.info("sink stopped before it started", extra={"reason": str(err)})
            client.close()
            return
        self.erasures = ErasureList(client, s.elasticsearch.erasures_index, s.elasticsearch.erasure_refresh_s)
        self.linked = LinkedAuthors(client, s.elasticsearch.consents_index, s.crm.linking_purpose,
                                    s.elasticsearch.erasure_refresh_s)
        producer = make_producer(s.kafka)
        dead_letters = DeadLetters(producer, s.kafka.topics.deadletter)
        self.consumer = consumer
        es_down = threading.Event()
        writer = BulkWriter(client, setup.layout, setup.ilm, s.pipeline.sink_max_retries,
                            breaker=make_breaker(s.elasticsearch.circuit_fail_max, s.elasticsearch.circuit_reset_s),
                            sleep=self._pause, should_stop=self._stop.is_set,
                            on_unavailable=es_down.set)
        next_retention = 0.0
        log.info("sink started", extra={"topic": s.kafka.topics.enriched, "index": s.elasticsearch.mentions_index,
                                          "group": self.group_id})
        # Two stages overlap: while batch N is being indexed (writer thread), batch N+1 is
        # fetched and prepared here. Only this thread touches the consumer; batches settle and
        # commit strictly in order, and at most two batches are in memory (backpressure).
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk")
        in_flight: tuple[list[InMessage], Prepared, Future | None] | None = None
        try:
            while not self._stop.is_set() and not (until and until()):
                HEALTH.beat("sink", LOOP_STALE_S)
                if not setup.ilm and s.elasticsearch.retention_days and time.monotonic() >= next_retention:
                    writer.call("retention", enforce_retention, client, s.elasticsearch, on_unavailable=self._keep_membership)
                    next_retention = time.monotonic() + RETENTION_CHECK_S
                batch = self._collect(consumer)
                prepared = self._prepare(batch, writer) if batch else None
                if in_flight is not None:
                    self._settle(*in_flight, dead_letters, consumer, es_down)
                    in_flight = None
                if prepared is not None:
                    future = executor.submit(writer.write, prepared.docs) if prepared.docs else None
                    in_flight = (batch, prepared, future)
            if in_flight is not None:  # stopping: finish and commit the batch already being written
                self._settle(*in_flight, dead_letters, consumer, es_down)
        except InterruptedError:
            log.info("stopped while Elasticsearch was unavailable; the open batch will be re-delivered")
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            consumer.close(autocommit=False)
            producer.close()
            client.close()
            log.info("sink stopped")

    def _wait_for_kafka(self, waiting: KafkaWait, consumer: GroupConsumer, reason: str) -> None:
        """One backoff step while Kafka is away, keeping the loop's beat and group seat."""
        HEALTH.beat("sink", LOOP_STALE_S)
        waiting.failed(reason)
        try:
            assigned = consumer.assignment()
            if assigned:
                consumer.pause(*assigned)  # keep the seat, fetch nothing (the settle resumes them)
            consumer.poll(timeout_ms=0)
        except KafkaError:
            pass  # still away: the next step retries

    def _until_elasticsearch_answers(self, fn: Callable[..., T], *args: Any) -> T:
        """Startup calls: retried with capped backoff while Elasticsearch is unreachable or
        overloaded; one log line when the wait starts, one when it ends. Real errors (a refused
        template, bad credentials: 4xx) raise at once."""
        backoff = Backoff(base_s=0.5, cap_s=15.0)
        waiting_since: float | None = None
        while True:
            HEALTH.beat("sink", LOOP_STALE_S)
            try:
                result = fn(*args)
            except (TransportError, ConnectionError, ApiError) as err:
                if isinstance(err, ApiError) and err.status_code not in RETRYABLE_STATUS:
                    raise
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    log.warning("Elasticsearch unavailable at startup; waiting for it", extra={"error": str(err)[:300]})
                SINK_UP.set(0)
                HEALTH.set_ready("elasticsearch", False, "unavailable at startup")
                if self._stop.wait(backoff.next_delay()):
                    raise InterruptedError("stopped while waiting for Elasticsearch") from None
                continue
            if waiting_since is not None:
                log.warning("Elasticsearch answers; starting after %.0f s", time.monotonic() - waiting_since)
            SINK_UP.set(1)
            return result

    def _collect(self, consumer: GroupConsumer) -> list[InMessage]:
        p = self.settings.pipeline
        batch: list[InMessage] = []
        size = 0
        deadline = time.monotonic() + p.sink_batch_wait_s
        while len(batch) < p.sink_batch_size and size < p.sink_batch_max_bytes and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            polled = consumer.poll(timeout_ms=int(remaining * 1000), max_records=p.sink_batch_size - len(batch))
            for tp, records in polled.items():
                for r in records:
                    batch.append(InMessage(tp.topic, tp.partition, r.offset, r.key, r.value))
                    size += len(r.value or b"")
        return batch

    def _prepare(self, batch: list[InMessage], writer: BulkWriter) -> Prepared:
        erased = writer.call("erasures", self.erasures.current, on_unavailable=self._keep_membership)
        linked = writer.call("consents", self.linked.current, on_unavailable=self._keep_membership)
        retention = self.settings.elasticsearch.retention_days
        not_before = datetime.now(timezone.utc) - timedelta(days=retention) if retention else None
        prepared = prepare(batch, writer.layout, erased, not_before, linked)
        for reason, count in prepared.skipped.items():
            SINK_SKIPPED.labels(reason=reason).inc(count)
        return prepared

    def _settle(self, batch: list[InMessage], prepared: Prepared, future: Future | None,
                dead_letters: DeadLetters, consumer: GroupConsumer, es_down: threading.Event) -> None:
        """Wait for the batch's bulk writes, dead-letter what was refused, then commit."""
        indexed, refused = 0, []
        if future is not None:
            while True:
                try:
                    indexed, refused = future.result(timeout=0.5)
                    break
                except FutureTimeout:
                    HEALTH.beat("sink", LOOP_STALE_S)
                    if es_down.is_set():  # the writer is waiting for Elasticsearch: keep our group seat
                        self._keep_membership()
        es_down.clear()
        letters = prepared.dead_letters
        kafka = KafkaWait(self.settings.kafka, "sink", should_stop=self._stop.is_set)
        while letters or refused:
            # A broker outage fails the sends: send them all again once it is back (a dead
            # letter twice is harmless; none at all would lose the record).
            try:
                for letter in letters + refused:
                    dead_letters.send(letter)
                dead_letters.flush()
                break
            except KafkaError as err:
                self._wait_for_kafka(kafka, consumer, f"dead letters not acknowledged: {err}")
        # Everything in the batch is settled (indexed or dead-lettered): now commit.
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for msg in batch:
            tp = TopicPartition(msg.topic, msg.partition)
            if msg.offset is None:
                continue  # never from Kafka: nothing to commit
            if tp not in offsets or offsets[tp].offset <= msg.offset:
                offsets[tp] = OffsetAndMetadata(msg.offset + 1, "", -1)
        while True:
            try:
                consumer.commit(offsets)  # also drops held offsets it overtakes (GroupConsumer.commit)
                break
            except (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError) as err:
                # The group is rebalancing (after a broker restart too), or the partitions moved
                # to another sink. Not retried here: a commit refused for a rebalance only
                # succeeds after the poll that rejoins, and retrying it in this step wedged the
                # sink for good (the CI flake of the broker-outage test). The consumer holds the
                # offsets and commits them after a poll once the group has settled
                # (``GroupConsumer.hold``); a new owner of the partitions re-indexes them instead,
                # ids make that harmless.
                log.warning("commit refused during a rebalance; offsets held until the group settles",
                            extra={"error": str(err)})
                consumer.hold(offsets)
                break
            except KafkaError as err:
                # The broker is away (a timeout, a lost coordinator): the batch is indexed, so
                # retry the commit until it is back; stopping meanwhile leaves it uncommitted
                # and the batch is re-delivered (ids make that harmless).
                if self._stop.is_set():
                    log.warning("stopping with the last batch uncommitted (Kafka unavailable); it will be re-delivered",
                                extra={"error": str(err)[:300]})
                    break
                self._wait_for_kafka(kafka, consumer, f"commit failed: {type(err).__name__}: {err}")
        if kafka.reason is not None:
            kafka.recovered()
        paused = consumer.paused()
        if paused:
            consumer.resume(*paused)
        log.info("batch settled", extra={"messages": len(batch), "indexed": indexed,
                                         "dead_letters": len(letters) + len(refused), "skipped": prepared.skipped})


def install_signal_handlers(sink: ElasticsearchSink) -> None:
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)


__all__ = ["Backoff", "BulkWriter", "Doc", "ElasticsearchSink", "Prepared", "install_signal_handlers", "make_breaker", "prepare"]
