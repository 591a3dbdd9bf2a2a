"""Runs one ``Source``: mentions -> raw topic, rejections -> dead-letter topic, cursor -> checkpoint.

Delivery is at-least-once: the cursor is saved only after ``flush()`` returned and every send of
the batch was acknowledged (``acks=all``); a crash before that re-sends the batch, and the
mention id as Kafka key (and later as Elasticsearch ``_id``) absorbs the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from kafka import KafkaProducer

from stimmung.connectors.base import Fetched, Source
from stimmung.connectors.checkpoints import CheckpointStore
from stimmung.kafka import DeadLetters
from stimmung.metrics import MENTIONS_FETCHED, MENTIONS_PUBLISHED
from stimmung.schemas.deadletter import DeadLetter

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    connector: str
    published: int = 0
    rejected: int = 0
    rejections: list[DeadLetter] = field(default_factory=list)
    last_cursor: Any = None
    seconds: float = 0.0


class SourceRunner:
    def __init__(
        self,
        source: Source,
        producer: KafkaProducer,
        raw_topic: str,
        dead_letters: DeadLetters,
        checkpoints: CheckpointStore | None = None,
        *,
        checkpoint_every: int = 500,
        checkpoint_interval_s: float = 5.0,
        keep_rejections: int = 1000,
        on_progress: Callable[[RunReport], None] | None = None,
    ):
        self.source = source
        self.producer = producer
        self.raw_topic = raw_topic
        self.dead_letters = dead_letters
        self.checkpoints = checkpoints
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.keep_rejections = keep_rejections
        self.on_progress = on_progress

    async def run(self, resume: bool = True) -> RunReport:
        report = RunReport(connector=self.source.name)
        started = time.monotonic()
        key = self.source.checkpoint_key
        cursor = self.checkpoints.load(key) if (self.checkpoints and resume) else None
        if cursor is not None:
            log.info("resuming from checkpoint", extra={"connector": self.source.name, "cursor": cursor})
        pending: list = []
        unsaved_cursor: Any = None
        last_checkpoint = time.monotonic()
        try:
            async for item in self.source.fetch(cursor):
                self._handle(item, report, pending)
                if item.cursor is not None:
                    unsaved_cursor = item.cursor
                if len(pending) >= self.checkpoint_every or (
                    time.monotonic() - last_checkpoint >= self.checkpoint_interval_s
                ):
                    await self._settle(pending, report, unsaved_cursor)
                    last_checkpoint = time.monotonic()
            await self._settle(pending, report, unsaved_cursor)
        finally:
            await self.source.close()
            report.seconds = time.monotonic() - started
        return report

    def _handle(self, item: Fetched, report: RunReport, pending: list) -> None:
        MENTIONS_FETCHED.labels(connector=self.source.name).inc()
        if item.mention is not None:
            mention = item.mention
            value = mention.model_dump_json().encode("utf-8")
            # In flight at most `checkpoint_every` records: _settle() flushes before reading more.
            pending.append(self.producer.send(self.raw_topic, key=mention.mention_id.encode(), value=value))
        else:
            rej = item.rejected
            letter = DeadLetter(
                stage="connector",
                reason=rej.reason,
                error_type=rej.error_type,
                source=self.source.checkpoint_key,
                offset=rej.position,
                payload=DeadLetter.encode_payload(rej.payload),
            )
            self.dead_letters.send(letter)
            report.rejected += 1
            if len(report.rejections) < self.keep_rejections:
                report.rejections.append(letter)
            pending.append(None)  # counts towards the batch size; nothing to wait for

    async def _settle(self, pending: list, report: RunReport, cursor: Any) -> None:
        """Wait for Kafka to acknowledge everything sent, then persist the cursor."""
        if not pending and cursor == report.last_cursor:
            return
        futures = [f for f in pending if f is not None]
        await asyncio.to_thread(self._flush_and_check, futures)
        report.published += len(futures)
        MENTIONS_PUBLISHED.labels(connector=self.source.name).inc(len(futures))
        pending.clear()
        if self.checkpoints is not None and cursor is not None:
            self.checkpoints.save(self.source.checkpoint_key, cursor)
        report.last_cursor = cursor
        if self.on_progress:
            self.on_progress(report)

    def _flush_and_check(self, futures: list) -> None:
        self.producer.flush()
        for future in futures:
            future.get(timeout=60)  # raises if the broker refused the record
        self.dead_letters.flush()
