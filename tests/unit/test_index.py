from datetime import datetime, timezone

from stimmung.pipeline.index import Capabilities, mentions_mapping, to_document
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
