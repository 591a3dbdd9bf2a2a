import json
from datetime import datetime, timezone

import jsonschema
import pytest
from pydantic import ValidationError

from stimmung.schemas import EXPORTED, EnrichedMention, RawMention, mention_id
from stimmung.schemas.export import JSON_DIR, render_all, stale_files


def raw(**kw):
    base = dict(platform="Mastodon", native_id=" 123 ", text="Hallo Welt",
                created_at=datetime(2026, 11, 20, 10, tzinfo=timezone.utc), author={"handle": "@Jana"})
    base.update(kw)
    return RawMention(**base)


def test_mention_id_is_stable_and_depends_only_on_platform_and_native_id():
    a = raw()
    b = raw(text="other text", author={"handle": "someone"})
    assert a.mention_id == b.mention_id == mention_id("mastodon", "123")
    assert raw(native_id="124").mention_id != a.mention_id
    assert raw(platform="bluesky").mention_id != a.mention_id
    assert a.platform == "mastodon" and a.native_id == "123"


def test_json_round_trip_keeps_the_id_and_rejects_a_forged_one():
    m = raw()
    data = json.loads(m.model_dump_json())
    assert data["mention_id"] == m.mention_id
    assert RawMention.model_validate_json(m.model_dump_json()) == m
    data["mention_id"] = mention_id("mastodon", "999")
    with pytest.raises(ValidationError, match="mention_id does not match"):
        RawMention.model_validate(data)


@pytest.mark.parametrize("field,value,message", [
    ("text", "   ", "text is blank"),
    ("platform", "Mast odon!", "platform must be"),
    ("created_at", datetime(2026, 11, 20, 10), "timezone"),
])
def test_invalid_mentions_name_the_problem(field, value, message):
    with pytest.raises(ValidationError, match=message):
        raw(**{field: value})


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError, match="Extra inputs"):
        raw(surprise=1)


def test_enriched_mention_cannot_carry_a_handle():
    fields = set(EnrichedMention.model_fields) | set(EnrichedMention.model_computed_fields)
    assert "raw" not in fields
    author_fields = set(EnrichedMention.model_fields["author"].annotation.__args__[0].model_fields)
    # no handle, no display name; a CRM contact id only under consent (tests/integration/test_crm.py)
    assert author_fields == {"pseudonym", "follower_count", "contact_id", "influence", "linked_url"}


def test_committed_json_schemas_match_the_models():
    assert stale_files() == [], "run `stimmung schemas export` and commit schemas/json"
    assert {f"{n}.schema.json" for n in EXPORTED} == {p.name for p in JSON_DIR.glob("*.schema.json")}


def test_exported_schema_validates_a_real_message():
    schema = json.loads(render_all()["raw_mention.schema.json"])
    jsonschema.validate(json.loads(raw().model_dump_json()), schema)
    bad = json.loads(raw().model_dump_json())
    del bad["text"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_alerting_dead_letter_is_a_valid_stage_and_round_trips():
    from stimmung.schemas.deadletter import DeadLetter

    letter = DeadLetter(stage="alerting", reason="Elasticsearch refused the alert: mapper_parsing_exception",
                        error_type="index", source="t.alerts", payload='{"alert": 1}')
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again.stage == "alerting" and again == letter
