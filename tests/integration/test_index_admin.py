"""Index layout, retention, search and erasure against the real Elasticsearch node."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import prison
import yaml
from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.pipeline.elastic.indices import enforce_retention, ensure_indices, ensure_period_index
from stimmung.pipeline.elastic.mentions import TEMPLATE_VERSION
from stimmung.pipeline.enrich import InMessage
from stimmung.pipeline.sink import BulkWriter, prepare
from stimmung.schemas import EnrichedMention
from stimmung.schemas.pseudonym import Pseudonymizer

from .conftest import PSEUDONYM_KEY, Roles, wait_for

NOW = datetime.now(timezone.utc)


def mention(native_id: str, text: str, *, created_at: datetime = NOW, language: str = "de", handle: str = "anna",
            platform: str = "mastodon", sentiment: str = "negative", **kw) -> EnrichedMention:
    return EnrichedMention(
        platform=platform, native_id=native_id, text=text, created_at=created_at, language=language,
        language_confidence=0.99, language_source="model",
        author={"pseudonym": Pseudonymizer(PSEUDONYM_KEY).pseudonym(platform, handle), "follower_count": 10},
        sentiment={"label": sentiment, "score": 0.9,
                   "probabilities": {"negative": 0.9 if sentiment == "negative" else 0.05, "neutral": 0.05,
                                     "positive": 0.9 if sentiment == "positive" else 0.05}} if sentiment else None,
        **kw)


def write(client: Elasticsearch, settings, mentions: list[EnrichedMention]) -> int:
    setup = ensure_indices(client, settings.elasticsearch)
    messages = [InMessage("enriched", 0, n, m.mention_id.encode(), m.model_dump_json().encode())
                for n, m in enumerate(mentions)]
    prepared = prepare(messages, setup.layout)
    indexed, letters = BulkWriter(client, setup.layout, setup.ilm).write(prepared.docs)
    assert letters == []
    client.indices.refresh(index=settings.elasticsearch.mentions_index)
    return indexed


def test_templates_are_composable_versioned_idempotent_and_mentions_land_in_their_period_index(settings, caplog):
    client = Elasticsearch(settings.elasticsearch.url)
    es = settings.elasticsearch
    with caplog.at_level(logging.WARNING, logger="stimmung.pipeline.elastic.indices"):
        first = ensure_indices(client, es)
        ensure_indices(client, es)  # idempotent
    assert not first.ilm and any("no index lifecycle management" in r.getMessage() for r in caplog.records)
    template = client.indices.get_index_template(name=first.layout.template)["index_templates"][0]["index_template"]
    assert template["version"] == TEMPLATE_VERSION
    assert template["composed_of"] == [f"{first.layout.template}-settings", f"{first.layout.template}-mappings"]
    assert template["index_patterns"] == [f"{es.mentions_index}-v{TEMPLATE_VERSION}-*"]

    november = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
    october = datetime(2026, 10, 2, 9, tzinfo=timezone.utc)
    batch = [mention("n1", "Verspätung", created_at=november), mention("o1", "Ausfall", created_at=october)]
    assert write(client, settings, batch) == 2
    assert write(client, settings, batch) == 2  # a re-delivery overwrites: still two documents
    assert client.count(index=es.mentions_index)["count"] == 2
    names = sorted(client.indices.get_alias(name=es.mentions_index))
    assert names == [f"{es.mentions_index}-v{TEMPLATE_VERSION}-2026.10", f"{es.mentions_index}-v{TEMPLATE_VERSION}-2026.11"]
    mapping = client.indices.get_mapping(index=names[1])[names[1]]["mappings"]
    assert mapping["dynamic"] == "strict" and mapping["_meta"]["template_version"] == TEMPLATE_VERSION
    # the alerts and erasure indices exist with their strict mappings
    for index in (es.alerts_index, es.erasures_index):
        assert client.indices.get_mapping(index=index)[index]["mappings"]["dynamic"] == "strict"


def test_retention_deletes_whole_periods_only_once_they_are_older_than_the_retention(settings):
    client = Elasticsearch(settings.elasticsearch.url)
    es = settings.elasticsearch.model_copy(update={"retention_days": 30, "index_period": "day"})
    setup = ensure_indices(client, es)
    now = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    old, edge, fresh = (setup.layout.index_for(now - timedelta(days=d)) for d in (40, 30, 3))
    for name in (old, edge, fresh):
        ensure_period_index(client, setup.layout, name, setup.ilm)
    # 'edge' covers 2026-10-24; it ends 2026-10-25 00:00, less than 30 days before `now`: kept
    assert enforce_retention(client, es, now=now) == [old]
    assert not client.indices.exists(index=old) and client.indices.exists(index=edge) and client.indices.exists(index=fresh)
    # and the sink refuses to bring expired mentions back
    stale = InMessage("enriched", 0, 0, b"k", mention("s1", "alt", created_at=now - timedelta(days=45)).model_dump_json().encode())
    prepared = prepare([stale], setup.layout, not_before=now - timedelta(days=30))
    assert prepared.docs == [] and prepared.skipped == {"retention": 1}


def _cli(config_file, *args: str, env_key: bool = True) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STIMMUNG_")}
    env["COLUMNS"] = "200"  # the table's width when stdout is not a terminal
    if env_key:
        env["STIMMUNG_PRIVACY__PSEUDONYM_KEY"] = PSEUDONYM_KEY
    return subprocess.run([sys.executable, "-m", "stimmung.cli", "--config", str(config_file), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_search_command_brand_query_facets_table_json_and_discover_link(settings, config, tmp_path):
    client = Elasticsearch(settings.elasticsearch.url)
    write(client, settings, [
        mention("s1", "Die NORDBAHN hat schon wieder Verspätungen, Café am Bahnhof zu", handle="anna"),
        mention("s2", "Nordbahn: der Zug fällt aus", handle="ben"),
        mention("s3", "Nordbahn ist heute pünktlich, danke", handle="ben", sentiment="positive"),
        mention("s4", "Nordbahn refund took forever, awful", language="en", handle="cem"),
        mention("s5", "Verspätung bei der Südbahn", handle="anna"),
        mention("s6", "Nordbahn Verspätung letzte Woche", handle="anna", created_at=NOW - timedelta(days=8)),
    ])
    config_file = tmp_path / "cli.yaml"
    config_file.write_text(yaml.safe_dump({**config, "kibana": {"url": "http://kibana.local:5601"}}))

    def ids(*args: str) -> list[str]:
        done = _cli(config_file, "search", *args, "--json")
        assert done.returncode == 0, done.stderr
        return sorted(m["mention_id"] for m in json.loads(done.stdout)["mentions"])

    want = lambda *natives: sorted(mention(n, "x").mention_id for n in natives)  # noqa: E731
    # case- and accent-insensitive, wildcard, phrase; the 8-day-old one is outside --since 7d
    assert ids('nordbahn AND (verspatung* OR "zug fallt aus")', "--since", "7d") == want("s1", "s2")
    assert ids('nordbahn AND (verspatung* OR "zug fallt aus")', "--since", "30d") == want("s1", "s2", "s6")
    assert ids("cafe", "--since", "1d") == want("s1")
    assert ids("nordbahn NEAR/1 forever", "--since", "1d") == []
    assert ids("refund NEAR/1 forever", "--since", "1d") == want("s4")
    assert ids("nordbahn", "--sentiment", "negative", "--lang", "de", "--since", "1d") == want("s1", "s2")
    assert ids("nordbahn NOT lang:de", "--since", "1d") == want("s4")
    assert ids("author:@Anna", "--since", "30d") == want("s1", "s5", "s6")  # via the pseudonym

    done = _cli(config_file, "search", "nordbahn", "--since", "1d", "--sentiment", "negative", "--json")
    out = json.loads(done.stdout)
    assert out["total"] == 3 and out["sentiment"] == {"negative": 3}
    url = out["discover_url"]
    assert url.startswith("http://kibana.local:5601/app/discover#/?_g=")
    state = prison.loads(unquote(url.split("&_a=")[1]))
    assert state["query"] == {"language": "kuery", "query": '(sentiment.label:"negative")'}
    assert state["filters"][0]["meta"]["alias"] == "nordbahn"
    # the link's filter is the very query the command ran: Elasticsearch finds the same documents
    link_query = {"bool": {"filter": [state["filters"][0]["query"], {"term": {"sentiment.label": "negative"}},
                                      {"range": {"@timestamp": {"gte": prison.loads(unquote(url.split("_g=")[1].split("&")[0]))["time"]["from"]}}}]}}
    hits = client.search(index=settings.elasticsearch.mentions_index, query=link_query)["hits"]["total"]["value"]
    assert hits == 3

    table = _cli(config_file, "search", "nordbahn", "--since", "1d")
    assert table.returncode == 0 and "Verspätungen" in table.stdout and "Kibana: http://kibana.local" in table.stdout
    bad = _cli(config_file, "search", "nordbahn AND", "--since", "1d")
    assert bad.returncode == 2 and "ends too early" in bad.stderr and "^" in bad.stderr


def test_erasure_removes_every_mention_of_the_author_and_survives_a_replay(settings, config, roles, tmp_path):
    ensure_topics(settings.kafka)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    mentions = [mention(f"e{n}", f"Nordbahn Ärger Nummer {n}", handle="Mausi007", platform=platform)
                for n, platform in enumerate(["mastodon", "bluesky", "mastodon"])]
    others = [mention(f"k{n}", f"Nordbahn Lob {n}", handle="keeper") for n in range(3)]

    def send(batch):
        for m in batch:
            producer.send(settings.kafka.topics.enriched, key=m.mention_id.encode(), value=m.model_dump_json().encode())
        producer.flush()

    send(mentions + others)
    roles.start("sink")
    client = Elasticsearch(settings.elasticsearch.url)
    index = settings.elasticsearch.mentions_index

    def count(query=None) -> int:  # the alias exists once the first mention is indexed
        client.indices.refresh(index=index, ignore_unavailable=True)
        return client.count(index=index, query=query or {"match_all": {}}, ignore_unavailable=True)["count"]

    wait_for(lambda: count() == 6, timeout=120, check=roles.check_alive, message="six mentions indexed")
    # the same handle on two platforms may be two people: the command names both and asks which
    ambiguous = _cli(roles.config_file, "erase", "--author", "@mausi007", "--yes")
    assert ambiguous.returncode == 2 and "2 platforms" in ambiguous.stderr
    assert "bluesky: 1 mention(s)" in ambiguous.stderr and "mastodon: 2 mention(s)" in ambiguous.stderr
    # a handle nobody used (or another pseudonym key) finds nothing: an error, not "deleted: 0"
    unknown = _cli(roles.config_file, "erase", "--author", "@nobody_here", "--yes")
    assert unknown.returncode == 3 and "nothing to erase" in unknown.stderr
    assert count() == 6, "nothing was erased by the refused calls"
    done = _cli(roles.config_file, "erase", "--author", "@mausi007", "--all-platforms", "--yes",
                "--requested-by", "ticket-42")
    assert done.returncode == 0, done.stderr
    assert "mastodon psn_" in done.stderr and ": 2 mention(s), 0 case(s)" in done.stderr
    result = json.loads(done.stdout)
    assert result["deleted"] == 3 and result["method"] == "search+bulk"  # this node has no _delete_by_query
    assert "mausi" not in done.stderr.lower(), "the handle is not logged"
    pseudonyms = {m.author.pseudonym for m in mentions}
    assert set(result["pseudonyms"]) == pseudonyms
    assert count() == 3 and count({"terms": {"author.pseudonym": sorted(pseudonyms)}}) == 0
    records = client.search(index=settings.elasticsearch.erasures_index)["hits"]["hits"]
    assert {r["_source"]["pseudonym"] for r in records} == pseudonyms
    assert "mausi" not in json.dumps(records).lower(), "the erasure record keeps the pseudonym, not the handle"

    # A replay: the same mentions arrive again, and a second sink (new consumer group) re-reads the
    # whole topic from the start. Neither brings the erased author back.
    send(mentions + [mention("k9", "Nordbahn Lob neu", handle="keeper")])
    wait_for(lambda: count() == 4, timeout=60, check=roles.check_alive, message="the new mention indexed")
    replay_config = {**config, "pipeline": {**config["pipeline"], "app_id": config["pipeline"]["app_id"] + "-replay"}}
    (tmp_path / "replay").mkdir()
    replay = Roles(replay_config, tmp_path / "replay")
    replay.start("sink")
    try:
        from .test_end_to_end import _lag

        wait_for(lambda: _lag(settings, replay_config["pipeline"]["app_id"] + "-sink", settings.kafka.topics.enriched) == 0,
                 timeout=120, check=replay.check_alive, message="the replaying sink read the whole topic")
    finally:
        replay.stop()
    assert count() == 4 and count({"terms": {"author.pseudonym": sorted(pseudonyms)}}) == 0
    assert '"skipped": {"erased": ' in replay.log("sink") or "'erased'" in replay.log("sink")


def test_a_concrete_index_in_the_aliases_place_is_a_clear_error(settings):
    import pytest

    from stimmung.config import ConfigError

    client = Elasticsearch(settings.elasticsearch.url)
    client.indices.create(index=settings.elasticsearch.mentions_index)
    with pytest.raises(ConfigError, match="is a concrete index"):
        ensure_indices(client, settings.elasticsearch)


def test_a_privacy_signal_from_a_source_erases_that_authors_mentions(settings):
    import threading

    from stimmung.pipeline.privacy_signals import PrivacySignalWorker

    ensure_topics(settings.kafka)
    client = Elasticsearch(settings.elasticsearch.url)
    write(client, settings, [mention("g1", "Nordbahn ist toll", handle="did:plc:gone", platform="bluesky"),
                             mention("g2", "Nordbahn ist toll", handle="did:plc:stays", platform="bluesky")])
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    producer.send(settings.kafka.topics.privacy, key=b"did:plc:gone", value=json.dumps(
        {"platform": "bluesky", "handle": "did:plc:gone", "status": "deleted", "at": "1"}).encode())
    producer.send(settings.kafka.topics.privacy, key=b"x", value=b"not json")  # ignored, not fatal
    producer.flush()
    worker = PrivacySignalWorker(settings, sweep_after_s=0.1)
    thread = threading.Thread(target=worker.run, kwargs={"until": lambda: worker.erased >= 1}, daemon=True)
    thread.start()
    thread.join(120)
    assert worker.erased == 1
    client.indices.refresh(index=settings.elasticsearch.mentions_index)
    left = [h["_source"]["native_id"] for h in client.search(index=settings.elasticsearch.mentions_index)["hits"]["hits"]]
    assert left == ["g2"]
    gone = Pseudonymizer(PSEUDONYM_KEY).pseudonym("bluesky", "did:plc:gone")
    record = client.get(index=settings.elasticsearch.erasures_index, id=gone)["_source"]
    assert record["reason"] == "account deleted" and record["requested_by"] == "bluesky:account-event"


def test_setup_command_prepares_topics_templates_and_kibana_idempotently(settings, config, tmp_path):
    """What the Helm hook Job runs: safe to run on every install and upgrade."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from stimmung.kafka import admin_client

    imported = []

    class Kibana(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            imported.append((self.path, body.count(b'"type"')))
            data = json.dumps({"success": True, "successCount": 14}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Kibana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config_file = tmp_path / "settings.yaml"
    config_file.write_text(yaml.safe_dump({**config, "kibana": {"url": f"http://127.0.0.1:{server.server_address[1]}"}}))
    first = _cli(config_file, "setup")
    assert first.returncode == 0, first.stderr
    from stimmung.kafka import topic_specs

    assert f"{len(topic_specs(settings.kafka))} topics created" in first.stderr
    assert "templates v" in first.stderr and "saved objects imported" in first.stderr
    second = _cli(config_file, "setup", "--no-kibana")
    assert second.returncode == 0 and "all existed" in second.stderr, second.stderr
    assert len(imported) == 1 and imported[0][0] == "/api/saved_objects/_import?overwrite=true"
    server.shutdown()
    admin = admin_client(settings.kafka)
    topics = settings.kafka.topics
    assert {topics.raw, topics.enriched, topics.deadletter, topics.alerts, topics.privacy, topics.consent,
            topics.influence} <= set(admin.list_topics())
    admin.close()
    client = Elasticsearch(settings.elasticsearch.url)
    from stimmung.pipeline.elastic.mentions import IndexLayout

    assert client.indices.exists_index_template(name=IndexLayout.from_settings(settings.elasticsearch).template)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**config, "elasticsearch": {**config["elasticsearch"], "url": "http://127.0.0.1:9"}}))
    failed = _cli(bad, "setup", "--wait", "3")
    assert failed.returncode == 1 and "not reachable at http://127.0.0.1:9" in failed.stderr


