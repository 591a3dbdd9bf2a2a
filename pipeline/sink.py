"""The Elasticsearch sink: enriched topic -> bulk index, offsets committed after the batch settled.

One batch at a time (bounded by count, bytes and time):
  1. parse each message; malformed ones become dead letters;
  2. bulk-index the rest with ``_id`` = mention id (a re-delivery overwrites, never duplicates);
  3. per item: 2xx done; 429/5xx retried with exponential backoff and jitter; any other error
     (e.g. a mapping conflict) becomes a dead letter carrying Elasticsearch's reason;
  4. dead letters are flushed to Kafka, and only then are the batch's offsets committed.
While Elasticsearch is unreachable the sink stops fetching (partitions paused: backpressure) and
retries with backoff, polling only to keep its group membership; then it catches up.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from elasticsearch import ApiError, Elasticsearch, TransportError
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from stimmung.config import Settings
from stimmung.kafka import DeadLetters, make_producer
from stimmung.metrics import MENTIONS_INDEXED, SINK_BULK_BYTES, SINK_BULK_SECONDS, SINK_RETRIES, SINK_UP
from stimmung.pipeline.enrich import InMessage
from stimmung.pipeline.index import ensure_mentions_index, make_client, to_document
from stimmung.schemas.deadletter import DeadLetter
from stimmung.schemas.mention import EnrichedMention

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 502, 503, 504}


@dataclass(slots=True)
class Doc:
    origin: InMessage
    doc_id: str
    source: dict[str, Any]
    size: int


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog's variant)."""

    def __init__(self, base_s: float = 0.2, cap_s: float = 30.0):
        self.base_s, self.cap_s, self.attempt = base_s, cap_s, 0

    def next_delay(self) -> float:
        delay = random.uniform(0, min(self.cap_s, self.base_s * (2 ** self.attempt)))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def prepare(messages: list[InMessage]) -> tuple[list[Doc], list[DeadLetter]]:
    docs, letters = [], []
    for msg in messages:
        try:
            mention = EnrichedMention.model_validate_json(msg.value or b"")
        except ValidationError as err:
            letters.append(msg.dead_letter("sink", DeadLetter.kind(err), DeadLetter.describe(err)))
            continue
        source = to_document(mention)
        docs.append(Doc(msg, mention.mention_id, source, len(msg.value or b"")))
    return docs, letters


class BulkWriter:
    """Indexes a batch; returns dead letters for items Elasticsearch permanently refused."""

    def __init__(self, client: Elasticsearch, index: str, max_item_retries: int = 8,
                 sleep: Callable[[float], None] = time.sleep, should_stop: Callable[[], bool] = lambda: False,
                 on_unavailable: Callable[[], None] = lambda: None):
        self.client = client
        self.index = index
        self.max_item_retries = max_item_retries
        self.sleep = sleep
        self.should_stop = should_stop
        self.on_unavailable = on_unavailable

    def _bulk(self, docs: list[Doc]) -> list[dict[str, Any]]:
        """One bulk request, retried until Elasticsearch answers (it may be down for a while)."""
        operations: list[dict[str, Any]] = []
        for d in docs:
            operations.append({"index": {"_index": self.index, "_id": d.doc_id}})
            operations.append(d.source)
        backoff = Backoff(base_s=0.5, cap_s=15.0)
        while True:
            started = time.perf_counter()
            try:
                response = self.client.bulk(operations=operations, refresh=False)
            except (TransportError, ConnectionError) as err:
                # Connection refused/timeouts: Elasticsearch is away. Keep the batch, back off.
                SINK_UP.set(0)
                SINK_RETRIES.labels(reason="unavailable").inc()
                delay = backoff.next_delay()
                log.warning("Elasticsearch unavailable; retrying bulk", extra={"error": str(err)[:300], "retry_in_s": round(delay, 2), "docs": len(docs)})
                if self.should_stop():
                    raise
                self.on_unavailable()
                self.sleep(delay)
                continue
            except ApiError as err:
                if err.status_code in RETRYABLE_STATUS:
                    SINK_UP.set(1)
                    SINK_RETRIES.labels(reason=str(err.status_code)).inc()
                    delay = backoff.next_delay()
                    log.warning("bulk request refused; retrying", extra={"status": err.status_code, "retry_in_s": round(delay, 2)})
                    if self.should_stop():
                        raise
                    self.on_unavailable()
                    self.sleep(delay)
                    continue
                raise
            SINK_UP.set(1)
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
        MENTIONS_INDEXED.labels(index=self.index).inc(indexed)
        return indexed, letters


