"""Group consumers started while their topic or the broker is still coming up (issue #20 item 5:
the demo's sink that indexed nothing for minutes after "No partition metadata for topic")."""

from __future__ import annotations

import threading
import time
import uuid

from kafka.admin import NewTopic

from stimmung.kafka import admin_client, group_consumer, make_producer

from .conftest import wait_for


class Reader(threading.Thread):
    """group_consumer() and a poll loop on a thread, as the sink runs them; records what it read."""

    def __init__(self, settings, topic: str):
        super().__init__(daemon=True)
        self.settings, self.topic = settings, topic
        self.values: list[bytes] = []
        self.subscribed_at: float | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            consumer = group_consumer(self.settings.kafka, self.topic, f"g-{uuid.uuid4().hex[:8]}", "startup-test", 100,
                                      should_stop=self.stop.is_set)
            self.subscribed_at = time.monotonic()
            try:
                while not self.stop.is_set():
                    for records in consumer.poll(timeout_ms=500).values():
                        self.values.extend(r.value for r in records)
            finally:
                consumer.close(autocommit=False)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err


def _produce(settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(settings.kafka)
    try:
        for v in values:
            producer.send(topic, v).get(30)
    finally:
        producer.close()


def test_consumer_started_before_its_topic_exists_reads_within_seconds_of_creation(settings):
    topic = f"startup-{uuid.uuid4().hex[:8]}"
    reader = Reader(settings, topic)
    reader.start()
    try:
        time.sleep(3)  # the consumer is up and waiting for a topic that does not exist yet
        assert reader.error is None and reader.is_alive()
        admin = admin_client(settings.kafka)
        admin.create_topics([NewTopic(topic, 2, 1)])
        admin.close()
        created = time.monotonic()
        _produce(settings, topic, [b"a", b"b", b"c", b"d"])
        wait_for(lambda: len(reader.values) >= 4 or reader.error, timeout=20, message="the four records")
        assert reader.error is None, reader.error
        assert sorted(reader.values) == [b"a", b"b", b"c", b"d"]
        assert time.monotonic() - created < 20
    finally:
        reader.stop.set()
        reader.join(30)


def test_consumer_started_while_the_broker_is_down_reads_within_seconds_of_its_start(settings, local_stack):
    topic = f"startup-{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings.kafka)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    _produce(settings, topic, [b"before-1", b"before-2"])
    local_stack.down(only=["kafka"])
    reader = Reader(settings, topic)
    try:
        reader.start()
        time.sleep(4)
        assert reader.error is None and reader.is_alive(), reader.error  # waiting, not failed
        assert reader.subscribed_at is None
        local_stack.up(only=["kafka"])
        healthy = time.monotonic()
        _produce(settings, topic, [b"after"])
        wait_for(lambda: len(reader.values) >= 3 or reader.error, timeout=30, message="the three records")
        assert reader.error is None, reader.error
        assert sorted(reader.values) == [b"after", b"before-1", b"before-2"]
        assert time.monotonic() - healthy < 30
    finally:
        reader.stop.set()
        reader.join(30)
        local_stack.up(only=["kafka"])


def test_a_stop_request_ends_the_wait_for_a_missing_topic(settings):
    reader = Reader(settings, f"never-{uuid.uuid4().hex[:8]}")
    reader.start()
    time.sleep(2)
    reader.stop.set()
    reader.join(10)
    assert not reader.is_alive()
    assert isinstance(reader.error, InterruptedError)
