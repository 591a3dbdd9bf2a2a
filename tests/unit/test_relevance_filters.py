"""Relevance (issue #17: "is the post about the brand at all") drives alert counts, case routing
and search: the same rule everywhere, and a mention nothing judged (heads off) is never dropped."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import unquote

from stimmung.config import CaseRouteSettings, SeriesSettings
from stimmung.pipeline.alerts.series import series_of
from stimmung.pipeline.crm.cases import Router
from stimmung.pipeline.elastic.search import SearchRequest, discover_url
from stimmung.schemas import EnrichedMention


def mention(relevance: float | None) -> EnrichedMention:
    return EnrichedMention(platform="bluesky", native_id=f"r{relevance}", text="Nordbahn fährt zur Messe",
                           created_at=datetime(2026, 12, 7, tzinfo=timezone.utc), language="de",
                           language_confidence=1, language_source="model", relevance=relevance,
                           complaint={"label": "complaint", "probability": 0.8},
                           brands=[{"brand": "Nordbahn", "query": "nordbahn"}])


def test_an_alert_family_with_min_relevance_counts_only_relevant_mentions_in_a_series_of_its_own():
    everything, relevant = SeriesSettings(), SeriesSettings(min_relevance=0.5)
    assert dict(series_of(mention(0.9), [everything, relevant])) == {
        "brand=Nordbahn|signal=complaint": {"brand": "Nordbahn", "signal": "complaint"},
        "brand=Nordbahn|signal=complaint|min_relevance=0.5": {"brand": "Nordbahn", "signal": "complaint", "min_relevance": "0.5"}}
    assert [k for k, _ in series_of(mention(0.2), [everything, relevant])] == ["brand=Nordbahn|signal=complaint"]
    assert len(series_of(mention(None), [relevant])) == 1, "heads off: nothing judged it off-topic"
    assert len(series_of(mention(0.5), [relevant])) == 1, "the minimum itself is enough"


def test_a_route_with_min_relevance_lets_an_off_topic_mention_fall_through_to_the_next_route():
    router = Router([CaseRouteSettings(name="customer-voice", queue="support", min_relevance=0.5),
                     CaseRouteSettings(name="press", queue="pr")])
    assert router.route(mention(0.8)).name == "customer-voice"
    assert router.route(mention(0.1)).name == "press"
    assert router.route(mention(None)).name == "customer-voice"


def test_search_and_its_discover_link_apply_the_same_relevance_rule():
    request = SearchRequest(brand=["Nordbahn"], min_relevance=0.5)
    relevance = request.body()["query"]["bool"]["filter"][-1]
    assert relevance == {"bool": {"should": [{"range": {"relevance": {"gte": 0.5}}},
                                             {"bool": {"must_not": {"exists": {"field": "relevance"}}}}],
                                  "minimum_should_match": 1}}
    assert all("relevance" not in str(f) for f in SearchRequest(brand=["Nordbahn"]).body()["query"]["bool"]["filter"])
    link = unquote(discover_url("http://kibana:5601", request))
    assert '(brand_names:"Nordbahn") and (relevance >= 0.5 or not relevance:*)' in link
    only = unquote(discover_url("http://kibana:5601", SearchRequest(min_relevance=0.25)))
    assert "query:'(relevance >= 0.25 or not relevance:*)'" in only


def test_the_alert_of_a_relevance_family_links_to_the_same_slice_in_discover():
    from stimmung.config import Settings
    from stimmung.pipeline.alerts.series import SeriesBook
    from stimmung.pipeline.alerts.spikes import SpikeDetector

    book = SeriesBook(Settings(kibana={"url": "http://kibana:5601"}), SpikeDetector())
    start, end = datetime(2026, 12, 7, 9, tzinfo=timezone.utc), datetime(2026, 12, 7, 9, 5, tzinfo=timezone.utc)
    labels = dict(series_of(mention(0.9), [SeriesSettings(min_relevance=0.5)]))["brand=Nordbahn|signal=complaint|min_relevance=0.5"]
    link = unquote(book.discover_link(labels, start, end))
    assert '(topic_labels:"complaint") and (brand_names:"Nordbahn") and (relevance >= 0.5 or not relevance:*)' in link
    plain = unquote(book.discover_link({"brand": "Nordbahn", "signal": "complaint"}, start, end))
    assert "relevance" not in plain


def test_two_close_minimums_are_two_series_and_the_page_says_which_family_it_is():
    from stimmung.pipeline.alerts.deliveries import summary
    from stimmung.schemas.alert import Alert

    keys = [k for k, _ in series_of(mention(0.9), [SeriesSettings(min_relevance=0.1234567),
                                                   SeriesSettings(min_relevance=0.1234568)])]
    assert keys == ["brand=Nordbahn|signal=complaint|min_relevance=0.1234567",
                    "brand=Nordbahn|signal=complaint|min_relevance=0.1234568"]
    start = datetime(2026, 12, 7, 9, tzinfo=timezone.utc)
    spike = dict(status="firing", severity="warning", brand="Nordbahn", window_start=start,
                 window_end=start.replace(minute=5), observed=30, expected=3.0, p_value=0.001)
    assert "Complaint spike for Nordbahn (relevance ≥ 0.5): 30 mentions" in summary(Alert(alert_id="a", min_relevance=0.5, **spike))
    assert "relevance" not in summary(Alert(alert_id="b", **spike))


def test_the_strict_alerts_index_maps_every_field_an_alert_carries():
    """The alerts index refuses unknown fields: a new Alert field without a mapping would fail
    every alert's indexing."""
    from stimmung.pipeline.elastic.indices import alerts_mapping
    from stimmung.schemas.alert import Alert

    assert set(Alert.model_fields) <= set(alerts_mapping()["properties"])
