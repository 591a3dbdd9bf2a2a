"""Roles ride out outages (issue #20 item 4): started while Elasticsearch or the broker is away,
they wait (alive, not ready) and resume on their own; a broker outage under a running sink loses
and doubles nothing."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.schemas import EnrichedMention

from .conftest import Roles, free_port, probe, wait_for
from .test_end_to_end import _lag, _raw, read_topic


def _enriched(n: int) -> tuple[bytes, bytes]:
    m = EnrichedMention(platform="csv", native_id=f"o{n}", text=f"Störung Nummer {n}", created_at=datetime.now(timezone.utc),
                        language="de", language_confidence=0.9, language_source="model")
    return m.mention_id.encode(), m.model_dump_json().encode()


def _indexed(settings) -> set[str]:
    es = Elasticsearch(settings.elasticsearch.url)
    index = settings.elasticsearch.mentions_index
    try:
        es.indices.refresh(index=index)
        hits = es.search(index=index, size=10_000, source_includes=["native_id"])["hits"]["hits"]
    except Exception:
        return set()
    finally:
        es.close()
    return {h["_source"]["native_id"] for h in hits}


def test_sink_started_while_elasticsearch_is_down_indexes_once_it_is_up(settings, roles, local_stack):
    ensure_topics(settings.kafka)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for n in range(50):
        producer.send(settings.kafka.topics.enriched, key=_enriched(n)[0], value=_enriched(n)[1])
    producer.flush()
    local_stack.down(only=["elasticsearch"])
    try:
        port = free_port()
        roles.start("sink", metrics_ports={"sink": port})
        time.sleep(8)  # it used to exit within 2-3 s
        roles.check_alive()
        status, body = probe(port, "/readyz")
        assert status == 503 and not body["checks"]["elasticsearch"]["ok"], body
        assert probe(port, "/healthz")[0] == 200
    finally:
        local_stack.up(only=["elasticsearch"])
    wait_for(lambda: _indexed(settings) == {f"o{n}" for n in range(50)}, timeout=120, check=roles.check_alive,
             message="all 50 indexed after Elasticsearch came up")
    wait_for(lambda: probe(port, "/readyz")[0] == 200, timeout=30, message="ready")
    log = roles.log("sink", tail=200_000)
    assert log.count("Elasticsearch unavailable at startup") == 1  # one line for the state change, not a storm


def test_sink_survives_a_20s_broker_outage_and_loses_or_doubles_nothing(settings, roles, local_stack):
    total = 400
    ensure_topics(settings.kafka)
    port = free_port()
    roles.start("sink", metrics_ports={"sink": port})
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for n in range(total // 2):
        producer.send(settings.kafka.topics.enriched, key=_enriched(n)[0], value=_enriched(n)[1])
    producer.flush()
    wait_for(lambda: len(_indexed(settings)) >= total // 4, timeout=120, check=roles.check_alive, message="first mentions indexed")
    local_stack.down(only=["kafka"])
    try:
        time.sleep(20)
        roles.check_alive()
        assert probe(port, "/healthz")[0] == 200
    finally:
        local_stack.up(only=["kafka"])
    # Each send is confirmed: a record the test's own producer failed to deliver after the restart
    # must read as that, not as a sink that lost it.
    sent = [producer.send(settings.kafka.topics.enriched, key=_enriched(n)[0], value=_enriched(n)[1])
            for n in range(total // 2, total)]
    for future in sent:
        future.get(timeout=150)
    producer.close()
    wanted = {f"o{n}" for n in range(total)}
    try:
        wait_for(lambda: _indexed(settings) == wanted, timeout=180, check=roles.check_alive,
                 message="every mention indexed after the outage")
    except AssertionError as timed_out:
        missing = sorted(wanted - _indexed(settings))
        lag = _lag(settings, f"{settings.pipeline.app_id}-sink", settings.kafka.topics.enriched)
        raise AssertionError(f"{timed_out}: {len(missing)} not indexed (e.g. {missing[:5]}), sink lag {lag}") from None
    es = Elasticsearch(settings.elasticsearch.url)
    assert es.count(index=settings.elasticsearch.mentions_index)["count"] == total  # ids: no doubles
    wait_for(lambda: _lag(settings, f"{settings.pipeline.app_id}-sink", settings.kafka.topics.enriched) == 0,
             timeout=60, check=roles.check_alive, message="offsets committed after the outage")
    assert read_topic(settings, settings.kafka.topics.deadletter, 1, timeout_s=3) == []


def test_worker_started_while_the_broker_is_down_enriches_once_it_is_up(settings, roles, local_stack):
    ensure_topics(settings.kafka)
    local_stack.down(only=["kafka"])
    try:
        roles.start("worker")
        time.sleep(10)  # it used to exit: "Unable to bootstrap from ..."
        roles.check_alive()
    finally:
        local_stack.up(only=["kafka"])
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for n in range(5):
        producer.send(settings.kafka.topics.raw, key=f"w{n}".encode(), value=_raw(f"w{n}", f"Die Bahn ist pünktlich {n}"))
    producer.flush()
    producer.close()
    got = read_topic(settings, settings.kafka.topics.enriched, 5, timeout_s=240)
    roles.check_alive()
    assert len({EnrichedMention.model_validate_json(v).native_id for v in got}) == 5


def test_alerting_started_while_the_broker_is_down_waits_and_becomes_ready(settings, roles, local_stack):
    ensure_topics(settings.kafka)
    local_stack.down(only=["kafka"])
    port = free_port()
    try:
        roles.start("alerting", metrics_ports={"alerting": port})
        time.sleep(10)
        roles.check_alive()
        assert probe(port, "/healthz")[0] == 200
        assert probe(port, "/readyz")[0] == 503
    finally:
        local_stack.up(only=["kafka"])
    wait_for(lambda: probe(port, "/readyz")[0] == 200, timeout=180, check=roles.check_alive,
             message="alerting ready once the broker is back")


def test_webhook_receiver_rides_out_a_broker_outage_and_answers_503_meanwhile(settings, config, tmp_path, local_stack):
    """Started while the broker is away it stays up; a push during an outage gets 503 (retry
    later, nothing half-published) within seconds instead of hanging or a 500; afterwards the
    same push is published."""
    import hashlib
    import hmac
    import json

    import httpx

    from .conftest import Roles

    ensure_topics(settings.kafka)
    secret, web_port, metrics_port = "fuzzy-secret", free_port(), free_port()
    roles = Roles({**config, "connectors": {**config.get("connectors", {}),
                                            "webhook": {"host": "127.0.0.1", "port": web_port, "generic_secret": secret}}},
                  tmp_path)
    body = json.dumps({"platform": "shop", "native_id": "r1", "text": "Lieferung kam kaputt an",
                       "created_at": "2026-12-01T10:00:00Z"}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    def push() -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{web_port}/webhooks/generic", content=body, timeout=60,
                          headers={"X-Stimmung-Signature": signature, "Content-Type": "application/json"})

    try:
        local_stack.down(only=["kafka"])
        try:
            roles.start("webhook", metrics_ports={"webhook": metrics_port})
            time.sleep(10)
            roles.check_alive()
        finally:
            local_stack.up(only=["kafka"])
        wait_for(lambda: probe(metrics_port, "/readyz")[0] == 200, timeout=180, check=roles.check_alive,
                 message="webhook receiver ready once the broker is back")
        assert push().json() == {"published": 1, "rejected": 0}
        local_stack.down(only=["kafka"])
        try:
            started = time.monotonic()
            during = push()
            assert during.status_code == 503 and "Retry-After" in during.headers, (during.status_code, during.text)
            assert time.monotonic() - started < 45
            roles.check_alive()
        finally:
            local_stack.up(only=["kafka"])
        wait_for(lambda: push().status_code == 200, timeout=180, check=roles.check_alive,
                 message="pushes accepted again after the outage")
    finally:
        roles.stop()
    got = read_topic(settings, settings.kafka.topics.raw, 1, timeout_s=60)
    assert got


# The roles without a test of their own above, all at once: started while a dependency is away
# each stays up (alive, /healthz 200), says so on /readyz (503) and becomes ready on its own once
# the dependency is back; then the dependency goes away under the running roles and comes back,
# and they are still alive and ready. Kafka for all four; Elasticsearch for the two that need it
# at start-up (the privacy worker reaches Elasticsearch only per erasure, the connector never).
OTHER_ROLES = {"privacy-worker": ("kafka",), "cases run": ("kafka", "elasticsearch"),
               "consent serve": ("kafka", "elasticsearch"), "connect rss": ("kafka",)}
CRM_TOKEN = "crm-api-token-for-the-outage-test"


@pytest.mark.parametrize("away", ["kafka", "elasticsearch"])
def test_other_roles_started_while_a_dependency_is_away_wait_unready_then_ride_out_another_outage(
        away, settings, config, tmp_path, local_stack):
    from .test_connectors import rss_feed, serve

    ensure_topics(settings.kafka)
    commands = [command for command, deps in OTHER_ROLES.items() if away in deps]
    feed = rss_feed([{"guid": "outage-1", "title": "Nordbahn fällt wieder aus", "body": "Schon wieder kein Zug.",
                      "when": datetime.now(timezone.utc)}])
    feed_server, base = serve(lambda handler: (200, feed, {"Content-Type": "application/rss+xml"}))
    extra = {
        "crm": {**config.get("crm", {}), "routes": [{"name": "all", "queue": "support", "brands": ["Nordbahn"]}],
                "api": {"token": CRM_TOKEN, "host": "127.0.0.1", "port": free_port()}},
        "connectors": {"checkpoint_dir": str(tmp_path / "checkpoints"), "filter_by_brands": False,
                       "rss": {"feeds": [f"{base}/feed.xml"], "interval_s": 5}},
    }
    roles = Roles({**config, **extra}, tmp_path)
    ports = {command: free_port() for command in commands}

    def all_ready(when: str) -> None:
        for command in commands:
            try:
                wait_for(lambda port=ports[command]: probe(port, "/readyz")[0] == 200, timeout=150, check=roles.check_alive,
                         message=f"{command} ready {when}")
            except AssertionError as err:
                raise AssertionError(f"{err}\n{probe(ports[command], '/readyz')}\n{roles.log(command)}") from None

    try:
        local_stack.down(only=[away])
        try:
            roles.start(*commands, metrics_ports=ports)
            time.sleep(8)
            roles.check_alive()
            for command in commands:
                assert probe(ports[command], "/healthz")[0] == 200, roles.log(command)
                status, body = probe(ports[command], "/readyz")
                assert status == 503, (command, status, body, roles.log(command))
        finally:
            local_stack.up(only=[away])
        all_ready(f"once {away} is back")
        if "connect rss" in commands:  # and it does its job: the feed's item reaches the raw topic
            got = read_topic(settings, settings.kafka.topics.raw, 1, timeout_s=60)
            assert got and b"outage-1" in got[0], roles.log("connect rss")
        local_stack.down(only=[away])  # away again, under running roles
        try:
            time.sleep(8)
            roles.check_alive()
        finally:
            local_stack.up(only=[away])
        all_ready(f"after {away} was away under them")
        roles.check_alive()
    finally:
        roles.stop()
        feed_server.shutdown()
