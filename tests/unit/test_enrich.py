import json
from datetime import datetime, timezone

import pytest

from stimmung.models import Enricher
from stimmung.models.language import LanguageAnnotator
from stimmung.pipeline.enrich import InMessage, MentionEnrichment, url_names_author
from stimmung.schemas import RawMention
from stimmung.schemas.pseudonym import Pseudonymizer


@pytest.fixture(scope="module")
def processing():
    return MentionEnrichment(Enricher([LanguageAnnotator()]), Pseudonymizer("unit-test-key-0123456789"))


def message(value, offset=0):
    return InMessage("raw", 0, offset, b"k", value)


def raw_bytes(native_id="1", text="Meine Bestellung ist nach zwei Wochen immer noch nicht angekommen.", handle="@Jana"):
    return RawMention(platform="bluesky", native_id=native_id, text=text, created_at=datetime(2026, 11, 20, tzinfo=timezone.utc),
                      author={"handle": handle, "display_name": "Jana K.", "follower_count": 5},
                      raw={"did": "did:plc:jana", "handle": handle}).model_dump_json().encode()


def test_enriches_and_pseudonymises(processing):
    enriched, letters = processing.process([message(raw_bytes())])
    assert letters == []
    (m,) = enriched
    assert m.language == "de" and m.model_versions["language"].startswith("py3langid")
    assert m.author.pseudonym == Pseudonymizer("unit-test-key-0123456789").pseudonym("bluesky", "jana")
    assert m.author.follower_count == 5
    dumped = m.model_dump_json()
    assert "Jana" not in dumped and "jana" not in dumped and "did:plc" not in dumped


def test_malformed_messages_become_dead_letters_and_the_rest_flows(processing):
    missing_text = json.loads(raw_bytes(native_id="2"))
    del missing_text["text"]
    batch = [message(raw_bytes(native_id="1"), 10), message(b"{oops", 11), message(json.dumps(missing_text).encode(), 12),
             message(None, 13), message(b"\xff\xfe", 14)]
    enriched, letters = processing.process(batch)
    assert [m.native_id for m in enriched] == ["1"]
    by_offset = {l.offset: l for l in letters}
    assert by_offset[11].error_type == "json"
    assert by_offset[12].error_type == "validation" and "text" in by_offset[12].reason
    assert by_offset[13].error_type == "empty"
    assert by_offset[14].payload.startswith("base64:")
    assert all(l.stage == "enrich" and l.source == "raw" for l in letters)


def test_duplicates_in_a_batch_are_enriched_once(processing):
    enriched, _ = processing.process([message(raw_bytes(native_id="7"), i) for i in range(3)])
    assert len(enriched) == 1


def test_brand_queries_tag_mentions_using_language_and_handle_before_pseudonymisation():
    from stimmung.brandquery import BrandTagger

    tagger = BrandTagger([("Kaufhafen", ["Kaufhafen AND (Bestellung OR Lieferung*)", "author:@kaufhafen_hilfe"]),
                          ("Nordbahn", ["Nordbahn NOT lang:en"])])
    processing = MentionEnrichment(Enricher([LanguageAnnotator()]), Pseudonymizer("unit-test-key-0123456789"), tagger)
    enriched, _ = processing.process([
        message(raw_bytes("a", "Meine KAUFHAFEN Bestellung ist nach zwei Wochen immer noch nicht angekommen."), 0),
        message(raw_bytes("b", "Die Nordbahn ist schon wieder zu spät, und Kaufhafen antwortet nicht.", "@Kaufhafen_Hilfe"), 1),
        message(raw_bytes("c", "The Nordbahn train was late again this morning, as always.", "@x"), 2),
    ])
    by_id = {m.native_id: [(b.brand, b.query) for b in m.brands] for m in enriched}
    assert by_id["a"] == [("Kaufhafen", "Kaufhafen AND (Bestellung OR Lieferung*)")]
    assert by_id["b"] == [("Kaufhafen", "author:@kaufhafen_hilfe"), ("Nordbahn", "Nordbahn NOT lang:en")]
    assert by_id["c"] == []  # English: excluded by NOT lang:en


def test_a_bad_brand_query_in_the_settings_names_brand_query_and_position():
    from stimmung.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as info:
        load_settings(brands=[{"name": "Nordbahn", "queries": ["Nordbahn", "Nordbahn AND (Zug"]}])
    assert "brands.0.queries" in str(info.value) and "query 2" in str(info.value) and "character 18" in str(info.value)


@pytest.mark.parametrize("url, handle, names", [
    ("https://mastodon.social/@anna/1234", "@anna@mastodon.social", True),
    ("https://other.example/@anna@mastodon.social/99", "anna@mastodon.social", True),
    # Bluesky: a handle in the profile segment names the author, whatever its spelling ...
    ("https://bsky.app/profile/matze.m.bsky.social/post/3k0001", "matze.m", True),
    ("https://bsky.app/profile/matze.m.bsky.social/post/3k0001", "did:plc:abc", True),
    # ... a DID does not
    ("https://bsky.app/profile/did:plc:4xkq/post/3k0001", "did:plc:4xkq", False),
    ("https://news.example/2026/11/nordbahn-verspaetung", "anna", False),
    (None, "anna", False),
])
def test_urls_that_name_the_author_are_recognised(url, handle, names):
    assert url_names_author(url, handle) is names
