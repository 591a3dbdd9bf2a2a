"""Turns privacy signals from sources (an account deleted or taken down) into erasures.

Consumes the privacy topic; for each signal it computes the author's pseudonym (the handle never
leaves this process) and runs the same erasure as `stimmung erase`: erasure record first, then
the mentions deleted, so sinks drop anything still in flight or replayed. The offset is committed
only after the erasure finished (at-least-once; erasing twice is harmless), and it is exactly the
handled record's offset: a poll returns records of several partitions, and committing the
consumer's positions after the first would also commit the others' records before they were
erased (a crash in between skipped an account-deletion erasure).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from stimmung.config import Settings
from stimmung.health import HEALTH
from stimmung.kafka import commit_or_hold, group_consumer
from stimmung.pipeline.elastic.client import make_client
from stimmung.pipeline.elastic.indices import ensure_indices
from stimmung.pipeline.erasure import erase_authors
from stimmung.pipeline.privacy import pseudonymizer_from_settings

log = logging.getLogger(__name__)


class PrivacySignalWorker:
    def __init__(self, settings: Settings, group_id: str | None = None, sweep_after_s: float | None = None):
        self.settings = settings
        self.group_id = group_id or f"{settings.pipeline.app_id}-privacy"
        self.sweep_after_s = sweep_after_s
        self._stop = threading.Event()
        self.erased = 0

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def handle(self, client: Any, pseudonymizer: Any, value: bytes) -> None:
        try:
            signal = json.loads(value)
            platform, handle, status = signal["platform"], signal["handle"], signal.get("status", "gone")
        except (ValueError, KeyError, TypeError) as err:
            log.warning("ignoring malformed privacy signal", extra={"error": str(err)[:200]})
            return
        pseudonym = pseudonymizer.pseudonym(platform, handle)
        result = erase_authors(self.settings, client, {pseudonym: platform}, reason=f"account {status}",
                               requested_by=f"{platform}:account-event", consent_source=f"{platform}:account-event",
                               sweep_after_s=self.sweep_after_s)
        self.erased += 1
        log.info("erased after privacy signal", extra={"pseudonym": pseudonym, "status": status, "deleted": result.deleted})

    def run(self, until: Callable[[], bool] | None = None) -> None:
        s = self.settings
        pseudonymizer = pseudonymizer_from_settings(s)
        client = make_client(s.elasticsearch)
        try:
            from stimmung.roles import until_elasticsearch_answers

            until_elasticsearch_answers(ensure_indices, client, s.elasticsearch, what="privacy worker",
                                        should_stop=self._stop.is_set)
            consumer = group_consumer(s.kafka, s.kafka.topics.privacy, self.group_id, "privacy", 50,
                                      should_stop=self._stop.is_set)
        except InterruptedError:
            client.close()
            return
        try:
            HEALTH.set_ready("kafka", True, "consumer subscribed")
            while not self._stop.is_set() and not (until and until()):
                HEALTH.beat("privacy-worker", 300.0)  # an erasure may take minutes on a big index
                for tp, records in consumer.poll(timeout_ms=500).items():
                    for record in records:
                        self.handle(client, pseudonymizer, record.value or b"")
                        commit_or_hold(consumer, {TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(record.offset + 1, "", -1)},
                                            "privacy worker")
        finally:
            consumer.close(autocommit=False)
            client.close()
