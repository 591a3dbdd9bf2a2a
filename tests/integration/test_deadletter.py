"""`stimmung deadletter list|show|replay` on the real broker: dead letters written by the pipeline's own
code (InMessage.dead_letter + DeadLetters), filtered, decoded, and replayed byte for byte to their topic."""

from __future__ import annotations

import json

from kafka import KafkaConsumer, TopicPartition

from stimmung.kafka import DeadLetters, client_config, ensure_topics, make_producer
from stimmung.pipeline.deadletters import REPLAY_HEADER
from stimmung.pipeline.enrich import InMessage
from stimmung.schemas.deadletter import DeadLetter

from .indexing import cli, settings_file

NOT_JSON = b'{"platform": "csv", "native_id": '
NOT_UTF8 = b"\xff\xfe binary \x00 junk"
VALID_BUT_REFUSED = b'{"mention_id": "m-3", "text": "x"}'


def _write_letters(settings) -> None:
    topics = settings.kafka.topics
    producer = make_producer(settings.kafka)
    letters = DeadLetters(producer, topics.deadletter)
    letters.send(InMessage(topics.raw, 0, 5, b"m-1", NOT_JSON).dead_letter("enrich", "json", "Invalid JSON: EOF"))
    letters.send(InMessage(topics.raw, 1, 9, b"m-2", NOT_UTF8).dead_letter("enrich", "validation", "not UTF-8 text"))
    letters.send(InMessage(topics.enriched, 0, 2, b"m-3", VALID_BUT_REFUSED).dead_letter(
        "sink", "mapper_parsing_exception", "failed to parse field [engagement.likes] of type [long]"))
    letters.send(DeadLetter(stage="connector", reason="row 3: created_at: invalid datetime", error_type="validation",
                            source="import:export.csv", offset=3, payload="3,hello,notadate"))
    letters.flush()
    producer.close()


def _ids(settings, conf, *filters) -> list[str]:
    done = cli(conf, "deadletter", "list", "--json", *filters)
    assert done.exit_code == 0, done.output
    return [json.loads(line)["id"] for line in done.stdout.splitlines()]


def _read_all(settings, topic: str) -> list:
    consumer = KafkaConsumer(**client_config(settings.kafka), group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    records = []
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    consumer.close()
    return records


def test_list_filters_show_decodes_and_ids_are_positions(settings, config, tmp_path):
    ensure_topics(settings.kafka)
    conf = settings_file(config, tmp_path / "settings.yaml")
    empty = cli(conf, "deadletter", "list")
    assert empty.exit_code == 3 and "no dead letter" in empty.stderr
    _write_letters(settings)

    every = _ids(settings, conf)
    assert len(every) == 4 and all(p.isdigit() and o.isdigit() for p, _, o in (i.partition(":") for i in every))
    assert len(_ids(settings, conf, "--stage", "enrich")) == 2
    assert len(_ids(settings, conf, "--reason", "mapper_parsing_exception")) == 1
    assert len(_ids(settings, conf, "--reason", "ENGAGEMENT.LIKES")) == 1  # part of the reason text, any case
    assert len(_ids(settings, conf, "--since", "10m")) == 4
    assert len(_ids(settings, conf, "--limit", "2")) == 2
    none = cli(conf, "deadletter", "list", "--stage", "sink", "--reason", "json")
    assert none.exit_code == 3 and "stage sink and reason 'json'" in none.stderr

    table = cli(conf, "deadletter", "list", env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "4 dead letter(s)" in table.stdout and "import:export.csv:3" in table.stdout

    (sink_id,) = _ids(settings, conf, "--stage", "sink")
    shown = cli(conf, "deadletter", "show", sink_id)
    assert shown.exit_code == 0, shown.output
    assert "mapper_parsing_exception" in shown.stdout and f"{settings.kafka.topics.enriched}[0]@2" in shown.stdout
    assert '"mention_id": "m-3"' in shown.stdout  # the payload, decoded and pretty-printed
    as_json = json.loads(cli(conf, "deadletter", "show", sink_id, "--json").stdout)
    assert as_json["payload_decoded"] == json.loads(VALID_BUT_REFUSED) and as_json["key"] == "m-3"

    assert "expected PARTITION:OFFSET" in cli(conf, "deadletter", "show", "17").stderr
    missing = cli(conf, "deadletter", "show", "0:999")
    assert missing.exit_code == 2 and "no dead letter 0:999" in missing.stderr


def test_replay_publishes_the_original_bytes_and_keys_to_their_topic(settings, config, tmp_path):
    ensure_topics(settings.kafka)
    conf = settings_file(config, tmp_path / "settings.yaml")
    _write_letters(settings)
    raw = settings.kafka.topics.raw

    dry = cli(conf, "deadletter", "replay", "--stage", "enrich", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "2 dead letter(s) would be replayed (2 to " + raw in dry.stdout
    assert _read_all(settings, raw) == []

    done = cli(conf, "deadletter", "replay", "--stage", "enrich")
    assert done.exit_code == 0, done.output
    assert f"replayed 2 dead letter(s) (2 to {raw})" in done.stdout
    replayed = {r.key: r for r in _read_all(settings, raw)}
    assert {k: r.value for k, r in replayed.items()} == {b"m-1": NOT_JSON, b"m-2": NOT_UTF8}  # byte for byte
    assert all(dict(r.headers)[REPLAY_HEADER].startswith(settings.kafka.topics.deadletter.encode())
               for r in replayed.values())

    (sink_id,) = _ids(settings, conf, "--stage", "sink")
    one = cli(conf, "deadletter", "replay", "--id", sink_id)
    assert one.exit_code == 0 and "replayed 1" in one.stdout
    assert [r.value for r in _read_all(settings, settings.kafka.topics.enriched)] == [VALID_BUT_REFUSED]

    connector = cli(conf, "deadletter", "replay", "--stage", "connector")
    assert connector.exit_code == 3
    assert "not from a topic" in connector.stderr and "none of the 1 matching" in connector.stderr
    nothing = cli(conf, "deadletter", "replay", "--reason", "no-such-reason")
    assert nothing.exit_code == 3 and "nothing replayed" in nothing.stderr
    assert cli(conf, "deadletter", "replay").exit_code == 2  # no filter: refused, not "everything"
