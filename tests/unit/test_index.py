import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from stimmung.pipeline.elastic.client import Capabilities
from stimmung.pipeline.elastic.mentions import TEMPLATE_VERSION, IndexLayout, mentions_mapping, to_document
from stimmung.schemas import EnrichedMention


def enriched(language="de", **kw):
    return EnrichedMention(platform="csv", native_id="1", text="Verspätungen überall",
                           created_at=datetime(2026, 11, 20, tzinfo=timezone.utc), author={"pseudonym": "psn_x"},
                           language=language, language_confidence=0.9, language_source="model",
                           topics=[{"label": "delivery", "score": 0.8}], brands=[{"brand": "Nordbahn"}],
                           model_versions={"language": "v"}, **kw)


def _paths(mapping, prefix=""):
    for name, spec in mapping["properties"].items():
        yield prefix + name
        if "properties" in spec:
            yield from _paths(spec, prefix + name + ".")


def _doc_paths(doc, prefix=""):
    for key, value in doc.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                yield from _doc_paths(item, prefix + key + ".")
            yield prefix + key
        elif isinstance(value, dict) and prefix + key != "model_versions":
            yield prefix + key
            yield from _doc_paths(value, prefix + key + ".")
        else:
            yield prefix + key


def test_every_document_field_is_mapped_so_strict_mapping_accepts_real_documents():
    doc = to_document(enriched(sentiment={"label": "negative", "score": 0.9,
                                          "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}}))
    mapped = set(_paths(mentions_mapping(Capabilities(frozenset({"german", "english"})))))
    unmapped = {p for p in _doc_paths(doc) if p not in mapped}
    assert unmapped == set()


def test_language_subfield_follows_detected_language():
    de, en, fr = to_document(enriched("de")), to_document(enriched("en")), to_document(enriched("fr"))
    assert de["text_de"] == de["text"] and "text_en" not in de
    assert en["text_en"] == en["text"] and "text_de" not in en
    assert "text_de" not in fr and "text_en" not in fr
    assert de["@timestamp"] == de["created_at"] and de["topic_labels"] == ["delivery"] and de["brand_names"] == ["Nordbahn"]


def test_missing_analyzers_fall_back_to_standard():
    full = mentions_mapping(Capabilities(frozenset({"german", "english"})))["properties"]
    bare = mentions_mapping(Capabilities(frozenset()))["properties"]
    assert full["text_de"]["analyzer"] == "german" and full["text_en"]["analyzer"] == "english"
    assert bare["text_de"]["analyzer"] == "standard" and bare["text_en"]["analyzer"] == "standard"


# The mentions mapping's history: template version -> fingerprint of mentions_mapping() at that
# version. It only grows: a changed mapping bumps TEMPLATE_VERSION (new writes go to new -v<N>-
# indices) and gets a new line here; an entry is never edited (the index of that version exists
# in clusters with the mapping it names). (2's entry was once edited in place: that is how we
# learnt the pin alone could be.)
MAPPING_HISTORY = {
    2: "384454499763f258",
    3: "8af09e8e475d981b",  # author contact_id, influence, linked_url
    4: "de2b9f247d6c12ee",  # complaint, relevance, aspects, intents (#17)
    5: "49243267d5ea8f13",  # brand_sentiment (#17)
}


def mapping_fingerprint() -> str:
    mapping = mentions_mapping(Capabilities(frozenset({"german", "english"}), frozenset({"asciifolding"})))
    return hashlib.sha256(json.dumps(mapping, sort_keys=True).encode()).hexdigest()[:16]


def test_mapping_changes_come_with_a_new_template_version():
    versions = list(MAPPING_HISTORY)
    assert versions == list(range(versions[0], versions[0] + len(versions))), "versions are consecutive, in order"
    assert versions[-1] == TEMPLATE_VERSION, "the current template version is the history's last entry"
    assert len(set(MAPPING_HISTORY.values())) == len(versions), "a new version has a mapping of its own"
    fingerprint = mapping_fingerprint()
    assert MAPPING_HISTORY[TEMPLATE_VERSION] == fingerprint, (
        f"mentions_mapping() changed (fingerprint {fingerprint}) without bumping TEMPLATE_VERSION: bump it "
        "and add a line to MAPPING_HISTORY")


def test_mapping_history_entries_are_never_edited():
    """Every committed version of this file that has MAPPING_HISTORY agrees with today's on each
    entry it has: editing the current entry instead of bumping the version fails here once the
    edit is compared with what was committed (the test above catches the change before that)."""
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    path = Path(__file__).resolve().relative_to(root).as_posix()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout

    try:
        commits = git("log", "--format=%H", "--", path).split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git history here (e.g. an unpacked release): the version pin above still holds")
    for commit in commits:
        text = git("show", f"{commit}:{path}")
        if "MAPPING_HISTORY = {" not in text:
            continue  # before the history table (the single pin it replaced)
        table = text.split("MAPPING_HISTORY = {", 1)[1].split("}", 1)[0]
        for version, fingerprint in re.findall(r'(\d+): "([0-9a-f]{16})"', table):
            assert MAPPING_HISTORY.get(int(version)) == fingerprint, (
                f"MAPPING_HISTORY[{version}] was {fingerprint} in {commit[:10]}: entries are history, never edited")


@pytest.mark.parametrize("period, when, name, end", [
    ("month", datetime(2026, 11, 23, 21, 0, tzinfo=timezone.utc), "m-v2-2026.11", datetime(2026, 12, 1, tzinfo=timezone.utc)),
    ("month", datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc), "m-v2-2026.12", datetime(2027, 1, 1, tzinfo=timezone.utc)),
    ("day", datetime(2026, 2, 28, 12, tzinfo=timezone.utc), "m-v2-2026.02.28", datetime(2026, 3, 1, tzinfo=timezone.utc)),
    # ISO weeks: 2026-12-31 is in week 53 of 2026, 2027-01-01 too (a Friday)
    ("week", datetime(2026, 12, 31, tzinfo=timezone.utc), "m-v2-2026.w53", datetime(2027, 1, 4, tzinfo=timezone.utc)),
    ("week", datetime(2027, 1, 1, tzinfo=timezone.utc), "m-v2-2026.w53", datetime(2027, 1, 4, tzinfo=timezone.utc)),
])
def test_the_index_follows_from_the_mentions_creation_time(period, when, name, end):
    layout = IndexLayout("m", period, version=2)
    assert layout.index_for(when) == name
    assert layout.period_end(name) == end
    assert when < end <= when + timedelta(days=31)


def test_index_names_in_other_time_zones_use_utc_and_foreign_names_are_not_ours():
    layout = IndexLayout("m", "day", version=2)
    berlin = timezone(timedelta(hours=1))
    assert layout.index_for(datetime(2026, 11, 24, 0, 30, tzinfo=berlin)) == "m-v2-2026.11.23"
    for foreign in ("m", "m-v2", "other-v2-2026.11", "m-vx-2026.11", "m-v2-garbage", "mm-v2-2026.11"):
        assert layout.period_end(foreign) is None
