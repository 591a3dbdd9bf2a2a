"""The privacy worker commits exactly what it handled: killed between the signals of two
partitions, the second account's erasure still happens after a restart (issue #20, GDPR path)."""

from __future__ import annotations

import json
import threading

from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.pipeline.privacy_signals import PrivacySignalWorker
from stimmung.schemas.pseudonym import Pseudonymizer

from .conftest import PSEUDONYM_KEY
from .test_index_admin import mention, write


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no commit, no clean shutdown path."""


class DiesBeforeSecondSignal(PrivacySignalWorker):
    def handle(self, client, pseudonymizer, value):
        if self.erased == 1:
            raise Killed()
        super().handle(client, pseudonymizer, value)


def test_killed_between_two_partitions_the_second_erasure_still_happens(settings):
    ensure_topics(settings.kafka)
    assert settings.kafka.topics.partitions >= 2
    client = Elasticsearch(settings.elasticsearch.url)
    write(client, settings, [mention("a1", "Nordbahn", handle="did:plc:first", platform="bluesky"),
                             mention("b1", "Nordbahn", handle="did:plc:second", platform="bluesky"),
                             mention("c1", "Nordbahn", handle="did:plc:stays", platform="bluesky")])
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for partition, handle in ((0, "did:plc:first"), (1, "did:plc:second")):
        producer.send(settings.kafka.topics.privacy, partition=partition, key=handle.encode(), value=json.dumps(
            {"platform": "bluesky", "handle": handle, "status": "deleted", "at": "1"}).encode())
    producer.flush()
    producer.close()

    first = DiesBeforeSecondSignal(settings, sweep_after_s=0.1)
    died: list[BaseException] = []

    def run_first():
        try:
            first.run()
        except Killed as err:
            died.append(err)

    thread = threading.Thread(target=run_first, daemon=True)
    thread.start()
    thread.join(120)
    assert died and first.erased == 1  # one erased, killed before the other partition's signal

    second = PrivacySignalWorker(settings, sweep_after_s=0.1)
    thread = threading.Thread(target=second.run, kwargs={"until": lambda: second.erased >= 1}, daemon=True)
    thread.start()
    thread.join(120)
    assert second.erased == 1  # the un-handled signal came back, and only it
    client.indices.refresh(index=settings.elasticsearch.mentions_index)
    left = [h["_source"]["native_id"] for h in client.search(index=settings.elasticsearch.mentions_index)["hits"]["hits"]]
    assert left == ["c1"]
    for handle in ("did:plc:first", "did:plc:second"):
        pseudonym = Pseudonymizer(PSEUDONYM_KEY).pseudonym("bluesky", handle)
        assert client.get(index=settings.elasticsearch.erasures_index, id=pseudonym)["_source"]["reason"] == "account deleted"
