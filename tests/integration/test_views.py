"""The worker's consent and influence views (issue #20 item 7): readiness waits for them, a dead
view makes the worker not ready, a broker outage does not kill a view, and a restarted worker
folds new mentions into the author's accumulated influence instead of starting from scratch."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from kafka import KafkaProducer

from stimmung.health import HEALTH
from stimmung.kafka import ensure_topics
from stimmung.pipeline.views import CompactedView
from stimmung.schemas import EnrichedMention, RawMention

from .conftest import free_port, probe, wait_for
from .test_end_to_end import read_topic


def _raw(native_id: str, likes: int) -> bytes:
    return RawMention(platform="mastodon", native_id=native_id, text=f"Die Nordbahn ist wieder zu spät {native_id}",
                      created_at=datetime.now(timezone.utc), author={"handle": "@anna@social.example", "follower_count": 500},
                      engagement={"likes": likes}).model_dump_json().encode()


def _influence_states(settings, pseudonym: str, expected: int) -> list[dict]:
    return [json.loads(v) for v in read_topic(settings, settings.kafka.topics.influence, expected, timeout_s=20)]


def test_restarted_worker_keeps_the_authors_accumulated_influence(settings, roles):
    ensure_topics(settings.kafka)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    port = free_port()
    roles.start("worker", metrics_ports={"worker": port})
    for n in range(3):
        producer.send(settings.kafka.topics.raw, key=f"i{n}".encode(), value=_raw(f"i{n}", 40))
    producer.flush()
    first = read_topic(settings, settings.kafka.topics.enriched, 3, timeout_s=240)
    assert len(first) == 3
    wait_for(lambda: probe(port, "/readyz")[0] == 200, timeout=60, message="worker ready")
    checks = probe(port, "/readyz")[1]["checks"]
    assert checks[f"view:{settings.kafka.topics.consent}"]["ok"] and checks[f"view:{settings.kafka.topics.influence}"]["ok"]
    roles.stop("worker")
    # The next mention waits on the raw topic before the worker is back: it is the first thing
    # the restarted agent sees, while its influence view is still being rebuilt.
    producer.send(settings.kafka.topics.raw, key=b"i3", value=_raw("i3", 40))
    producer.flush()
    producer.close()
    roles.start("worker", metrics_ports={"worker": port})
    enriched = read_topic(settings, settings.kafka.topics.enriched, 4, timeout_s=240)
    latest = {EnrichedMention.model_validate_json(v).native_id: EnrichedMention.model_validate_json(v) for v in enriched}
    assert set(latest) == {"i0", "i1", "i2", "i3"}
    pseudonym = latest["i3"].author.pseudonym
    states = wait_for(lambda: [s for s in _influence_states(settings, pseudonym, 4) if s["n"] == 4], timeout=30,
                      message="the fourth mention folded into the author's state")
    assert states[-1]["n"] == 4  # not 1: the restarted worker did not start the author from scratch
    assert latest["i3"].author.influence >= latest["i0"].author.influence


def test_a_view_rides_out_a_broker_outage_and_a_dead_view_is_not_ready(settings, local_stack):
    ensure_topics(settings.kafka)
    topic = settings.kafka.topics.consent
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    producer.send(topic, key=b"a", value=b"1")
    producer.flush()
    view = CompactedView(settings.kafka, topic).start()
    assert view.wait_caught_up(30) and view.get(b"a") == b"1"
    assert HEALTH.checks[view.check][0] is True
    local_stack.down(only=["kafka"])
    time.sleep(5)
    local_stack.up(only=["kafka"])
    producer.send(topic, key=b"b", value=b"2")
    producer.flush()
    wait_for(lambda: view.get(b"b") == b"2", timeout=60, message="the view follows the topic after the outage")
    assert not view.dead.is_set() and HEALTH.checks[view.check][0] is True

    def unreadable(key, value):  # stands for a record or a bug the view cannot get past
        raise ValueError("cannot apply this record")

    view.put_local = unreadable
    producer.send(topic, key=b"c", value=b"3")
    producer.flush()
    producer.close()
    wait_for(view.dead.is_set, timeout=30, message="the view thread ends")
    ok, body = HEALTH.readiness()
    assert not ok and not body["checks"][view.check]["ok"] and "view stopped" in body["checks"][view.check]["detail"]
    view.stop()
