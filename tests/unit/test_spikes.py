"""The spike detector on its own: the failure modes of simple spike rules, one by one."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from stimmung.pipeline.alerts.spikes import DetectorConfig, SpikeDetector, upper_tail

WINDOW = 300
MONDAY = 1762732800  # 2025-11-10 00:00 UTC
WEEK = 7 * 288


def feed(detector, state, counts, start_index=0):
    return [detector.observe(state, MONDAY + (start_index + i) * WINDOW, int(c), "nordbahn|complaint")
            for i, c in enumerate(counts)]


def warmed(mean=5.0, seed=1, config=None):
    detector = SpikeDetector(config or DetectorConfig())
    state = SpikeDetector.new_state()
    verdicts = feed(detector, state, np.random.default_rng(seed).poisson(mean, WEEK + 288))
    return detector, state, verdicts


def test_zero_versus_zero_never_alerts():
    detector, state = SpikeDetector(DetectorConfig.preset("high")), SpikeDetector.new_state()
    verdicts = feed(detector, state, [0] * (WEEK + 2000))
    assert all(v.event is None for v in verdicts)
    # and a single stray mention in a silent series is no spike (minimum count)
    assert all(v.event is None for v in feed(detector, state, [1, 1, 0], WEEK + 2000))


def test_no_alert_without_a_baseline_during_warm_up():
    detector, state = SpikeDetector(), SpikeDetector.new_state()
    verdicts = feed(detector, state, [5] * 100 + [500] * 3)
    assert all(v.event is None for v in verdicts), "a new series cannot alert before its warm-up"


def test_a_spike_fires_once_stays_open_while_it_plateaus_escalates_and_resolves():
    detector, state, before = warmed(mean=5.0)
    assert sum(v.event == "fired" for v in before) == 0, "stationary noise after warm-up: no alert"
    n = len(before)
    spike = feed(detector, state, [40, 42, 38, 41, 39], n)
    assert spike[0].event == "fired" and spike[0].severity == "critical" and spike[0].observed == 40
    assert 3 < spike[0].expected < 8 and spike[0].p_value < 1e-6
    assert [v.event for v in spike[1:]] == ["updated"] * 4, "a plateau stays one open incident, not silence"
    assert all(v.incident_id == spike[0].incident_id for v in spike)
    assert 3 < spike[-1].expected / spike[-1].scale < 8, "the baseline is frozen during the incident"
    grown = feed(detector, state, [85], n + 5)[0]
    assert grown.event == "escalated" and grown.incident_id == spike[0].incident_id
    end = feed(detector, state, [5, 4, 6, 5, 5, 4], n + 6)
    events = [v.event for v in end]
    assert "resolved" in events[:4], "resolved once the last 15 minutes are calm again"
    resolved_at = n + 6 + events.index("resolved")
    assert all(e is None for e in events[events.index("resolved") + 1:]), "resolved once"
    # cooldown: an immediate relapse does not page again ...
    relapse = feed(detector, state, [40], n + 12)[0]
    assert relapse.event is None and relapse.p_value < 1e-6
    # ... a spike after the cooldown is a new incident; the old one's windows do not re-alert
    calm = feed(detector, state, [5] * 10, n + 13)
    assert all(v.event is None for v in calm)
    later = feed(detector, state, [45], n + 23)[0]
    assert later.event == "fired" and later.incident_id != spike[0].incident_id
    assert (n + 23) * WINDOW - resolved_at * WINDOW >= detector.config.cooldown_s


def test_warning_then_escalation_to_critical():
    detector, state, before = warmed(mean=10.0, seed=3)
    v = feed(detector, state, [32], len(before))[0]
    assert v.event == "fired" and v.severity == "warning"
    v = feed(detector, state, [70], len(before) + 1)[0]
    assert v.event == "escalated" and v.severity == "critical"


def test_a_slow_burn_of_a_quiet_series_is_found_on_the_rolling_window():
    detector, state, before = warmed(mean=0.8, seed=5)
    verdicts = feed(detector, state, [4, 4, 4], len(before))  # no single window is extreme
    fired = [v for v in verdicts if v.event == "fired"]
    assert fired and fired[0].scale == 3 and fired[0].observed >= 9


def test_the_daily_peak_is_normal_but_a_spike_at_night_is_not():
    rng = np.random.default_rng(11)
    detector, state = SpikeDetector(), SpikeDetector.new_state()
    hourly = [1.0] * 7 + [20.0] * 14 + [1.0] * 3  # nights are quiet, days are busy

    def day_counts():
        return [rng.poisson(hourly[(i * WINDOW // 3600) % 24]) for i in range(288)]

    verdicts = []
    for day in range(9):
        verdicts += feed(detector, state, day_counts(), day * 288)
    after_warmup = verdicts[WEEK:]
    assert not [v for v in after_warmup if v.event == "fired"], "20 per window every day is this series' normal"
    night = feed(detector, state, [12, 11, 13], 9 * 288 + 3 * 12)  # 03:00, 12 mentions instead of 1
    assert night[0].event == "fired"


@given(st.integers(min_value=1, max_value=400), st.floats(min_value=0.05, max_value=200), st.floats(min_value=0, max_value=1.5))
def test_upper_tail_matches_scipys_distributions(x, mean, inv_k):
    got = upper_tail(x, mean, inv_k)
    if inv_k < 1e-6:
        want = stats.poisson.sf(x - 1, mean)
    else:
        r = 1 / inv_k
        want = stats.nbinom.sf(x - 1, r, r / (r + mean))
    assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12)
    assert upper_tail(x + 1, mean, inv_k) <= got <= upper_tail(x, mean * 1.5, inv_k) + 1e-12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=400), st.integers(0, 10**6))
def test_any_count_sequence_keeps_a_sane_serialisable_state(counts, offset):
    detector = SpikeDetector(DetectorConfig(warmup_windows=50))
    state = SpikeDetector.new_state()
    for i, c in enumerate(counts):
        v = detector.observe(state, MONDAY + (offset + i) * WINDOW, c, "s")
        assert 0 <= v.p_value <= 1 and math.isfinite(v.expected) and v.expected >= detector.config.min_expected
        state = json.loads(json.dumps(state))  # lives in a Faust table: must survive a round trip
    assert math.isfinite(state["level"]) and 0 <= state["inv_k"] <= 1


def test_presets_order_sensitivity():
    low, medium, high = (DetectorConfig.preset(s) for s in ("low", "medium", "high"))
    assert low.alpha < medium.alpha < high.alpha and low.min_count > medium.min_count > high.min_count
    assert DetectorConfig.preset("medium", min_count=9).min_count == 9
