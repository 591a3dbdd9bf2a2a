"""One mention's whole path against real servers: file -> Kafka -> Faust worker -> Kafka -> sink -> Elasticsearch."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import SecretStr

from stimmung.config import load_settings
from stimmung.connectors.fileimport.job import run_import
from stimmung.demo import sample_path
from stimmung.pipeline.elastic.mentions import INDEX_ONLY_FIELDS
from stimmung.schemas import DeadLetter, EnrichedMention, RawMention
from stimmung.schemas.pseudonym import Pseudonymizer

from .conftest import PSEUDONYM_KEY, free_port, probe, scrape, wait_for

SAMPLE_GOOD = 46
SAMPLE_BAD = 2


def es(settings) -> Elasticsearch:
    return Elasticsearch(settings.elasticsearch.url)


def count(settings) -> int:
    client = es(settings)
    index = settings.elasticsearch.mentions_index
    if not client.indices.exists(index=index):
        return 0
    client.indices.refresh(index=index)
    return client.count(index=index)["count"]


def read_topic(settings, topic: str, expected: int, timeout_s: float = 60.0) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_list, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=2000)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    values: list[bytes] = []
    deadline = datetime.now().timestamp() + timeout_s
    while len(values) < expected and datetime.now().timestamp() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            values.extend(r.value for r in records)
    consumer.close()
    return values


def all_docs(settings) -> list[dict]:
    client = es(settings)
    client.indices.refresh(index=settings.elasticsearch.mentions_index)
    resp = client.search(index=settings.elasticsearch.mentions_index, size=1000, version=True,
                         query={"match_all": {}})
    return resp["hits"]["hits"]


def test_sample_flows_end_to_end_exactly_once_and_bad_rows_are_dead_lettered(settings, roles, tmp_path):
    ports = {"worker": free_port(), "sink": free_port()}
    roles.start("worker", "sink", metrics_ports=ports)
    report = run_import(settings, sample_path(), None, None, {}, resume=False, rejects=None, show_progress=False)
    assert (report.published, report.rejected) == (SAMPLE_GOOD, SAMPLE_BAD)

    wait_for(lambda: count(settings) >= SAMPLE_GOOD, timeout=180, check=roles.check_alive, message="sample indexed")
    hits = all_docs(settings)
    assert len(hits) == SAMPLE_GOOD
    docs = {h["_id"]: h["_source"] for h in hits}
    # _id is the stable mention id, and every document is a valid EnrichedMention plus index fields
    for doc_id, doc in docs.items():
        mention = EnrichedMention.model_validate(
            {k: v for k, v in doc.items() if k not in INDEX_ONLY_FIELDS})
        assert mention.mention_id == doc_id
    by_native = {d["native_id"]: d for d in docs.values()}
    first = by_native["sample-001"]
    assert first["language"] == "de" and first["text_de"] == first["text"]
    assert by_native["sample-025"]["language"] == "en" and "text_en" in by_native["sample-025"]
    assert first["author"]["pseudonym"] == Pseudonymizer(PSEUDONYM_KEY).pseudonym("mastodon", "bahnfahrerin")
    assert first["author"]["follower_count"] == 312
    # real model outputs: sentiment with probabilities, topic labels, versions of every model
    assert first["sentiment"]["label"] == "negative"
    assert by_native["sample-005"]["sentiment"]["label"] == "positive"  # "Großes Lob an die Zugbegleiterin"
    assert set(first["model_versions"]) == {"language", "sentiment", "topics", "heads"}
    # the trained heads' outputs (#17) on every mention
    assert first["complaint"]["label"] in ("complaint", "no_complaint") and 0 <= first["relevance"] <= 1, first.get("complaint")
    assert sum(1 for d in docs.values() if d["topic_labels"]) >= SAMPLE_GOOD // 2
    assert "delivery" in first["topic_labels"] or "complaint" in first["topic_labels"]
    langs = {d["language"] for d in docs.values()}
    assert {"de", "en"} <= langs
    # privacy: no handle or display name anywhere in the index (the sample's URLs aside, which
    # are the posts' public addresses)
    for doc in docs.values():
        body = json.dumps({k: v for k, v in doc.items() if k != "url"}, ensure_ascii=False)
        assert "bahnfahrerin" not in body and "Jana K." not in body and "display_name" not in body

    letters = [DeadLetter.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.deadletter, SAMPLE_BAD)]
    assert len(letters) == SAMPLE_BAD
    assert {l.stage for l in letters} == {"connector"}
    reasons = " | ".join(l.reason for l in letters)
    assert "not ISO 8601" in reasons and "invalid JSON" in reasons

    # Re-importing the same file: every document is overwritten (version 2), none duplicated.
    rejects = tmp_path / "rejects.jsonl"
    run_import(settings, sample_path(), None, None, {}, resume=False, rejects=rejects, show_progress=False)
    rejected_rows = [DeadLetter.model_validate_json(line) for line in rejects.read_text().splitlines()]
    assert sorted(r.offset for r in rejected_rows) == sorted(l.offset for l in letters)
    wait_for(lambda: all(h["_version"] >= 2 for h in all_docs(settings)), timeout=180, check=roles.check_alive,
             message="re-import processed")
    assert count(settings) == SAMPLE_GOOD

    # Both roles expose what they did as Prometheus metrics.
    worker, sink = scrape(ports["worker"]), scrape(ports["sink"])
    german = sum(1 for d in docs.values() if d["language"] == "de")
    assert worker['stimmung_mentions_enriched_total{language="de"}'] >= 2 * german
    assert worker["stimmung_enrich_batch_size_count"] >= 1
    index = settings.elasticsearch.mentions_index
    assert sink[f'stimmung_mentions_indexed_total{{index="{index}"}}'] >= 2 * SAMPLE_GOOD
    assert sink["stimmung_sink_elasticsearch_up"] == 1
    # ... and answer Kubernetes probes on the same port
    for role in ("worker", "sink"):
        for path in ("/healthz", "/readyz"):
            status, body = probe(ports[role], path)
            assert status == 200 and body["ok"], (role, path, body)
    assert probe(ports["worker"], "/healthz")[1]["loops"]["worker"]["seconds_since_beat"] < 10
    assert probe(ports["sink"], "/readyz")[1]["checks"]["elasticsearch"]["ok"]
    # consumer lag of both groups, measured from Kafka's committed offsets
    group = settings.pipeline.app_id
    wait_for(lambda: scrape(ports["sink"]).get(
        f'stimmung_consumer_lag_messages{{group="{group}-sink",topic="{settings.kafka.topics.enriched}"}}') == 0,
        timeout=60, message="sink lag reported as 0 after the catch-up")
    assert f'stimmung_consumer_lag_messages{{group="{group}",topic="{settings.kafka.topics.raw}"}}' in scrape(ports["worker"])

    # Offsets: the sink committed everything it consumed, and only after indexing it.
    wait_for(lambda: _lag(settings, f"{settings.pipeline.app_id}-sink", settings.kafka.topics.enriched) == 0,
             timeout=30, message="sink offsets committed")


def _lag(settings, group: str, topic: str) -> int:
    """Messages of ``topic`` not yet committed by ``group`` (without joining the group)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_list, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in partitions)
    finally:
        consumer.close(autocommit=False)


