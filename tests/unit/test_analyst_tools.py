"""Pure logic of the analyst tools: the brands-block editor, search output, dead-letter records, training examples.
(Everything that talks to Kafka or Elasticsearch is tested against the real stack in tests/integration.)"""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest
import yaml
from rich.console import Console

from stimmung.brandquery import BrandQueryError
from stimmung.brands_file import BrandsFileError, add_brand, replace_brands_block, set_queries
from stimmung.pipeline.deadletters import DeadLetterError, StoredLetter, parse_id
from stimmung.pipeline.elastic.corrections import example_for
from stimmung.pipeline.elastic.search import SearchResult
from stimmung.tables import display_zone, export_row, parse_fields, search_table

FILE = """# settings
kafka:
  bootstrap_servers: kafka:9092   # prod
brands:
  - name: Nordbahn   # the railway
    queries: [Nordbahn]

# models below
models: {sentiment: builtin}
"""


def test_the_brands_block_is_replaced_and_everything_else_kept_verbatim():
    new = replace_brands_block(FILE, [{"name": "Kaufhafen", "queries": ["Kaufhafen"]}])
    assert new.startswith("# settings\nkafka:\n  bootstrap_servers: kafka:9092   # prod\n")
    assert new.endswith("\n# models below\nmodels: {sentiment: builtin}\n")
    assert yaml.safe_load(new)["brands"] == [{"name": "Kaufhafen", "queries": ["Kaufhafen"]}]
    flow = "brands: [{name: A, queries: [a]}]\nlog_format: text\n"
    assert yaml.safe_load(replace_brands_block(flow, [])) == {"brands": [], "log_format": "text"}
    assert replace_brands_block("log_format: text", [{"name": "A", "queries": ["a"]}]).startswith("log_format: text\nbrands:")


def test_add_and_set_queries_refuse_bad_queries_before_writing(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(FILE)
    with pytest.raises(BrandQueryError) as err:
        add_brand(path, "Kaufhafen", ["Kaufhafen AND"])
    assert err.value.position == 13 and path.read_text() == FILE
    with pytest.raises(BrandsFileError, match="no brand 'Westbahn'"):
        set_queries(path, "Westbahn", ["x"])
    add_brand(path, "Kaufhafen", ['"Kauf Hafen"'])
    assert [b["name"] for b in yaml.safe_load(path.read_text())["brands"]] == ["Nordbahn", "Kaufhafen"]


HIT = {"@timestamp": "2026-07-01T09:15:30+02:00", "mention_id": "m1", "platform": "mastodon", "language": "de",
       "sentiment": {"label": "negative", "score": 0.91}, "topic_labels": ["complaint", "delivery"],
       "brand_names": ["Nordbahn"], "author": {"pseudonym": "psn_" + "a" * 32, "follower_count": 12},
       "text": "Nordbahn: schon wieder 40 Minuten Verspätung zwischen Hamburg und Lübeck, und keine Durchsage."}


def test_the_table_shows_utc_and_fits_80_columns_and_the_zone_is_selectable():
    out = io.StringIO()
    Console(file=out, width=80).print(search_table(SearchResult(1, [HIT], {}, None), "Nordbahn", display_zone("UTC"), 80))
    text = out.getvalue()
    assert "2026-07-01 07:15" in text and "09:15" not in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert export_row(HIT, display_zone("Europe/Berlin"))["time"] == "2026-07-01T09:15:30+02:00"
    assert export_row(HIT, display_zone("UTC"))["time"] == "2026-07-01T07:15:30+00:00"
    assert export_row(HIT, timezone.utc)["topics"] == "complaint|delivery"
    with pytest.raises(ValueError, match="not a time zone"):
        display_zone("Berlin")
    with pytest.raises(ValueError, match="unknown bogus"):
        parse_fields("time,bogus")


def test_dead_letter_ids_filters_and_payloads():
    assert parse_id(" 2:17 ") == (2, 17)
    with pytest.raises(DeadLetterError):
        parse_id("17")
    when = datetime(2026, 7, 1, tzinfo=timezone.utc)
    letter = StoredLetter(1, 4, {"stage": "sink", "reason": "failed to parse field [x]", "error_type": "mapper_parsing_exception",
                                 "source": "stimmung.mentions.enriched", "partition": 0, "offset": 9,
                                 "payload": "base64:/w==", "failed_at": "2026-07-01T10:00:00Z"}, when)
    assert letter.id == "1:4" and letter.source_position == "stimmung.mentions.enriched[0]@9"
    assert letter.original_bytes() == b"\xff"
    assert letter.matches("sink", "MAPPER_PARSING_EXCEPTION", None) and letter.matches(None, "parse field", None)
    assert not letter.matches("enrich", None, None)
    assert not letter.matches(None, None, datetime(2026, 7, 2, tzinfo=timezone.utc))


def test_a_training_example_applies_the_corrections_to_the_models_labels():
    mention = {"mention_id": "m1", "language": "de", "text": "Danke!", "topic_labels": ["complaint", "customer_service"]}
    corrections = [{"field": "topic", "label": "complaint", "value": "false", "corrected_by": "alice"},
                   {"field": "topic", "label": "praise", "value": "true", "corrected_by": "alice"},
                   {"field": "sentiment", "label": None, "value": "positive", "corrected_by": "bob"},
                   {"field": "note", "label": None, "value": None, "corrected_by": "carol"}]
    example = example_for(mention, corrections)
    assert example == {"id": "m1", "lang": "de", "text": "Danke!", "topics": ["customer_service", "praise"],
                       "sentiment": "positive", "source": "analyst-correction",
                       "corrected": ["sentiment", "topic:complaint", "topic:praise"], "corrected_by": ["alice", "bob"]}
    assert example_for(mention, corrections[3:]) is None  # a note alone is no label
