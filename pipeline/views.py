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

Readiness (issue #20): the view reports ``/readyz`` check ``view:<topic>`` false until it has
read everything the topic held when it started (``caught_up``), and false again if its thread
dies; the enrich agent waits for ``caught_up`` before its first batch, so a restarted worker
never folds a mention into an empty influence state (which would overwrite the author's
accumulated one on the compacted topic) or misses a consent. A broker outage does not kill the
view: it reconnects with capped backoff and goes on from the offsets it had.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stimmung.config import KafkaSettings
from stimmung.health import HEALTH
from stimmung.kafka import client_config
from stimmung.retry import Backoff

log = logging.getLogger(__name__)


class CompactedView:
    def __init__(self, settings: KafkaSettings, topic: str, poll_ms: int = 200):
        self.settings, self.topic, self.poll_ms = settings, topic, poll_ms
        self._data: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.caught_up = threading.Event()  # everything that existed at start has been read
        self.dead = threading.Event()  # the thread ended on an error: the view follows the topic no more
        self.check = f"view:{topic}"
        self._positions: dict[TopicPartition, int] = {}

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
        HEALTH.set_ready(self.check, False, "reading the topic")
        threading.Thread(target=self._run, name=f"view-{self.topic}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait_caught_up(self, timeout_s: float | None = None) -> bool:
        return self.caught_up.wait(timeout_s)

    def _run(self) -> None:
        backoff = Backoff(base_s=0.5, cap_s=15.0)
        outage_since: float | None = None
        try:
            while not self._stop.is_set():
                try:
                    self._follow()
                    return
                except KafkaError as err:  # broker away: keep the state, reconnect, go on from where we were
                    if outage_since is None:
                        outage_since = time.monotonic()
                        log.warning("view lost Kafka; retrying", extra={"topic": self.topic, "error": str(err)[:300]})
                    self._stop.wait(max(0.2, backoff.next_delay()))
                    continue
        # Anything else is a bug or data we cannot read: the view stays as it is and follows the
        # topic no more, so the worker must not look ready (a restart rebuilds the view).
        except Exception as err:
            self.dead.set()
            HEALTH.set_ready(self.check, False, f"view stopped: {str(err)[:200]}")
            log.error("view stopped", extra={"topic": self.topic, "error": str(err)[:300]})

    def _follow(self) -> None:
        # Metadata every 10 s, not kafka-python's 5 min: a worker restarted mid-soak waited exactly that
        # long for its views (and so for its first batch) after the partitions' leaders moved.
        consumer = KafkaConsumer(**client_config(self.settings), client_id=f"{self.settings.client_id}-view",
                                 enable_auto_commit=False, metadata_max_age_ms=10_000)
        try:
            partitions = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or [])]
            if not partitions:
                raise KafkaError(f"topic {self.topic} has no partitions yet")
            consumer.assign(partitions)
            for tp in partitions:
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
                else:
                    consumer.seek_to_beginning(tp)
            end = consumer.end_offsets(partitions) if not self.caught_up.is_set() else {}
            while not self._stop.is_set():
                for tp, records in consumer.poll(timeout_ms=self.poll_ms).items():
                    for r in records:
                        self.put_local(r.key, r.value)
                    self._positions[tp] = records[-1].offset + 1
                if not self.caught_up.is_set() and all(consumer.position(tp) >= end[tp] for tp in partitions):
                    self.caught_up.set()
                    HEALTH.set_ready(self.check, True, f"{len(self)} keys")
                    log.info("view caught up", extra={"topic": self.topic, "keys": len(self)})
        finally:
            consumer.close()
