"""A compacted topic read whole by every worker: latest value per key, kept up to date.

Why not a Faust GlobalTable over the consent topic (what one would reach for first), as found
with faust-streaming 0.15.3 on our broker:

* the partition assignor looks a global table's changelog up by its *default* name
  (``<app id>-<table>-changelog``) even when the table was given its own changelog topic, so
  assignment fails with a KeyError that the group coordinator swallows: the worker hangs after
  "performing partition assignments" (fixable with a subclass that reports the real name);
* with that fixed, the table is filled from the topic at start (recovery), but records that
  another process writes to the topic while the worker runs — a consent withdrawal from
  ``stimmung consent withdraw`` or the HTTP API — were still not applied 12 s later: Faust's
  tables follow writes made through the table itself, and other workers' writes reach a
  global table through standby replay, which did not pick them up here either. A withdrawal
  must take effect at once, so that is not good enough.

This is the same idea done plainly: one thread per worker assigns itself every partition (no
consumer group), reads from the beginning and follows. The topic stays the source of truth; the
view is rebuilt on every start.
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
        # Logged only: the view keeps its last state and follows the topic no more; readiness
        # does not track it (a restart of the worker rebuilds the view).
        except Exception as err:  # noqa: BLE001
            log.error("view stopped", extra={"topic": self.topic, "error": str(err)[:300]})
        finally:
            consumer.close()
