"""The sink survives Elasticsearch going away mid-stream: nothing lost, nothing duplicated."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.schemas import EnrichedMention

from .conftest import free_port, probe, wait_for
from .test_end_to_end import _lag, read_topic

TOTAL = 600
OUTAGE_S = 30


def test_elasticsearch_down_for_30s_mid_stream_every_mention_indexed_exactly_once(settings, roles, local_stack):
    ensure_topics(settings.kafka)
    port = free_port()
    roles.start("sink", metrics_ports={"sink": port})
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")

    def produce() -> None:  # a steady stream of ~20 mentions/s across the outage
        for n in range(TOTAL):
            m = EnrichedMention(platform="csv", native_id=f"o{n}", text=f"Störung Nummer {n}",
                                created_at=datetime.now(timezone.utc), language="de", language_confidence=0.9,
                                language_source="model")
            producer.send(settings.kafka.topics.enriched, key=m.mention_id.encode(), value=m.model_dump_json().encode())
            time.sleep(0.05)
        producer.flush()

    writer = threading.Thread(target=produce)
    writer.start()
    es = Elasticsearch(settings.elasticsearch.url)
    index = settings.elasticsearch.mentions_index

    def indexed() -> int:
        try:
            es.indices.refresh(index=index)
            return es.count(index=index)["count"]
        except Exception:
            return -1

    wait_for(lambda: indexed() >= 50, timeout=120, check=roles.check_alive, message="first mentions indexed")
    local_stack.services["elasticsearch"].stop()
    down_at = time.monotonic()
    time.sleep(OUTAGE_S / 2)
    # While Elasticsearch is away the sink is alive (waiting on purpose) but not ready.
    assert probe(port, "/healthz")[0] == 200
    status, body = probe(port, "/readyz")
    assert status == 503 and not body["checks"]["elasticsearch"]["ok"], body
    time.sleep(OUTAGE_S / 2)
    roles.check_alive()  # the sink waits; it does not crash
    local_stack.up(only=["elasticsearch"])
    outage = time.monotonic() - down_at
    writer.join()
    producer.close()

    wait_for(lambda: indexed() == TOTAL, timeout=240, check=roles.check_alive, message="catch-up after the outage")
    assert outage >= OUTAGE_S
    es.indices.refresh(index=index)
    ids = {h["_source"]["native_id"] for h in es.search(index=index, size=TOTAL + 10, source=["native_id"])["hits"]["hits"]}
    assert ids == {f"o{n}" for n in range(TOTAL)}
    assert read_topic(settings, settings.kafka.topics.deadletter, 1, timeout_s=3) == []
    wait_for(lambda: _lag(settings, f"{settings.pipeline.app_id}-sink", settings.kafka.topics.enriched) == 0,
             timeout=30, message="offsets committed after catch-up")
    assert probe(port, "/readyz")[0] == 200
    log = (roles.tmp_path / "sink.log").read_text(errors="replace")
    assert "Elasticsearch unavailable" in log
    # the circuit breaker opened during the outage and closed after a successful trial
    assert "circuit open" in log and "circuit half-open" in log and "circuit closed" in log
