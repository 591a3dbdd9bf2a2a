"""Consumer lag as a Prometheus gauge: how far a consumer group's committed offsets trail the end
of its topics, in messages (``stimmung_consumer_lag_messages{group,topic}``).

Measured from Kafka's own records (committed offsets vs. end offsets), not from inside the
consumer, so it is right even while the consumer is stuck, and it is the same figure KEDA's
Kafka scaler scales on. One small thread per role, every ``interval_s``.
"""

from __future__ import annotations

import logging
import threading

from kafka import KafkaConsumer, TopicPartition

from stimmung.config import KafkaSettings
from stimmung.kafka import client_config
from stimmung.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)


def measure_lag(settings: KafkaSettings, group: str, topics: list[str]) -> dict[str, int]:
    """Committed lag per topic (partitions summed); a partition without a commit counts from its
    earliest retained offset."""
    # A consumer that names the group but never subscribes reads its commits without joining it.
    consumer = KafkaConsumer(**client_config(settings), client_id=f"{settings.client_id}-lag", group_id=group,
                             enable_auto_commit=False)
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        if not partitions:
            return {}
        end = consumer.end_offsets(partitions)
        start = consumer.beginning_offsets(partitions)
        lag: dict[str, int] = {t: 0 for t in topics}
        for tp in partitions:
            committed = consumer.committed(tp)
            position = start[tp] if committed is None else max(committed, start[tp])
            lag[tp.topic] += max(0, end[tp] - position)
        return lag
    finally:
        consumer.close(autocommit=False)


class LagReporter:
    def __init__(self, settings: KafkaSettings, group: str, topics: list[str], interval_s: float = 15.0):
        self.settings, self.group, self.topics, self.interval_s = settings, group, topics, interval_s
        self._stop = threading.Event()

    def start(self) -> "LagReporter":
        threading.Thread(target=self._run, name="consumer-lag", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for topic, lag in measure_lag(self.settings, self.group, self.topics).items():
                    CONSUMER_LAG.labels(group=self.group, topic=topic).set(lag)
            except Exception as err:  # noqa: BLE001 - a metric must never take the role down
                log.warning("consumer lag not measured", extra={"group": self.group, "error": str(err)[:300]})
            self._stop.wait(self.interval_s)
