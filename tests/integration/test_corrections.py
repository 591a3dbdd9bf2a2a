"""`stimmung correct` and `stimmung corrections export` on the real node: corrections in their own index
(latest wins, history kept), the mention untouched, and an export the models' dataset reader accepts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from stimmung.models.datasets import read_topic_jsonl

from .indexing import cli, enriched, index_mentions, settings_file

NOW = datetime.now(timezone.utc)


def test_corrections_are_stored_audited_and_exported_as_training_examples(settings, config, tmp_path, monkeypatch):
    m1 = enriched("c1", "Danke an das Nordbahn-Team, super Hilfe!", NOW - timedelta(hours=1), sentiment="negative",
                  topics=("complaint", "customer_service"))
    m2 = enriched("c2", "Kaufhafen liefert wieder zu spät", NOW - timedelta(hours=2), sentiment="neutral",
                  topics=("delivery",), language="de")
    m3 = enriched("c3", "Wird bald gelöscht", NOW - timedelta(hours=3))
    client = index_mentions(settings, [m1, m2, m3])
    mention_before = client.search(index=settings.elasticsearch.mentions_index, query={"ids": {"values": [m1.mention_id]}},
                                   seq_no_primary_term=True)["hits"]["hits"][0]
    index = config["elasticsearch"]["mentions_index"].replace("-mentions", "-corrections")
    assert settings.elasticsearch.corrections_index == "stimmung-corrections"  # the default the config did not set
    conf = settings_file(config | {"elasticsearch": {**config["elasticsearch"], "corrections_index": index}},
                         tmp_path / "settings.yaml")

    first = cli(conf, "correct", m1.mention_id, "--sentiment", "positive", "--complaint", "no", "--topic", "praise",
                "--note", "thanks, not a complaint", "--as", "alice")
    assert first.exit_code == 0, first.output
    assert "sentiment = positive (model: negative)" in first.stdout and "topic complaint = false (model: true)" in first.stdout
    second = cli(conf, "correct", m1.mention_id, "--sentiment", "neutral", "--as", "bob")
    assert second.exit_code == 0 and "revision 2" in second.stdout
    assert cli(conf, "correct", m2.mention_id, "--relevant", "no", "--as", "alice").exit_code == 0
    assert cli(conf, "correct", m3.mention_id, "--sentiment", "neutral", "--as", "alice").exit_code == 0
    assert cli(conf, "correct", m2.mention_id, "--note", "ask the shop team", "--as", "carol").exit_code == 0

    doc = client.get(index=index, id=f"{m1.mention_id}:sentiment")["_source"]
    assert (doc["value"], doc["model_value"], doc["corrected_by"], doc["revision"]) == ("neutral", "negative", "bob", 2)
    assert [(h["value"], h["corrected_by"], h["note"]) for h in doc["history"]] == [
        ("positive", "alice", "thanks, not a complaint")]
    mention_after = client.search(index=settings.elasticsearch.mentions_index, query={"ids": {"values": [m1.mention_id]}},
                                  seq_no_primary_term=True)["hits"]["hits"][0]
    assert mention_after["_seq_no"] == mention_before["_seq_no"], "the mention itself is never changed"

    unknown = cli(conf, "correct", "no-such-id", "--sentiment", "positive", "--as", "alice")
    assert unknown.exit_code == 2 and "no indexed mention 'no-such-id'" in unknown.stderr
    assert cli(conf, "correct", m1.mention_id, "--as", "alice").exit_code == 2  # nothing to correct
    clash = cli(conf, "correct", m1.mention_id, "--topic", "complaint", "--complaint", "no", "--as", "alice")
    assert clash.exit_code == 2 and "contradict" in clash.stderr
    assert cli(conf, "correct", m1.mention_id, "--sentiment", "positive").exit_code == 2  # --as is required

    # m3 is erased after its correction: its text must not be exported
    (hit,) = client.search(index=settings.elasticsearch.mentions_index, query={"ids": {"values": [m3.mention_id]}})["hits"]["hits"]
    client.delete(index=hit["_index"], id=hit["_id"], refresh=True)

    monkeypatch.chdir(tmp_path)
    done = cli(conf, "corrections", "export", "--out", "train.jsonl")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert (summary["examples"], summary["skipped_missing_mentions"]) == (2, 1)
    rows = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()}
    assert rows[m1.mention_id] | {"corrected_by": None} == {
        "id": m1.mention_id, "lang": "de", "text": m1.text, "topics": ["customer_service", "praise"], "sentiment": "neutral",
        "source": "analyst-correction", "corrected": ["sentiment", "topic:complaint", "topic:praise"], "corrected_by": None}
    assert sorted(rows[m1.mention_id]["corrected_by"]) == ["alice", "bob"]
    assert rows[m2.mention_id]["relevant"] is False and "sentiment" not in rows[m2.mention_id]
    assert rows[m2.mention_id]["topics"] == ["delivery"]
    examples = {e.id: e for e in read_topic_jsonl(tmp_path / "train.jsonl")}  # what the models' tools read
    assert examples[m1.mention_id].topics == {"customer_service", "praise"} and examples[m1.mention_id].sentiment == "neutral"


def test_export_without_corrections_says_so_and_fails(settings, config, tmp_path):
    index = config["elasticsearch"]["mentions_index"].replace("-mentions", "-corrections")
    conf = settings_file(config | {"elasticsearch": {**config["elasticsearch"], "corrections_index": index}},
                         tmp_path / "settings.yaml")
    done = cli(conf, "corrections", "export", "--out", str(tmp_path / "none.jsonl"))
    assert done.exit_code == 3 and "no corrections to export" in done.stderr


def test_an_erasure_takes_the_authors_corrections_along(settings):
    from stimmung.pipeline.elastic.corrections import Change, correct
    from stimmung.pipeline.erasure import erase
    from stimmung.schemas.mention import PseudonymousAuthor

    erased, kept = (enriched(n, "Nordbahn, wo bleibt meine Erstattung?", NOW - timedelta(hours=1)) for n in ("e1", "k1"))
    erased.author = PseudonymousAuthor(pseudonym="psn_" + "e" * 32)
    kept.author = PseudonymousAuthor(pseudonym="psn_" + "k" * 32)
    client = index_mentions(settings, [erased, kept])
    es = settings.elasticsearch
    for m in (erased, kept):
        correct(client, es, m.mention_id, [Change("sentiment", "neutral")], by="alice", note="customer named in the note")
    erase(client, es, {"psn_" + "e" * 32: "csv"}, sweep_after_s=0.1)
    client.indices.refresh(index=es.corrections_index)
    left = {h["_source"]["mention_id"] for h in client.search(index=es.corrections_index, size=100)["hits"]["hits"]}
    assert erased.mention_id not in left and kept.mention_id in left
