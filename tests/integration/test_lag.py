"""`stimmung lag` against the real broker: a group's committed lag per partition, read from
outside the group, and `--max-lag` as a script's "caught up?" check (issue #20)."""

from __future__ import annotations

import json

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from stimmung.kafka import client_config, ensure_topics, make_producer

from .indexing import cli, settings_file


def test_lag_counts_what_a_group_has_not_committed_and_max_lag_gates_the_exit(settings, config, tmp_path):
    ensure_topics(settings.kafka)
    conf = settings_file(config, tmp_path / "settings.yaml")
    topic, group = settings.kafka.topics.enriched, f"{settings.pipeline.app_id}-sink"
    producer = make_producer(settings.kafka)
    for n in range(30):
        producer.send(topic, key=f"k{n}".encode(), value=b"{}")
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(**client_config(settings.kafka), group_id=group, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    end = consumer.end_offsets(partitions)
    assert sum(end.values()) == 30
    first = partitions[0]
    consumer.assign(partitions)
    # the group has read and committed everything but 4 messages of the first partition
    consumer.commit({tp: OffsetAndMetadata(max(0, end[tp] - (4 if tp == first else 0)), "", -1) for tp in partitions})
    consumer.close(autocommit=False)
    expected = min(4, end[first])

    done = cli(conf, "lag", "sink", "--json")
    assert done.exit_code == 0, done.output
    sink = json.loads(done.stdout)["sink"]
    assert sink["group"] == group and sink["topic"] == topic and sink["lag"] == expected
    by_partition = {p["partition"]: p for p in sink["partitions"]}
    assert by_partition[first.partition]["lag"] == expected and by_partition[first.partition]["end"] == end[first]

    # a group that never committed trails by everything retained; the table names it
    table = cli(conf, "lag", "alerting")
    assert table.exit_code == 0 and f"{settings.pipeline.app_id}-alerting" in table.stdout and " 30 " in table.stdout

    assert cli(conf, "lag", "sink", "--max-lag", str(expected)).exit_code == 0
    behind = cli(conf, "lag", "sink", "alerting", "--max-lag", str(expected))
    assert behind.exit_code == 1 and "alerting 30" in behind.stderr
    custom = cli(conf, "lag", "--group", f"{group}:{topic}", "--json")
    assert json.loads(custom.stdout)[group]["lag"] == expected
    assert cli(conf, "lag", "nope").exit_code != 0
