"""Reading and replaying the dead-letter topic (`stimmung deadletter list|show|replay`).

A dead letter's id is its position on the dead-letter topic, ``<partition>:<offset>`` (e.g.
``0:17``): unique, stable for as long as the topic keeps the record, and what Kafka tools show.

Reading never joins a consumer group and commits nothing: the partitions are assigned and read
from the start (or from the first record at ``--since``, via the broker's time index) up to the
end offsets taken when reading began, so listing is repeatable and does not disturb anyone.

Replay re-publishes a letter's original bytes, with its original key, to the topic they came
from (the raw topic for the enrich stage, the enriched topic for the sink, the alerts topic for
alerting): the fixed worker, sink or mapping then handles them like any message. Mentions are
keyed and indexed by mention id, so a replay that runs twice, or replays something that did get
through, overwrites instead of duplicating. Letters of the connector stage came from a file or
an API, not from a topic: they cannot be replayed (fix the source and import again).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from stimmung.config import KafkaSettings
from stimmung.kafka import KafkaUnavailable, client_config, confirm_sent, make_producer

log = logging.getLogger(__name__)
REPLAY_HEADER = "stimmung-replayed-from"


class DeadLetterError(ValueError):
    """A user mistake (unknown id, missing topic): one clear line."""


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter as it sits on the topic: its position there plus the DeadLetter fields."""

    partition: int
    offset: int
    fields: dict[str, Any]
    logged_at: datetime  # the Kafka record's timestamp

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def stage(self) -> str:
        return str(self.fields.get("stage") or "unknown")

    @property
    def reason(self) -> str:
        return str(self.fields.get("reason") or "")

    @property
    def error_type(self) -> str:
        return str(self.fields.get("error_type") or "")

    @property
    def source(self) -> str:
        return str(self.fields.get("source") or "")

    @property
    def key(self) -> str | None:
        return self.fields.get("key")

    @property
    def failed_at(self) -> datetime:
        try:
            return datetime.fromisoformat(str(self.fields["failed_at"]).replace("Z", "+00:00")).astimezone(timezone.utc)
        except (KeyError, ValueError):
            return self.logged_at

    @property
    def source_position(self) -> str:
        """``topic[partition]@offset`` for Kafka sources, ``file:row`` for files."""
        where = self.source
        if self.fields.get("partition") is not None:
            where += f"[{self.fields['partition']}]"
        if self.fields.get("offset") is not None:
            where += f"@{self.fields['offset']}" if self.fields.get("partition") is not None else f":{self.fields['offset']}"
        return where

    def original_bytes(self) -> bytes:
        payload = str(self.fields.get("payload") or "")
        if payload.startswith("base64:"):
            return base64.b64decode(payload[len("base64:"):])
        return payload.encode("utf-8")

    def decoded_payload(self) -> Any:
        """The payload as JSON when it is JSON, else as text (binary: a note with its size)."""
        payload = str(self.fields.get("payload") or "")
        if payload.startswith("base64:"):
            return f"<{len(self.original_bytes())} bytes, not UTF-8; base64: {payload[7:][:200]}>"
        try:
            return json.loads(payload)
        except ValueError:
            return payload

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.fields, "source_position": self.source_position,
                "payload_decoded": self.decoded_payload()}

    def matches(self, stage: str | None, reason: str | None, since: datetime | None) -> bool:
        """``reason`` matches the machine-readable error type exactly or the reason text in part (any case)."""
        if stage and self.stage != stage:
            return False
        if reason and reason.lower() != self.error_type.lower() and reason.lower() not in self.reason.lower():
            return False
        return not (since and self.failed_at < since)


def parse_id(letter_id: str) -> tuple[int, int]:
    partition, sep, offset = letter_id.strip().partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise DeadLetterError(f"dead-letter id {letter_id!r}: expected PARTITION:OFFSET, e.g. 0:17 (see `deadletter list`)")
    return int(partition), int(offset)


def _parse(record) -> StoredLetter:
    logged = datetime.fromtimestamp(record.timestamp / 1000, timezone.utc)
    try:
        fields = json.loads(record.value or b"")
        if not isinstance(fields, dict):
            raise ValueError
    except ValueError:
        # not written by us (or corrupt): still listed, with its bytes, never skipped
        fields = {"stage": "unknown", "reason": "not a dead-letter record", "error_type": "unreadable",
                  "source": "", "payload": (record.value or b"").decode("utf-8", "replace")}
    return StoredLetter(record.partition, record.offset, fields, logged)


