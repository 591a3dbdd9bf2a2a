"""The mentions index on the real node: language analyzers, and the fallback when one is missing."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from elasticsearch import Elasticsearch

from stimmung.pipeline.elastic.client import detect_capabilities
from stimmung.pipeline.elastic.indices import ensure_indices, ensure_period_index
from stimmung.pipeline.elastic.mentions import to_document
from stimmung.schemas import EnrichedMention


def mention(native_id: str, text: str, language: str) -> EnrichedMention:
    return EnrichedMention(platform="csv", native_id=native_id, text=text, created_at=datetime.now(timezone.utc),
                           language=language, language_confidence=0.99, language_source="model")


def test_german_and_english_full_text_finds_inflected_forms(settings):
    client = Elasticsearch(settings.elasticsearch.url)
    setup = ensure_indices(client, settings.elasticsearch)
    assert {"german", "english"} <= setup.caps.analyzers, "the local stack installs both analyzers"
    index = settings.elasticsearch.mentions_index  # the read alias
    docs = [mention("1", "Schon wieder Verspätungen auf der ganzen Strecke", "de"),
            mention("2", "Die Züge fallen aus", "de"),
            mention("3", "All my deliveries were delayed again", "en")]
    for m in docs:
        target = setup.layout.index_for(m.created_at)
        ensure_period_index(client, setup.layout, target, setup.ilm)
        client.index(index=target, id=m.mention_id, document=to_document(m))
    client.indices.refresh(index=index)

    def native_ids(field: str, query: str) -> set[str]:
        hits = client.search(index=index, query={"match": {field: query}})["hits"]["hits"]
        return {h["_source"]["native_id"] for h in hits}

    assert native_ids("text_de", "Verspätung") == {"1"}
    assert native_ids("text_de", "Zug") == {"2"}
    assert native_ids("text_en", "delivery delay") == {"3"}
    # the language-neutral field has no stemming: the singular does not find the plural
    assert native_ids("text", "Verspätung") == set()


def test_brand_queries_find_possessives_and_genitives_in_the_index(settings):
    from stimmung.brandquery import parse

    client = Elasticsearch(settings.elasticsearch.url)
    setup = ensure_indices(client, settings.elasticsearch)
    index = settings.elasticsearch.mentions_index
    docs = [mention("p1", "Kaufhafen's app keeps crashing", "en"), mention("p2", "Kaufhafen’s support never answers", "en"),
            mention("p3", "Die Preise des Kaufhafens sind frech", "de"), mention("p4", "Kaufhafenstraße gesperrt", "de"),
            mention("p5", "Kaufhafen Gewinnspiel: jetzt mitmachen", "de")]
    for m in docs:
        target = setup.layout.index_for(m.created_at)
        ensure_period_index(client, setup.layout, target, setup.ilm)
        client.index(index=target, id=m.mention_id, document=to_document(m))
    client.indices.refresh(index=index)

    def found(query: str) -> set[str]:
        es_query = parse(query).to_elasticsearch()
        hits = client.search(index=index, query={"bool": {"filter": [es_query, {"prefix": {"native_id": "p"}}]}})
        return {h["_source"]["native_id"] for h in hits["hits"]["hits"]}

    assert found("Kaufhafen") == {"p1", "p2", "p3", "p5"}, "a word finds its possessive and genitive, not compounds"
    assert found("Kaufhafen -Gewinnspiel") == {"p1", "p2", "p3"}
    # the stream matcher agrees with the index
    assert {m.native_id for m in docs if parse("Kaufhafen -Gewinnspiel").matches_text(m.text)} == {"p1", "p2", "p3"}


def test_a_missing_analyzer_is_detected_and_warned_about_not_fatal(settings, caplog):
    client = Elasticsearch(settings.elasticsearch.url)
    with caplog.at_level(logging.WARNING, logger="stimmung.pipeline.elastic.client"):
        caps = detect_capabilities(client, ["german", "no_such_analyzer"])
    assert caps.analyzers == frozenset({"german"})
    assert caps.analyzer_for("no_such_analyzer") == "standard"
    assert any("no_such_analyzer" in r.getMessage() for r in caplog.records)
