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

from stimmung.config import KafkaSettings, Settings
from stimmung.kafka import client_config
from stimmung.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)


def committed_positions(consumer: KafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition (where the group will read next, end offset). The group's committed offset, or
    the earliest retained one when it has no commit (or its commit has been deleted by retention)."""
    end = consumer.end_offsets(partitions)
    start = consumer.beginning_offsets(partitions)
    positions = {}
    for tp in partitions:
        committed = consumer.committed(tp)
        positions[tp] = (start[tp] if committed is None else max(committed, start[tp]), end[tp])
    return positions


def group_reader(settings: KafkaSettings, group: str, purpose: str) -> KafkaConsumer:
    """A consumer that names the group but never subscribes: it reads the group's commits without
    joining it (no rebalance)."""
    return KafkaConsumer(**client_config(settings), client_id=f"{settings.client_id}-{purpose}", group_id=group,
                         enable_auto_commit=False)


def measure_lag(settings: KafkaSettings, group: str, topics: list[str]) -> dict[str, int]:
    """Committed lag per topic (partitions summed); a partition without a commit counts from its
    earliest retained offset."""
    consumer = group_reader(settings, group, "lag")
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        if not partitions:
            return {}
        lag: dict[str, int] = {t: 0 for t in topics}
        for tp, (position, end) in committed_positions(consumer, partitions).items():
            lag[tp.topic] += max(0, end - position)
        return lag
    finally:
        consumer.close(autocommit=False)


def measure_partition_lag(settings: KafkaSettings, group: str, topic: str) -> list[dict[str, int]]:
    """Per partition of ``topic``: the group's next read position, the end offset and the lag (an
    empty list when the topic does not exist)."""
    consumer = group_reader(settings, group, "lag")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return []
        return [{"partition": tp.partition, "position": position, "end": end, "lag": max(0, end - position)}
                for tp, (position, end) in sorted(committed_positions(consumer, partitions).items(),
                                                  key=lambda item: item[0].partition)]
    finally:
        consumer.close(autocommit=False)


def role_groups(settings: Settings) -> dict[str, tuple[str, str]]:
    """Each consuming role's consumer group and the topic it reads (the roles' own defaults)."""
    app, topics = settings.pipeline.app_id, settings.kafka.topics
    return {"worker": (app, topics.raw), "sink": (f"{app}-sink", topics.enriched),
            "alerting": (f"{app}-alerting", topics.enriched), "cases": (f"{app}-cases", topics.enriched),
            "privacy-worker": (f"{app}-privacy", topics.privacy)}


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