def _consumer(settings: KafkaSettings) -> KafkaConsumer:
    try:
        return KafkaConsumer(**client_config(settings), client_id=f"{settings.client_id}-deadletter-reader",
                             group_id=None, enable_auto_commit=False, request_timeout_ms=30_000)
    except (KafkaConnectionError, KafkaTimeoutError):
        raise KafkaUnavailable(f"no Kafka broker reachable at {settings.bootstrap_servers} "
                               "(is the stack up? try `stimmung stack up`)") from None


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise DeadLetterError(f"no dead-letter topic {topic!r} on the cluster (nothing was ever dead-lettered, "
                              "or kafka.topics.deadletter names another topic; `stimmung topics` creates it)")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def read_letters(settings: KafkaSettings, since: datetime | None = None) -> list[StoredLetter]:
    """Every dead letter (from ``since`` on, by the time it was written), oldest first per partition."""
    topic = settings.topics.deadletter
    consumer = _consumer(settings)
    try:
        tps = _partitions(consumer, topic)
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        start = consumer.beginning_offsets(tps)
        if since is not None:
            found = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
            start = {tp: (found[tp].offset if found.get(tp) else end[tp]) for tp in tps}
        for tp in tps:
            consumer.seek(tp, start[tp])
        letters: list[StoredLetter] = []
        pending = {tp for tp in tps if start[tp] < end[tp]}
        while pending:
            for tp, records in consumer.poll(timeout_ms=1000, max_records=500).items():
                letters.extend(_parse(r) for r in records if r.offset < end[tp])
            pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
        return sorted(letters, key=lambda s: (s.logged_at, s.partition, s.offset))
    finally:
        consumer.close()


def read_letter(settings: KafkaSettings, letter_id: str) -> StoredLetter:
    partition, offset = parse_id(letter_id)
    topic = settings.topics.deadletter
    consumer = _consumer(settings)
    try:
        tps = {tp.partition: tp for tp in _partitions(consumer, topic)}
        if partition not in tps:
            raise DeadLetterError(f"no dead letter {letter_id}: {topic} has partitions {', '.join(map(str, tps))}")
        tp = tps[partition]
        consumer.assign([tp])
        first, end = consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
        if not first <= offset < end:
            raise DeadLetterError(f"no dead letter {letter_id}: partition {partition} holds offsets {first}..{end - 1}"
                                  + (" (older ones expired)" if offset < first else ""))
        consumer.seek(tp, offset)
        while True:
            for record in consumer.poll(timeout_ms=1000, max_records=1).get(tp, []):
                return _parse(record)
    finally:
        consumer.close()


@dataclass
class ReplayPlan:
    replay: list[StoredLetter]
    not_replayable: list[tuple[StoredLetter, str]]  # with why


def plan_replay(settings: KafkaSettings, letters: Sequence[StoredLetter]) -> ReplayPlan:
    """Which letters can go back to a topic: those whose source is a topic that exists."""
    consumer = _consumer(settings)
    try:
        topics = consumer.topics()
    finally:
        consumer.close()
    plan = ReplayPlan([], [])
    for letter in letters:
        if letter.stage == "connector":
            plan.not_replayable.append((letter, f"came from {letter.source or 'a source'}, not from a topic: "
                                                "fix the input and import or fetch it again"))
        elif letter.source not in topics:
            plan.not_replayable.append((letter, f"its source topic {letter.source!r} does not exist (any more)"))
        elif not letter.fields.get("payload"):
            plan.not_replayable.append((letter, "it carries no payload"))
        else:
            plan.replay.append(letter)
    return plan


def replay(settings: KafkaSettings, letters: Iterable[StoredLetter]) -> int:
    """Re-publish each letter's original bytes and key to its source topic; returns how many (all acked)."""
    producer = make_producer(settings)
    try:
        futures = []
        for letter in letters:
            futures.append(producer.send(letter.source, key=letter.key.encode("utf-8") if letter.key else None,
                                         value=letter.original_bytes(),
                                         headers=[(REPLAY_HEADER, f"{settings.topics.deadletter}:{letter.id}".encode())]))
        confirm_sent(producer, futures)
        log.info("replayed dead letters", extra={"count": len(futures)})
        return len(futures)
    finally:
        producer.close()
