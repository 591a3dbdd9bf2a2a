"""The alerting role's series book (pure state handling): distinct authors and texts per window,
evidence in spike alerts, sentiment-shift series and alerts, old persisted states."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np

from stimmung.config import ChannelSettings, Settings
from stimmung.pipeline.alerts import evidence
from stimmung.pipeline.alerts.alerting import SHIFT, SeriesBook, _item, shift_series_of
from stimmung.pipeline.alerts.deliveries import SlackChannel, evidence_line, summary
from stimmung.pipeline.alerts.sentiment_shift import SentimentShiftDetector
from stimmung.pipeline.alerts.spikes import DetectorConfig, SpikeDetector
from stimmung.schemas import EnrichedMention

MONDAY = 1762732800
WINDOW = 300


def settings() -> Settings:
    return Settings(alerting={"samples": 2})


def mention(i: int, t: float, author: str | None, text: str, sentiment: str = "negative") -> EnrichedMention:
    return EnrichedMention(
        platform="mastodon", native_id=str(i), text=text, created_at=datetime.fromtimestamp(t, timezone.utc),
        language="de", language_confidence=1, language_source="model",
        sentiment={"label": sentiment, "score": 0.9, "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}},
        brands=[{"brand": "Nordbahn", "query": "nordbahn"}],
        author={"pseudonym": author} if author else None)


def book(config: DetectorConfig | None = None) -> SeriesBook:
    return SeriesBook(settings(), SpikeDetector(config or DetectorConfig(warmup_windows=5)))


def item(m: EnrichedMention) -> dict:
    return json.loads(json.dumps(_item(m)))  # as the counts topic carries it


def test_items_carry_hashes_and_terms_never_the_pseudonym_or_a_handle():
    m = mention(1, MONDAY, "hmac-of-alice", "RT @alice: Nordbahn Zug fällt schon wieder aus https://t.co/x")
    it = item(m)
    assert "hmac-of-alice" not in json.dumps(it) and "@alice" not in json.dumps({k: it[k] for k in ("au", "tx", "terms")})
    copy = item(mention(2, MONDAY, "hmac-of-bob", "nordbahn zug fällt   schon wieder aus"))
    assert it["tx"] == copy["tx"], "a retweet and a paste of one post are one text"
    assert it["au"] != copy["au"] and "nordbahn" in it["terms"] and "der" not in evidence.terms("der Zug")


def test_one_copied_text_cannot_page_but_a_wave_of_many_authors_does():
    results = {}
    for name, author, text in (("copies", lambda j: f"a{j}", lambda j: "Nordbahn kaputt"),
                               ("one author", lambda j: "spammer", lambda j: f"Nordbahn kaputt {j} mal"),
                               ("wave", lambda j: f"a{j}", lambda j: f"Nordbahn Zug {j} fällt aus")):
        b = book()
        state = b.new(0, {"brand": "Nordbahn", "sentiment": "negative"}, MONDAY)
        n = 0
        for w in range(12):  # a calm hour: 3-5 negative mentions a window from different people
            for j in range(3 + w % 3):
                n += 1
                assert b.add(state, item(mention(n, MONDAY + w * WINDOW + j, f"calm{n}", f"Nordbahn {n} verspätet")))
        alerts = b.close("brand=Nordbahn|sentiment=negative", state, MONDAY + 12 * WINDOW + 120)
        for j in range(40):
            n += 1
            b.add(state, item(mention(n, MONDAY + 12 * WINDOW + j, author(j), text(j))))
        alerts = b.close("brand=Nordbahn|sentiment=negative", state, MONDAY + 13 * WINDOW + 120)
        results[name] = alerts
    assert results["copies"] == [] and results["one author"] == []
    (fired,) = results["wave"]
    assert fired.event == "fired" and fired.distinct_authors == 40 and fired.distinct_texts == 40
    assert fired.expected_upper is not None and fired.expected_lower <= fired.expected < fired.expected_upper < 40
    assert "nordbahn" in fired.top_terms and len(fired.samples) == 2
    assert "40 authors, 40 distinct texts" in evidence_line(fired)
    slack = json.loads(SlackChannel(ChannelSettings(name="s", type="slack", url="http://x"), http=None).request(fired)[2])
    assert any("40 authors" in json.dumps(b) for b in slack["blocks"])


def test_a_replayed_mention_is_counted_once_and_a_late_one_dropped():
    b = book()
    state = b.new(0, {"brand": "Nordbahn", "sentiment": "negative"}, MONDAY)
    m = item(mention(1, MONDAY + 10, "x", "Nordbahn kaputt"))
    assert b.add(state, m) and b.add(state, m)
    assert state["open"][str(MONDAY)]["ids"] == [m["id"]] and state["open"][str(MONDAY)]["au"] == [m["au"]]
    b.close("k", state, MONDAY + WINDOW + 120)
    assert not b.add(state, item(mention(2, MONDAY + 20, "y", "zu spät"))), "its window is closed"


def test_old_persisted_states_do_not_crash_the_role():
    b = book()
    # a series state written before evidence existed: windows without au/tx/terms, a v1 detector state
    old = {"partition": 0, "labels": {"brand": "Nordbahn", "sentiment": "negative"}, "closed_until": MONDAY,
           "open": {str(MONDAY): {"ids": ["m1", "m2"], "sent": {"negative": 2}, "plat": {"mastodon": 2}, "samples": []}},
           "closed": [], "det": {"level": 1.0, "inv_k": 0.1, "seen": 500, "recent": [], "incident": None}}
    assert b.add(old, item(mention(3, MONDAY + 30, "z", "Nordbahn kaputt")))
    assert b.close("k", old, MONDAY + 3 * WINDOW + 120) == []
    assert old["det"]["v"] == 3 and old["closed"][0]["n"] == 3
    assert json.loads(json.dumps(old)) == old


def test_a_negative_share_shift_at_flat_volume_is_its_own_alert_kind():
    rng = np.random.default_rng(5)
    b = SeriesBook(settings(), SpikeDetector(), SentimentShiftDetector())
    m0 = mention(0, MONDAY, "a", "x")
    ((key, labels),) = shift_series_of(m0)
    assert key == f"brand=Nordbahn|{SHIFT}" and labels["kind"] == SHIFT
    state = b.new(0, labels, MONDAY)
    assert "shift" in state and "det" not in state
    n, fired, resolved = 0, None, None
    for w in range(3 * 288 + 24):
        share = 0.4 if 3 * 288 <= w < 3 * 288 + 12 else 0.2
        for _ in range(30):
            n += 1
            sent = "negative" if rng.random() < share else "neutral"
            b.add(state, item(mention(n, MONDAY + w * WINDOW + 1, f"a{n}", f"Nordbahn {n}", sent)))
        for alert in b.close(key, state, MONDAY + (w + 1) * WINDOW + 120):
            assert w >= 3 * 288, "no shift alert on calm data"
            if alert.event == "fired":
                fired = (w, alert)
            elif alert.event == "resolved":
                resolved = alert
    w, alert = fired
    assert (w - 3 * 288 + 1) * 5 <= 30, "within 30 minutes"
    assert alert.kind == SHIFT and alert.negative_share > alert.baseline_share and alert.distinct_authors
    assert "Sentiment shift for Nordbahn" in summary(alert)
    assert resolved is not None and resolved.alert_id == alert.alert_id
