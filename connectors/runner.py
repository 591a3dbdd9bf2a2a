"""Runs one ``Source``: mentions -> raw topic, rejections -> dead-letter topic, cursor -> checkpoint.

Delivery is at-least-once: the cursor is saved only after ``flush()`` returned and every send of
the batch was acknowledged (``acks=all``); a crash before that re-sends the batch, and the
mention id as Kafka key (and later as Elasticsearch ``_id``) absorbs the duplicates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from kafka import KafkaProducer

from stimmung.brandquery import BrandTagger, Target
from stimmung.connectors.base import Fetched, Source
from stimmung.connectors.checkpoints import CheckpointStore
from stimmung.connectors.http import SourceUnavailable
from stimmung.health import HEALTH, beat_forever
from stimmung.kafka import DeadLetters, confirm_sent
from stimmung.metrics import CONNECTOR_FILTERED, CONNECTOR_LAG, MENTIONS_FETCHED, MENTIONS_PUBLISHED
from stimmung.retry import Backoff
from stimmung.schemas.deadletter import DeadLetter

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    """What was handed to Kafka since the last checkpoint."""

    mentions: list = field(default_factory=list)  # send futures of raw mentions
    signals: list = field(default_factory=list)  # send futures of privacy signals
    items: int = 0  # everything handled (also rejected/filtered items): the checkpoint batch size

    def clear(self) -> None:
        self.mentions, self.signals, self.items = [], [], 0


@dataclass
class RunReport:
    connector: str
    published: int = 0
    rejected: int = 0
    rejections: list[DeadLetter] = field(default_factory=list)
    last_cursor: Any = None
    privacy_signals: int = 0
    seconds: float = 0.0
    # What the source could not fetch in its sweeps (a feed answering 404, ...): the source went on
    # without it, but a one-shot run (`connect --once`, cron) must be able to tell.
    errors: list[str] = field(default_factory=list)


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
        brands: BrandTagger | None = None,
        privacy_topic: str | None = None,
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
        # Firehose sources publish only what concerns a configured brand (None: everything).
        self.brands = brands if brands else None
        self.privacy_topic = privacy_topic
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, resume: bool = True, follow: bool = False) -> RunReport:
        """One sweep of the source (``follow``: sweep every ``poll_interval_s`` until stopped)."""
        report = RunReport(connector=self.source.name)
        started = time.monotonic()
        key = self.source.checkpoint_key
        cursor = self.checkpoints.load(key) if (self.checkpoints and resume) else None
        if cursor is not None:
            log.info("resuming from checkpoint", extra={"connector": self.source.name})
        backoff = Backoff(base_s=5.0, cap_s=600.0)
        heartbeat = asyncio.create_task(beat_forever(f"connector:{self.source.name}"))
        HEALTH.set_ready("kafka", True, "producer connected")
        try:
            while not self._stop.is_set():
                try:
                    cursor = await self._sweep(cursor, report)
                    report.errors.extend(getattr(self.source, "sweep_errors", None) or [])
                    backoff.reset()
                    HEALTH.set_ready("source", True)
                    wait = self.source.poll_interval_s
                except SourceUnavailable as err:
                    HEALTH.set_ready("source", False, str(err)[:200])
                    if not follow:
                        raise
                    wait = backoff.next_delay()
                    log.warning("source unavailable; next sweep later", extra={
                        "connector": self.source.name, "error": str(err)[:300], "retry_in_s": round(wait, 1)})
                if not follow or not self.source.poll_interval_s:
                    break
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    pass
        finally:
            heartbeat.cancel()
            await self.source.close()
            report.seconds = time.monotonic() - started
        return report

    async def _sweep(self, cursor: Any, report: RunReport) -> Any:
        pending = _Batch()
        unsaved_cursor: Any = cursor
        last_checkpoint = time.monotonic()
        try:
            async for item in self.source.fetch(cursor):
                self._handle(item, report, pending)
                if item.cursor is not None:
                    unsaved_cursor = item.cursor
                if pending.items >= self.checkpoint_every or (
                    time.monotonic() - last_checkpoint >= self.checkpoint_interval_s
                ):
                    await self._settle(pending, report, unsaved_cursor)
                    last_checkpoint = time.monotonic()
                if self._stop.is_set():
                    break
            else:
                final = self.source.sweep_cursor()
                if final is not None:
                    unsaved_cursor = final
        finally:
            # Whatever was sent is flushed and its cursor saved, even when the sweep failed.
            await self._settle(pending, report, unsaved_cursor)
        return unsaved_cursor

    def _handle(self, item: Fetched, report: RunReport, pending: _Batch) -> None:
        pending.items += 1
        if item.privacy is not None:
            signal = item.privacy
            log.info("privacy signal", extra={"connector": self.source.name, "status": signal.status})
            if self.privacy_topic:
                value = json.dumps({"platform": signal.platform, "handle": signal.handle, "status": signal.status,
                                    "at": signal.at}).encode()
                pending.signals.append(self.producer.send(self.privacy_topic, key=signal.handle.encode(), value=value))
                report.privacy_signals += 1
            return
        MENTIONS_FETCHED.labels(connector=self.source.name).inc()
        HEALTH.set_ready("source", True)
        if item.mention is not None:
            mention = item.mention
            if self.brands is not None and not self.brands.tag(Target.of(
                    mention.text, mention.language_hint, mention.url, mention.author.handle if mention.author else None)):
                CONNECTOR_FILTERED.labels(connector=self.source.name).inc()
                return
            lag = (datetime.now(timezone.utc) - mention.created_at).total_seconds()
            CONNECTOR_LAG.labels(connector=self.source.name).set(max(0.0, lag))
            value = mention.model_dump_json().encode("utf-8")
            # In flight at most `checkpoint_every` records: _settle() flushes before reading more.
            pending.mentions.append(self.producer.send(self.raw_topic, key=mention.mention_id.encode(), value=value))
        else:
            rej = item.rejected
            assert rej is not None  # a Fetched carries a mention or a rejection
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

    async def _settle(self, pending: _Batch, report: RunReport, cursor: Any) -> None:
        """Wait for Kafka to acknowledge everything sent, then persist the cursor."""
        if not pending.items and cursor == report.last_cursor:
            return
        await asyncio.to_thread(self._flush_and_check, pending.mentions + pending.signals)
        report.published += len(pending.mentions)
        MENTIONS_PUBLISHED.labels(connector=self.source.name).inc(len(pending.mentions))
        pending.clear()
        if self.checkpoints is not None and cursor is not None:
            self.checkpoints.save(self.source.checkpoint_key, cursor)
        report.last_cursor = cursor
        if self.on_progress:
            self.on_progress(report)

    def _flush_and_check(self, futures: list) -> None:
        confirm_sent(self.producer, futures)  # raises if the broker refused a record
        self.dead_letters.flush()
