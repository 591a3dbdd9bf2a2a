"""SIGTERM drains (issue #20 item 4): a sink or worker stopped in the middle of a backlog finishes
the batch it is writing and commits it before it exits — what it has written is exactly what its
group has committed, so the next owner of its partitions repeats nothing and skips nothing."""

from __future__ import annotations

import signal

from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.lag import group_reader
from stimmung.schemas import EnrichedMention

from .conftest import wait_for
from .test_end_to_end import _raw, read_topic
from .test_role_outages import _enriched, _indexed


def _committed(settings, group: str, topic: str) -> int:
    from kafka import TopicPartition

    consumer = group_reader(settings.kafka, group, "test")
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.committed(tp) or 0 for tp in parts)
    finally:
        consumer.close(autocommit=False)


def _sigterm(roles, role: str) -> int:
    proc = roles.procs[role]
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    roles.procs.pop(role)
    return code


def test_sink_sigterm_settles_and_commits_the_batch_in_flight(settings, roles):
    ensure_topics(settings.kafka)
    total = 3000
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all", linger_ms=20)
    for n in range(total):
        key, value = _enriched(n)
        producer.send(settings.kafka.topics.enriched, key=key, value=value)
    producer.flush()
    producer.close()
    roles.config_file.write_text(roles.config_file.read_text().replace("sink_batch_wait_s: 0.3",
                                                                      "sink_batch_wait_s: 0.3\n  sink_batch_size: 100"))
    roles.start("sink")
    wait_for(lambda: len(_indexed(settings)) >= 300, timeout=120, interval=0.2, check=roles.check_alive,
             message="the sink is under way")
    assert _sigterm(roles, "sink") == 0
    indexed = len(_indexed(settings))
    assert indexed < total, "stop came too late to test a drain"
    assert _committed(settings, f"{settings.pipeline.app_id}-sink", settings.kafka.topics.enriched) == indexed


def test_worker_sigterm_commits_what_it_enriched(settings, roles):
    ensure_topics(settings.kafka)
    total = 600
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all", linger_ms=20)
    for n in range(total):
        producer.send(settings.kafka.topics.raw, key=f"d{n}".encode(), value=_raw(f"d{n}", f"Die Bahn kommt zu spät, Fahrt {n}"))
    producer.flush()
    producer.close()
    roles.start("worker")
    wait_for(lambda: len(read_topic(settings, settings.kafka.topics.enriched, 100, timeout_s=2)) >= 100, timeout=300,
             check=roles.check_alive, message="the worker is under way")
    assert _sigterm(roles, "worker") == 0
    enriched = {EnrichedMention.model_validate_json(v).native_id
                for v in read_topic(settings, settings.kafka.topics.enriched, total, timeout_s=5)}
    committed = _committed(settings, settings.pipeline.app_id, settings.kafka.topics.raw)
    assert len(enriched) < total, "stop came too late to test a drain"
    # Everything committed was enriched (nothing skipped), and what was enriched is committed:
    # at most the batch that was being produced when the signal came is not (Faust cancels it).
    assert committed <= len(enriched) <= committed + settings.pipeline.enrich_batch_size
