"""`stimmung brands test|add|set-queries|remove|retag` on the real node and a real settings file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import yaml
from elasticsearch import Elasticsearch

from stimmung.pipeline.elastic.brands import RETAG_FIELDS, RetagReport, _named, _update

from .indexing import cli, enriched, index_mentions, settings_file

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _mentions():
    tagged = {"Nordbahn": "Nordbahn"}
    return [enriched("b1", "Nordbahn: schon wieder Verspätung in Hamburg", NOW - timedelta(hours=1), brands=tagged),
            enriched("b2", "Nordbahns Verspätungen nerven", NOW - timedelta(days=3), brands=tagged),
            enriched("b3", "Nordbahn hat eine neue App", NOW - timedelta(days=3, hours=2), brands=tagged),
            enriched("b4", "Kaufhafen liefert zu spät", NOW - timedelta(days=1)),
            enriched("b5", "Verspätung überall, egal welche Bahn", NOW - timedelta(hours=2)),
            enriched("b6", "Nordbahn Verspätung vor langer Zeit", NOW - timedelta(days=60), brands=tagged)]


def test_backtest_counts_per_day_with_samples_and_new_and_lost_against_the_brand(settings, config, tmp_path):
    index_mentions(settings, _mentions())
    conf = settings_file(config, tmp_path / "settings.yaml", brands=[{"name": "Nordbahn", "queries": ["Nordbahn"]}])

    done = cli(conf, "brands", "test", "Nordbahn AND Verspätung*", "--since", "7d", "--brand", "nordbahn", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["total"] == 2  # b1, b2 (possessive); b6 is older than 7 days
    assert len(result["per_day"]) in (7, 8) and sum(n for _, n in result["per_day"]) == 2
    days = dict(result["per_day"])
    assert days[NOW.strftime("%Y-%m-%d")] >= 1 and days[(NOW - timedelta(days=3)).strftime("%Y-%m-%d")] >= 1
    assert {s["mention_id"] for s in result["samples"]} == {m.mention_id for m in _mentions()[:2]}
    assert (result["current_total"], result["new"], result["lost"]) == (3, 0, 1)
    assert [s["text"] for s in result["lost_samples"]] == ["Nordbahn hat eine neue App"]

    text = cli(conf, "brands", "test", "Verspätung*", "--since", "7d", "--brand", "Nordbahn")
    assert text.exit_code == 0, text.output
    assert "matches 3 indexed mention(s)" in text.stdout and "█" in text.stdout
    assert "would add 1 and lose 1" in text.stdout

    bad = cli(conf, "brands", "test", "Nordbahn AND", "--since", "7d")
    assert bad.exit_code == 2 and "at character 13" in bad.stderr and "^" in bad.stderr
    assert "no brand 'Westbahn'" in cli(conf, "brands", "test", "x", "--brand", "Westbahn").stderr


def test_add_set_remove_edit_only_the_brands_block_and_refuse_bad_queries(config, tmp_path, local_stack):
    conf = tmp_path / "settings.yaml"
    head = "# our production settings\nlog_format: text   # humans read these\n"
    tail = "\n# Kafka below\nkafka:\n  bootstrap_servers: " + config["kafka"]["bootstrap_servers"] + "\n"
    conf.write_text(head + "brands:\n  - {name: Nordbahn, queries: [Nordbahn]}\n" + tail)

    added = cli(conf, "brands", "add", "Kaufhafen", "--query", "Kaufhafen OR \"Kauf Hafen\"", "--query", "#kaufhafen")
    assert added.exit_code == 0, added.output
    assert "retag" in added.stdout
    text = conf.read_text()
    assert text.startswith(head) and text.endswith(tail), text
    listed = json.loads(cli(conf, "brands", "list", "--json").stdout)
    assert listed == [{"name": "Nordbahn", "queries": ["Nordbahn"]},
                      {"name": "Kaufhafen", "queries": ['Kaufhafen OR "Kauf Hafen"', "#kaufhafen"]}]

    before = conf.read_text()
    bad = cli(conf, "brands", "set-queries", "Kaufhafen", "--query", "Kaufhafen NEAR Lieferung")
    assert bad.exit_code == 2 and "brand query" in bad.stderr and "^" in bad.stderr
    assert conf.read_text() == before, "a refused query leaves the file alone"
    assert "exists already" in cli(conf, "brands", "add", "kaufhafen", "--query", "x").stderr

    assert cli(conf, "brands", "set-queries", "Nordbahn", "--query", "Nordbahn AND Verspätung*").exit_code == 0
    assert cli(conf, "brands", "remove", "Kaufhafen").exit_code == 0
    assert json.loads(cli(conf, "brands", "list", "--json").stdout) == [
        {"name": "Nordbahn", "queries": ["Nordbahn AND Verspätung*"]}]
    text = conf.read_text()
    assert text.startswith(head) and text.endswith(tail)
    assert "no brand 'Westbahn'" in cli(conf, "brands", "remove", "Westbahn").stderr

    fresh = tmp_path / "new.yaml"  # a settings file that does not exist yet is created
    assert cli(fresh, "brands", "add", "Stromfix", "--query", "Stromfix").exit_code == 0
    assert yaml.safe_load(fresh.read_text()) == {"brands": [{"name": "Stromfix", "queries": ["Stromfix"]}]}


def test_retag_updates_tags_in_place_counts_changes_and_is_idempotent(settings, config, tmp_path):
    client = index_mentions(settings, _mentions())
    brands = [{"name": "Nordbahn", "queries": ["Nordbahn AND Verspätung*"]}, {"name": "Kaufhafen", "queries": ["Kaufhafen"]}]
    conf = settings_file(config, tmp_path / "settings.yaml", brands=brands)

    done = cli(conf, "brands", "retag", "--since", "30d", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    # b3 loses Nordbahn, b4 gains Kaufhafen; b1 and b2 keep Nordbahn, now matched by the new query (brands.query)
    assert report["scanned"] == 5 and report["updated"] == 4
    assert report["added"] == {"Kaufhafen": 1} and report["removed"] == {"Nordbahn": 1}
    assert "re-tagging" in done.stderr
    client.indices.refresh(index=settings.elasticsearch.mentions_index)

    def tags(native_id: str) -> tuple[list, list]:
        (hit,) = client.search(index=settings.elasticsearch.mentions_index,
                               query={"term": {"native_id": native_id}})["hits"]["hits"]
        return hit["_source"]["brand_names"], hit["_source"]["brands"]

    assert tags("b3") == ([], [])
    assert tags("b4") == (["Kaufhafen"], [{"brand": "Kaufhafen", "query": "Kaufhafen"}])
    assert tags("b1") == (["Nordbahn"], [{"brand": "Nordbahn", "query": "Nordbahn AND Verspätung*"}])
    assert tags("b6")[0] == ["Nordbahn"], "outside --since: untouched"
    assert tags("b4")[0] == ["Kaufhafen"] and "text" in client.get(index=client.search(
        index=settings.elasticsearch.mentions_index, query={"term": {"native_id": "b4"}})["hits"]["hits"][0]["_index"],
        id=_mentions()[3].mention_id)["_source"], "an update in place keeps the rest of the document"

    again = json.loads(cli(conf, "brands", "retag", "--since", "30d", "--json").stdout)
    assert again["updated"] == 0 and again["added"] == {} and again["removed"] == {}


def test_retag_update_conflicting_with_a_concurrent_rewrite_is_evaluated_again(settings):
    client: Elasticsearch = index_mentions(settings, _mentions()[:1])
    index = settings.elasticsearch.mentions_index
    clauses, names = _named([("Nordbahn", ["Nordbahn"]), ("Hamburg", ["Hamburg"])], None)

    def read(ids=None):
        query = {"bool": {"filter": [{"ids": {"values": ids}}] if ids else [], "should": clauses, "minimum_should_match": 0}}
        return client.search(index=index, query=query, seq_no_primary_term=True, _source=RETAG_FIELDS)["hits"]["hits"]

    stale = read()
    (hit,) = stale
    # a sink re-delivers the mention between our read and our write
    client.index(index=hit["_index"], id=hit["_id"], document=hit["_source"] | {"brand_names": ["Nordbahn"]}, refresh=True)
    report = RetagReport()
    _update(client, stale, names, list(names), report, read, max_attempts=3)
    assert report.conflicts == 1 and report.updated == 1 and not report.failed
    assert client.get(index=hit["_index"], id=hit["_id"])["_source"]["brand_names"] == ["Hamburg", "Nordbahn"]
