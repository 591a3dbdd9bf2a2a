"""The spike detector and the sentiment-shift detector on their own (pure logic)."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from stimmung.pipeline.alerts.sentiment_shift import SentimentShiftDetector, ShiftConfig
from stimmung.pipeline.alerts.spikes import (
    BUDGETS,
    STATE_VERSION,
    DetectorConfig,
    SpikeDetector,
    peak_p_value,
    peak_threshold,
    quartile_tail,
    tail_fit,
    upper_tail,
)

WINDOW = 300
MONDAY = 1762732800  # 2025-11-10 00:00 UTC
DAY = 288


def feed(detector, state, counts, start_index=0, authors=None, texts=None):
    out = []
    for i, c in enumerate(counts):
        kw = {}
        if authors is not None:
            kw = {"authors": int(authors[i]), "texts": int(texts[i])}
        out.append(detector.observe(state, MONDAY + (start_index + i) * WINDOW, int(c), "nordbahn|complaint", **kw))
    return out


def bursty(days, mean=10.0, seed=1):
    rng = np.random.default_rng(seed)
    wobble = np.exp(np.repeat(rng.normal(0, 0.2, days * 24), 12))
    return rng.poisson(mean * wobble)


def warmed(days=10, mean=10.0, seed=1, config=None):
    detector, state = SpikeDetector(config or DetectorConfig()), SpikeDetector.new_state()
    verdicts = feed(detector, state, bursty(days, mean, seed))
    return detector, state, verdicts


def test_zero_versus_zero_never_alerts():
    detector, state = SpikeDetector(DetectorConfig.preset("high")), SpikeDetector.new_state()
    assert all(v.event is None for v in feed(detector, state, [0] * (10 * DAY)))
    assert all(v.event is None for v in feed(detector, state, [1, 1, 0], 10 * DAY)), "a stray mention is no spike"


def test_no_alert_during_warm_up():
    detector, state = SpikeDetector(), SpikeDetector.new_state()
    assert all(v.event is None for v in feed(detector, state, [5] * 100 + [500] * 3))


def test_a_young_series_uses_the_tail_test_like_the_alerting_role_expects():
    # the integration test's shape: a few windows of history, then 40 mentions
    detector = SpikeDetector(DetectorConfig(warmup_windows=5))
    state = SpikeDetector.new_state()
    feed(detector, state, [3, 4, 3, 5, 4, 3, 4, 4, 3, 5, 4, 3])
    v = feed(detector, state, [40], 12)[0]
    assert v.event == "fired" and v.severity == "critical" and v.observed == 40 and v.expected < 6 and v.p_value < 1e-6


def test_a_spike_fires_once_stays_open_and_resolves_with_cooldown():
    detector, state, before = warmed()
    assert len(state["maxima"][0]) >= detector.config.min_history_days, "thresholds come from the series' history"
    n = len(before)
    spike = feed(detector, state, [90, 95, 88, 92, 90], n)
    v = spike[0]
    assert v.event == "fired" and v.observed >= 88 and 8 * v.scale < v.expected < 12 * v.scale
    assert v.lower < v.expected < v.upper < v.observed, "the expected band (over the scale) brackets the normal count"
    assert [v.event for v in spike[1:]] == ["updated"] * 4 and {v.incident_id for v in spike} == {spike[0].incident_id}
    end = [v.event for v in feed(detector, state, [10] * 6, n + 5)]
    assert "resolved" in end[:4] and end.count("resolved") == 1
    relapse = feed(detector, state, [95], n + 11)[0]
    assert relapse.event is None, "no page again within the cooldown"


def test_paging_is_fired_plus_at_most_one_escalation():
    detector, state, before = warmed(seed=2)
    events = [v.event for v in feed(detector, state, [60, 80, 200, 400, 800, 1600], len(before))]
    assert events.count("fired") == 1 and events.count("escalated") <= 1


def test_one_author_or_one_copied_text_cannot_page():
    for field_name in ("authors", "texts"):
        detector, state, before = warmed(seed=3)
        n = len(before)
        counts = [400, 420, 380]
        ones, many = [1, 1, 1], counts
        authors, texts = (ones, many) if field_name == "authors" else (many, ones)
        verdicts = feed(detector, state, counts, n, authors=authors, texts=texts)
        assert all(v.event is None for v in verdicts), f"one {field_name[:-1]} alone paged"
        # the same volume from many authors and texts does page
        detector, state, before = warmed(seed=3)
        verdicts = feed(detector, state, counts, n, authors=many, texts=many)
        assert verdicts[0].event == "fired"


def test_a_retweet_storm_pages_less_than_a_wave_of_the_same_size():
    detector, state, before = warmed(seed=4)
    storm = feed(detector, state, [60], len(before), authors=[60], texts=[11])[0]
    assert storm.event is None


def test_budget_orders_alert_counts_on_bursty_data():
    counts = bursty(35, mean=8.0, seed=9)
    pages = {}
    for name, budget in BUDGETS.items():
        detector, state = SpikeDetector(DetectorConfig(budget_per_week=budget)), SpikeDetector.new_state()
        pages[name] = sum(v.event in ("fired", "escalated") for v in feed(detector, state, counts)[10 * DAY:])
    weeks = 25 / 7
    assert pages["low"] <= pages["medium"] <= pages["high"]
    assert pages["high"] / weeks <= 2 * BUDGETS["high"], pages


def test_a_level_shift_becomes_the_new_normal():
    detector, state, before = warmed(seed=5)
    after = feed(detector, state, bursty(2, mean=40.0, seed=6), len(before))
    fired = [i for i, v in enumerate(after) if v.event == "fired"]
    assert len(fired) <= 1, "a campaign pages once at most"
    assert after[-1].expected > 25, "and the baseline has moved to the new level"


def test_an_old_detector_state_is_replaced_not_misread():
    detector = SpikeDetector()
    old = {"level": 3.0, "hour_mean": [0.0] * 24, "inv_k": 0.1, "seen": 9999, "recent": [], "incident": None}
    detector.observe(old, MONDAY, 5)
    assert old["v"] == STATE_VERSION and old["seen"] == 1


def test_peak_thresholds_hold_their_exceedance_rate():
    rng = np.random.default_rng(3)
    # heavy-tailed daily peaks: the order statistic does not care about the law
    history, fresh = rng.pareto(2.0, (4000, 28)) + 1, rng.pareto(2.0, 4000) + 1
    for exceed in (0.1, 0.2):
        over = np.mean([f > peak_threshold(list(h), exceed) for h, f in zip(history, fresh)])
        assert abs(over - exceed) < 0.03, (exceed, over)
    # beyond the largest peak, the upper half's exponential tail extends it
    assert peak_threshold([1.0, 2.0, 3.0, 4.0, 9.0], 0.01) > 9.0
    assert tail_fit([1.0, 2.0, 3.0, 4.0, 9.0]) == (3.0, 3.5)
    assert peak_p_value([1.0, 2.0, 3.0], 2.5) == 0.5


def test_quartile_tail_ignores_the_top_quarter():
    rng = np.random.default_rng(4)
    calm = list(rng.exponential(1.0, 28) + 2)
    spiked = sorted(calm)[:23] + [50.0] * 5  # the same month with five incident days
    assert quartile_tail(spiked, 0.07) == quartile_tail(calm, 0.07)
    assert peak_threshold(spiked, 0.07) > 2 * peak_threshold(calm, 0.07), "the order statistic would follow them"
    sample = rng.exponential(1.0, 20000).tolist()  # exponential: median ln 2, β 1
    assert abs(quartile_tail(sample, 0.01) - math.log(100)) < 0.15


@given(st.integers(min_value=1, max_value=400), st.floats(min_value=0.05, max_value=200), st.floats(min_value=0, max_value=1.5))
def test_upper_tail_matches_scipys_distributions(x, mean, inv_k):
    got = upper_tail(x, mean, inv_k)
    if inv_k < 1e-6:
        want = stats.poisson.sf(x - 1, mean)
    else:
        r = 1 / inv_k
        want = stats.nbinom.sf(x - 1, r, r / (r + mean))
    assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=600), st.integers(0, 10**6))
def test_any_count_sequence_keeps_a_sane_serialisable_state(counts, offset):
    detector = SpikeDetector(DetectorConfig(warmup_windows=50, min_history_days=1))
    state = SpikeDetector.new_state()
    for i, c in enumerate(counts):
        v = detector.observe(state, MONDAY + (offset + i) * WINDOW, c, "s", authors=c, texts=max(1, c // 2))
        assert 0 <= v.p_value <= 1 and math.isfinite(v.expected) and v.expected >= detector.config.min_expected
        assert 0 <= v.lower <= v.upper and math.isfinite(v.upper)
        state = json.loads(json.dumps(state))  # lives in a Faust table: must survive a round trip
    assert math.isfinite(state["level"]) and len(json.dumps(state)) < 4000, "O(1) state"


def test_presets_map_to_budgets():
    assert [DetectorConfig.preset(s).budget_per_week for s in ("low", "medium", "high")] == [0.25, 0.5, 1.0]
    assert DetectorConfig.preset("medium", min_count=9).min_count == 9


# --- sentiment shift -----------------------------------------------------------------------------

def calm_share(rng, n, volume=20, share=0.2):
    totals = rng.poisson(volume, n)
    return totals, rng.binomial(totals, rng.beta(40 * share, 40 * (1 - share), n))


def test_a_doubled_negative_share_at_constant_volume_is_found_within_30_minutes():
    rng = np.random.default_rng(42)
    detector, state = SentimentShiftDetector(), SentimentShiftDetector.new_state()
    totals, negatives = calm_share(rng, 2 * DAY, volume=40)
    for i in range(2 * DAY):
        assert detector.observe(state, MONDAY + i * WINDOW, int(totals[i]), int(negatives[i])).event is None
    fired = None
    for j in range(12):  # one hour at twice the share, same volume (480 mentions an hour)
        total = 40
        v = detector.observe(state, MONDAY + (2 * DAY + j) * WINDOW, total, int(rng.binomial(total, 0.4)))
        if v.event == "fired":
            fired = j
            break
    assert fired is not None and (fired + 1) * 5 <= 30, fired
    assert v.baseline_share < 0.3 and v.incident_started is not None


def test_calm_data_raises_at_most_one_sentiment_alert_per_brand_week():
    rng = np.random.default_rng(7)
    weeks = 6
    fired = 0
    for volume, share in [(3, 0.1), (20, 0.2), (100, 0.3)]:
        detector, state = SentimentShiftDetector(), SentimentShiftDetector.new_state()
        n = weeks * 7 * DAY
        totals = rng.poisson(volume * (1 + 0.5 * np.sin(np.arange(n) / DAY * 2 * np.pi)))
        negatives = rng.binomial(totals, rng.beta(40 * share, 40 * (1 - share), n))
        fired += sum(detector.observe(state, MONDAY + i * WINDOW, int(totals[i]), int(negatives[i])).event == "fired"
                     for i in range(n))
    assert fired / (3 * weeks) <= 1.0, fired


def test_sentiment_shift_rejects_impossible_counts_and_keeps_json_state():
    detector, state = SentimentShiftDetector(ShiftConfig()), SentimentShiftDetector.new_state()
    try:
        detector.observe(state, MONDAY, 3, 5)
    except ValueError as err:
        assert "within 0..total" in str(err)
    else:
        raise AssertionError("more negative mentions than mentions accepted")
    detector.observe(state, MONDAY, 10, 2)
    assert json.loads(json.dumps(state)) == state
