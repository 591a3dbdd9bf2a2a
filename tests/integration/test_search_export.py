"""`stimmung search` output on the real node: the time column in UTC (or --tz), a table that fits 80
columns, CSV/JSON/NDJSON exports to a file relative to the caller, and exports past one page."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from stimmung.pipeline.elastic.search import PAGE_SIZE

from .indexing import cli, enriched, index_mentions, settings_file

BERLIN_SUMMER = timezone(timedelta(hours=2))  # a post stamped in the author's local time


def test_times_are_utc_or_the_display_zone_and_the_table_fits_80_columns(settings, config, tmp_path, monkeypatch):
    posted = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(second=0, microsecond=0).astimezone(BERLIN_SUMMER)
    m = enriched("t1", "Kaufhafen's app keeps crashing when I try to pay, third time this week. Anyone else having this?",
                 posted, language="en", topics=("complaint", "app_website"))
    index_mentions(settings, [m])
    conf = settings_file(config, tmp_path / "settings.yaml")

    narrow = cli(conf, "search", "Kaufhafen", env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    utc = posted.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    local = posted.strftime("%Y-%m-%d %H:%M")
    assert "time (UTC)" in narrow.stdout and utc in narrow.stdout and local not in narrow.stdout
    assert "…" not in narrow.stdout, narrow.stdout
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines()), narrow.stdout
    assert "crashing" in narrow.stdout and "Anyone else" in narrow.stdout  # wrapped, not cut

    wide = cli(conf, "search", "Kaufhafen", "--wide", "--tz", "Europe/Berlin", env={"COLUMNS": "80"})
    assert wide.exit_code == 0, wide.output
    assert "time (Europe/Berlin)" in wide.stdout
    assert posted.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M") in wide.stdout
    assert "complaint, app_website" in wide.stdout and "…" not in wide.stdout

    bad = cli(conf, "search", "Kaufhafen", "--tz", "Mars/Olympus")
    assert bad.exit_code == 2 and "not a time zone" in bad.stderr


def test_csv_json_and_ndjson_exports_to_a_file_relative_to_the_caller(settings, config, tmp_path, monkeypatch):
    now = datetime.now(timezone.utc).astimezone(BERLIN_SUMMER)
    mentions = [enriched(f"e{i}", f"Nordbahn Verspätung Nummer {i}, \"schon wieder\"; heute", now - timedelta(minutes=i))
                for i in range(5)]
    index_mentions(settings, mentions)
    conf = settings_file(config, tmp_path / "settings.yaml")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    done = cli(conf, "search", "Nordbahn", "--format", "csv", "--fields", "time,mention_id,sentiment,text",
               "--tz", "UTC", "--out", "export.csv")
    assert done.exit_code == 0, done.output
    assert "wrote 5 of 5" in done.stderr
    rows = list(csv.DictReader((work / "export.csv").open(encoding="utf-8")))
    assert [list(r) for r in rows[:1]] == [["time", "mention_id", "sentiment", "text"]]
    assert {r["mention_id"] for r in rows} == {m.mention_id for m in mentions}
    assert rows[0]["text"] == mentions[0].text  # quotes, commas and semicolons survive
    assert rows[0]["time"] == mentions[0].created_at.astimezone(timezone.utc).isoformat()

    as_json = cli(conf, "search", "Nordbahn", "--json")
    as_format = cli(conf, "search", "Nordbahn", "--format", "json")
    assert as_json.exit_code == as_format.exit_code == 0
    assert json.loads(as_json.stdout)["total"] == json.loads(as_format.stdout)["total"] == 5
    assert {h["mention_id"] for h in json.loads(as_json.stdout)["mentions"]} == {m.mention_id for m in mentions}

    nd = cli(conf, "search", "Nordbahn", "--format", "ndjson", "--out", "sub.ndjson", "--limit", "3")
    assert nd.exit_code == 0, nd.output
    lines = (work / "sub.ndjson").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["mention_id"] for line in lines] == [m.mention_id for m in mentions[:3]]  # newest first

    wrong = cli(conf, "search", "Nordbahn", "--format", "csv", "--fields", "time,nonsense")
    assert wrong.exit_code == 2 and "unknown nonsense" in wrong.stderr and "sentiment_score" in wrong.stderr
    assert cli(conf, "search", "Nordbahn", "--json", "--format", "csv").exit_code == 2


def test_an_export_past_one_page_is_paged_completely_with_progress(settings, config, tmp_path):
    start = datetime.now(timezone.utc) - timedelta(hours=5)
    count = 2 * PAGE_SIZE + 345
    # many share a timestamp: paging must not skip or repeat ties at a page border
    mentions = [enriched(f"bulk{i}", f"Stromfix Abschlag {i}", start + timedelta(seconds=i // 7)) for i in range(count)]
    index_mentions(settings, mentions)
    conf = settings_file(config, tmp_path / "settings.yaml")
    out = tmp_path / "all.ndjson"

    done = cli(conf, "search", "Stromfix", "--all", "--format", "ndjson", "--out", str(out))
    assert done.exit_code == 0, done.output
    ids = [json.loads(line)["mention_id"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(ids) == count and set(ids) == {m.mention_id for m in mentions}
    assert "exporting" in done.stderr and f"wrote {count} of {count}" in done.stderr

    limited = cli(conf, "search", "Stromfix", "--limit", str(PAGE_SIZE + 10), "--format", "csv", "--fields", "mention_id")
    assert limited.exit_code == 0
    assert len(limited.stdout.splitlines()) == 1 + PAGE_SIZE + 10


def test_min_relevance_keeps_posts_about_a_brand_and_those_nothing_judged(settings, config, tmp_path):
    now = datetime.now(timezone.utc)
    about = enriched("r1", "Relevanzbahn: mein Zug fällt schon wieder aus", now).model_copy(update={"relevance": 0.93})
    aside = enriched("r2", "Messe Berlin: Relevanzbahn fährt Sonderzüge zur Messe", now).model_copy(update={"relevance": 0.12})
    unjudged = enriched("r3", "Relevanzbahn, wo bleibt mein Zug?", now)  # heads off: no relevance
    index_mentions(settings, [about, aside, unjudged])
    conf = settings_file(config, tmp_path / "settings.yaml", kibana={"url": "http://kibana.example:5601"})

    def found(*option: str) -> set[str]:
        done = cli(conf, "search", "Relevanzbahn", "--json", *option)
        assert done.exit_code == 0, done.output
        return {h["mention_id"] for h in json.loads(done.stdout)["mentions"]}

    assert found() == {about.mention_id, aside.mention_id, unjudged.mention_id}
    assert found("--min-relevance", "0.5") == {about.mention_id, unjudged.mention_id}, "the aside goes, the unjudged stays"
    assert found("--min-relevance", "0.95") == {unjudged.mention_id}
    link = json.loads(cli(conf, "search", "Relevanzbahn", "--json", "--min-relevance", "0.5").stdout)["discover_url"]
    assert "relevance >= 0.5 or not relevance:*" in unquote(link)
    assert cli(conf, "search", "Relevanzbahn", "--min-relevance", "1.5").exit_code == 2


def test_csv_columns_carry_engagement_influence_and_the_trained_heads_figures(settings, config, tmp_path):
    from stimmung.schemas.mention import ComplaintResult, Engagement, PseudonymousAuthor

    m = enriched("c1", "Spaltenbahn: Erstattung seit Wochen offen", datetime.now(timezone.utc)).model_copy(update={
        "engagement": Engagement(likes=7, shares=2, replies=3),
        "author": PseudonymousAuthor(pseudonym="p" * 16, follower_count=120, influence=42.5),
        "relevance": 0.875, "complaint": ComplaintResult(label="complaint", probability=0.75)})
    index_mentions(settings, [m])
    conf = settings_file(config, tmp_path / "settings.yaml")
    out = tmp_path / "columns.csv"
    done = cli(conf, "search", "Spaltenbahn", "--format", "csv", "--out", str(out), "--fields",
               "mention_id,followers,influence,likes,shares,replies,relevance,complaint,complaint_probability")
    assert done.exit_code == 0, done.output
    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    assert row == {"mention_id": m.mention_id, "followers": "120", "influence": "42.5", "likes": "7", "shares": "2",
                   "replies": "3", "relevance": "0.875", "complaint": "complaint", "complaint_probability": "0.75"}
    default = cli(conf, "search", "Spaltenbahn", "--format", "csv")
    assert default.stdout.splitlines()[0].endswith("replies,url,text"), "the heads' columns only on request"