def _raw(native_id: str, text: str) -> bytes:
    return RawMention(platform="webhook", native_id=native_id, text=text, created_at=datetime.now(timezone.utc),
                      author={"handle": "someone"}).model_dump_json().encode()


def test_malformed_raw_message_is_dead_lettered_by_the_worker_and_the_stream_goes_on(settings, roles):
    from stimmung.kafka import ensure_topics

    ensure_topics(settings.kafka)
    roles.start("worker", "sink")
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    topic = settings.kafka.topics.raw
    producer.send(topic, key=b"a", value=_raw("a", "Die Lieferung ist wieder zu spät gekommen."))
    producer.send(topic, key=b"b", value=b'{"platform": "webhook", "text": 42')
    producer.send(topic, key=b"c", value=json.dumps({"platform": "webhook", "native_id": "c"}).encode())
    producer.send(topic, key=b"d", value=_raw("d", "Great support today, thanks a lot!"))
    producer.flush()
    producer.close()

    wait_for(lambda: count(settings) == 2, timeout=180, check=roles.check_alive, message="good messages indexed")
    letters = [DeadLetter.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.deadletter, 2)]
    assert sorted(l.key for l in letters) == ["b", "c"]
    assert all(l.stage == "enrich" and l.source == topic and l.offset is not None for l in letters)
    by_key = {l.key: l for l in letters}
    assert by_key["b"].error_type == "json" and by_key["b"].payload.startswith('{"platform"')
    assert by_key["c"].error_type == "validation" and "text" in by_key["c"].reason