class ElasticsearchSink:
    def __init__(self, settings: Settings, group_id: str | None = None):
        self.settings = settings
        self.group_id = group_id or f"{settings.pipeline.app_id}-sink"
        self._stop = threading.Event()
        self.consumer: KafkaConsumer | None = None

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def _keep_membership(self) -> None:
        """While Elasticsearch is down: pause fetching, but poll so the group keeps us."""
        if self.consumer is not None:
            assigned = self.consumer.assignment()
            if assigned:
                self.consumer.pause(*assigned)
            self.consumer.poll(timeout_ms=0)

    def run(self, until: Callable[[], bool] | None = None) -> None:
        s = self.settings
        client = make_client(s.elasticsearch)
        ensure_mentions_index(client, s.elasticsearch)
        producer = make_producer(s.kafka)
        dead_letters = DeadLetters(producer, s.kafka.topics.deadletter)
        consumer = KafkaConsumer(
            s.kafka.topics.enriched,
            bootstrap_servers=s.kafka.bootstrap_list,
            client_id=f"{s.kafka.client_id}-sink",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.pipeline.sink_batch_size,
            max_poll_interval_ms=600_000,
        )
        self.consumer = consumer
        writer = BulkWriter(client, s.elasticsearch.mentions_index, s.pipeline.sink_max_retries,
                            sleep=self._stop.wait, should_stop=self._stop.is_set,
                            on_unavailable=self._keep_membership)
        log.info("sink started", extra={"topic": s.kafka.topics.enriched, "index": s.elasticsearch.mentions_index,
                                          "group": self.group_id})
        try:
            while not self._stop.is_set() and not (until and until()):
                batch = self._collect(consumer)
                if batch:
                    self._settle(batch, writer, dead_letters, consumer)
        finally:
            consumer.close(autocommit=False)
            producer.close()
            client.close()
            log.info("sink stopped")

    def _collect(self, consumer: KafkaConsumer) -> list[InMessage]:
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

    def _settle(self, batch: list[InMessage], writer: BulkWriter, dead_letters: DeadLetters,
                consumer: KafkaConsumer) -> None:
        docs, letters = prepare(batch)
        indexed, refused = writer.write(docs) if docs else (0, [])
        for letter in letters + refused:
            dead_letters.send(letter)
        dead_letters.flush()
        # Everything in the batch is settled (indexed or dead-lettered): now commit.
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for msg in batch:
            tp = TopicPartition(msg.topic, msg.partition)
            if tp not in offsets or offsets[tp].offset <= msg.offset:
                offsets[tp] = OffsetAndMetadata(msg.offset + 1, "", -1)
        try:
            consumer.commit(offsets)
        except CommitFailedError as err:
            # Partitions moved to another sink during the batch: it will re-index them; ids
            # make that harmless.
            log.warning("commit failed after rebalance; batch will be re-delivered", extra={"error": str(err)})
        paused = consumer.paused()
        if paused:
            consumer.resume(*paused)
        log.info("batch settled", extra={"messages": len(batch), "indexed": indexed, "dead_letters": len(letters) + len(refused)})


def install_signal_handlers(sink: ElasticsearchSink) -> None:
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)


__all__ = ["Backoff", "BulkWriter", "Doc", "ElasticsearchSink", "install_signal_handlers", "prepare"]