def test_migrate_indices_moves_older_versions_into_the_current_one_once(settings, config, tmp_path, caplog):
    """After a template-version bump, a replay would show a mention twice through the alias (old and
    new version); `stimmung migrate-indices` copies the old documents over (a newer copy wins) and
    deletes the old index — and keeps an old index whose documents it cannot read."""
    from stimmung.pipeline.elastic.mentions import IndexLayout, to_document
    from stimmung.pipeline.elastic.migration import migrate_older_versions

    client = Elasticsearch(settings.elasticsearch.url)
    es = settings.elasticsearch
    layout = IndexLayout.from_settings(es)
    old_version = TEMPLATE_VERSION - 1
    only_old = mention("mig-1", "Nur im alten Index: Verspätung", created_at=NOW - timedelta(days=40))
    both = mention("mig-2", "alte Fassung")
    old_index = f"{layout.alias}-v{old_version}-{layout.period_key(NOW)}"
    older_period = f"{layout.alias}-v{old_version}-{layout.period_key(only_old.created_at)}"
    for index in {old_index, older_period}:
        client.indices.create(index=index, aliases={layout.alias: {}})
    client.index(index=older_period, id=only_old.mention_id, document=to_document(only_old))
    client.index(index=old_index, id=both.mention_id, document=to_document(both))
    newer = both.model_copy(update={"text": "neue Fassung"})
    write(client, settings, [newer])  # the replay into the current version
    client.indices.refresh(index=layout.alias)
    assert client.count(index=layout.alias, query={"ids": {"values": [both.mention_id]}})["count"] == 2  # the problem
    with caplog.at_level(logging.WARNING, logger="stimmung.pipeline.elastic.indices"):
        ensure_indices(client, es)  # what the sink does at start: it tells the operator
    assert any("stimmung migrate-indices" in r.getMessage() for r in caplog.records)

    config_file = tmp_path / "settings.yaml"
    config_file.write_text(yaml.safe_dump(config))
    run = _cli(config_file, "migrate-indices")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"indices": sorted({old_index, older_period}), "copied": 1, "kept_newer": 1,
                                      "failed": 0}
    for index in (old_index, older_period):
        assert not client.indices.exists(index=index)
    hits = client.search(index=layout.alias, query={"ids": {"values": [both.mention_id, only_old.mention_id]}})["hits"]["hits"]
    assert sorted((h["_index"], h["_source"]["text"]) for h in hits) == sorted([
        (layout.index_for(NOW), "neue Fassung"), (layout.index_for(only_old.created_at), only_old.text)])
    migrated = next(h["_source"] for h in hits if h["_id"] == only_old.mention_id)
    assert migrated["text_de"] == only_old.text and migrated["@timestamp"] == migrated["created_at"]

    # a document that is not a mention any more: reported, and its index is kept
    broken = f"{layout.alias}-v{old_version}-1999.01"
    client.indices.create(index=broken, aliases={layout.alias: {}})
    client.index(index=broken, id="x", document={"text": "no platform, no ids"}, refresh=True)
    report = migrate_older_versions(client, es)
    assert (report.indices, report.copied, report.failed) == ([broken], 0, 1)
    assert client.indices.exists(index=broken)
    failing = _cli(config_file, "migrate-indices")
    assert failing.returncode != 0 and "could not be migrated" in failing.stderr
    client.indices.delete(index=broken)