def test_document_elasticsearch_refuses_is_dead_lettered_with_its_reason_while_batch_mates_are_indexed(settings, roles):
    from stimmung.kafka import ensure_topics

    ensure_topics(settings.kafka)
    base = dict(platform="csv", text="Paket kam beschädigt an", created_at=datetime.now(timezone.utc),
                language="de", language_confidence=0.99, language_source="model")
    good1 = EnrichedMention(native_id="g1", **base)
    # Valid for the schema, but out of range for Elasticsearch's `long`: a real mapping error.
    bad = EnrichedMention(native_id="bad", engagement={"views": 2**70}, **base)
    good2 = EnrichedMention(native_id="g2", **base)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for m in (good1, bad, good2):
        producer.send(settings.kafka.topics.enriched, key=m.mention_id.encode(), value=m.model_dump_json().encode(),
                      partition=0)
    producer.send(settings.kafka.topics.enriched, key=b"junk", value=b"not json at all", partition=0)
    producer.flush()
    producer.close()

    roles.start("sink")
    wait_for(lambda: count(settings) == 2, timeout=120, check=roles.check_alive, message="batch-mates indexed")
    letters = [DeadLetter.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.deadletter, 2)]
    by_key = {l.key: l for l in letters}
    assert set(by_key) == {bad.mention_id, "junk"}
    refused = by_key[bad.mention_id]
    assert refused.stage == "sink" and refused.error_type in ("mapper_parsing_exception", "document_parsing_exception")
    assert "views" in refused.reason
    assert EnrichedMention.model_validate_json(refused.payload).native_id == "bad"
    assert by_key["junk"].error_type == "json"
    ids = {h["_source"]["native_id"] for h in all_docs(settings)}
    assert ids == {"g1", "g2"}


def test_pipeline_authenticates_to_kafka_with_sasl_scram(config, tmp_path, monkeypatch):
    """Every role (Faust worker, sink, importer) over a SASL/SCRAM-SHA-512 listener, as on a
    Strimzi cluster; a wrong password is a clear error, not a hang."""
    from stimmung.kafka import KafkaUnavailable, ensure_topics

    from .conftest import PORTS, PSEUDONYM_KEY, Roles

    (tmp_path / "kafka-password").write_text("stimmung-local\n")
    config["kafka"]["bootstrap_servers"] = f"127.0.0.1:{PORTS['kafka_sasl_port']}"
    config["kafka"]["security"] = {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                   "sasl_username": "stimmung", "sasl_password_file": str(tmp_path / "kafka-password")}
    monkeypatch.setenv("STIMMUNG_PRIVACY__PSEUDONYM_KEY", PSEUDONYM_KEY)
    settings = load_settings(**config)
    roles = Roles(config, tmp_path)
    try:
        roles.start("worker", "sink")
        report = run_import(settings, sample_path(), None, None, {}, resume=False, rejects=None, show_progress=False)
        assert (report.published, report.rejected) == (SAMPLE_GOOD, SAMPLE_BAD)
        wait_for(lambda: count(settings) >= SAMPLE_GOOD, timeout=180, check=roles.check_alive, message="indexed over SASL")
        assert count(settings) == SAMPLE_GOOD
    finally:
        roles.stop()
    wrong = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
        "security": settings.kafka.security.model_copy(update={"sasl_password_file": None, "sasl_password": SecretStr("nope")})})})
    with pytest.raises(KafkaUnavailable, match=r"refused our credentials \(SASL_PLAINTEXT SCRAM-SHA-512 as 'stimmung'\)"):
        ensure_topics(wrong.kafka, timeout_s=10)


def test_consumer_lag_is_measured_from_committed_offsets(settings):
    from kafka.structs import OffsetAndMetadata

    from stimmung.kafka import ensure_topics
    from stimmung.lag import measure_lag

    ensure_topics(settings.kafka)
    topic = settings.kafka.topics.raw
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for n in range(10):
        producer.send(topic, key=b"k", value=str(n).encode(), partition=0)
    producer.flush()
    producer.close()
    group = f"{settings.pipeline.app_id}-lagtest"
    assert measure_lag(settings.kafka, group, [topic]) == {topic: 10}, "no commit yet: everything is behind"
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_list, group_id=group, enable_auto_commit=False)
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "", -1)})
    consumer.close()
    assert measure_lag(settings.kafka, group, [topic]) == {topic: 6}
