"""A compacted topic read whole by every worker: latest value per key, kept up to date.

Why not a Faust GlobalTable: with faust-streaming 0.15.3 a worker with a GlobalTable hung in
partition assignment on our broker (reproduced with a ten-line app; Faust's issue tracker has
several GlobalTable recovery hangs). This is the same idea done plainly: one thread per worker
assigns itself every partition (no consumer group), reads from the beginning and follows.
The topic stays the source of truth; the view is rebuilt on every start.
"""

from __future__ import annotations

import logging
import threading

from kafka import KafkaConsumer, TopicPartition

from stimmung.config import KafkaSettings
from stimmung.kafka import client_config

log = logging.getLogger(__name__)


class CompactedView:
    def __init__(self, settings: KafkaSettings, topic: str, poll_ms: int = 200):
        self.settings, self.topic, self.poll_ms = settings, topic, poll_ms
        self._data: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.caught_up = threading.Event()  # everything that existed at start has been read

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def put_local(self, key: bytes, value: bytes | None) -> None:
        """Reflect our own write at once (the topic echoes it back shortly after)."""
        with self._lock:
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def start(self) -> "CompactedView":
        threading.Thread(target=self._run, name=f"view-{self.topic}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        consumer = KafkaConsumer(**client_config(self.settings), client_id=f"{self.settings.client_id}-view",
                                 enable_auto_commit=False)
        try:
            partitions = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or [])]
            consumer.assign(partitions)
            consumer.seek_to_beginning()
            end = consumer.end_offsets(partitions)
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=self.poll_ms).values():
                    for r in records:
                        self.put_local(r.key, r.value)
                if not self.caught_up.is_set() and all(consumer.position(tp) >= end[tp] for tp in partitions):
                    self.caught_up.set()
                    log.info("view caught up", extra={"topic": self.topic, "keys": len(self)})
        except Exception as err:  # noqa: BLE001 - logged; the worker's readiness reports it
            log.error("view stopped", extra={"topic": self.topic, "error": str(err)[:300]})
        finally:
            consumer.close()
