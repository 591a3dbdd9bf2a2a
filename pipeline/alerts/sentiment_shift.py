"""Sentiment-shift detection: the share of negative mentions of a series jumps while its volume
does not (a product change that annoys the usual audience). A volume spike detector cannot see
this; its own alert type (``sentiment_shift``) goes through the same deliveries.

Per closed window the caller gives the count of all mentions and of negative ones. The test is a
one-sided CUSUM on the negative count given the total, against the series' own baseline share
(a slow, clipped EW estimate): each window adds the binomial log-likelihood ratio of "share ×
``shift_factor``" against "baseline share", so evidence builds up over windows at any volume
and a quiet brand's single negative mention moves nothing. It fires when the sum passes
``threshold`` (the expected time between false alerts of a CUSUM grows exponentially with it:
about one per ten brand-weeks at the default on calm data, benchmarks/spikes.py), while the
baseline is frozen; it resolves when the sum has drained to zero. Real shares wobble more than
binomially (more so at high volume): the series' own intra-window correlation ``rho`` is learned
and the log-likelihood ratio divided by 1 + rho (n - 1).

State: a small JSON-serialisable dict per series; O(1) per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ShiftConfig:
    window_s: int = 300
    shift_factor: float = 2.0  # the rise the test is tuned to detect fastest
    threshold: float = 8.0  # CUSUM decision level (log-likelihood ratio units); 6 gave 2.1 false alerts per brand-week
    dispersion: float = 1.0  # on top of the overdispersion learned from the series
    min_share_prior: float = 0.02  # a brand with no negative mentions yet
    baseline_half_life_windows: float = 2016.0  # a week
    warmup_windows: int = 288
    min_negative: int = 5  # negative mentions since the shift began, at least
    cooldown_s: float = 3600.0


@dataclass
class ShiftVerdict:
    event: Literal["fired", "resolved"] | None
    share: float  # this window's negative share
    baseline_share: float
    evidence: float  # the CUSUM sum
    incident_started: float | None = None


@dataclass
class SentimentShiftDetector:
    config: ShiftConfig = field(default_factory=ShiftConfig)

    @staticmethod
    def new_state() -> dict[str, Any]:
        return {"neg": 0.0, "all": 0.0, "seen": 0, "rho": 0.0, "cusum": 0.0, "run_neg": 0, "run_start": None,
                "open": None, "cooldown_until": 0.0}

    def baseline_share(self, state: dict[str, Any]) -> float:
        c = self.config
        # a pseudo-count keeps a young or quiet series' share away from 0 and 1
        return (state["neg"] + c.min_share_prior * 20) / (state["all"] + 20)

    def observe(self, state: dict[str, Any], window_start: float, total: int, negative: int) -> ShiftVerdict:
        if negative < 0 or total < 0 or negative > total:
            raise ValueError(f"negative ({negative}) must be within 0..total ({total})")
        c = self.config
        p0 = min(max(self.baseline_share(state), 1e-4), 0.9)
        p1 = min(p0 * c.shift_factor, 0.99)
        # binomial log-likelihood ratio of this window, share p1 against p0, discounted by the
        # series' own overdispersion: at high volume the share wobbles far more than binomially
        # (beta-binomial: variance × 1 + rho (n - 1)), and an undiscounted test would page hourly
        inflation = c.dispersion * (1.0 + state["rho"] * max(total - 1, 0))
        llr = (negative * math.log(p1 / p0) + (total - negative) * math.log((1 - p1) / (1 - p0))) / inflation
        before = state["cusum"]
        state["cusum"] = max(0.0, before + llr)
        if state["cusum"] > 0 and before == 0:
            state["run_start"], state["run_neg"] = window_start, 0
        state["run_neg"] = state["run_neg"] + negative if state["cusum"] > 0 else 0
        verdict = ShiftVerdict(None, negative / total if total else 0.0, p0, state["cusum"])
        window_end = window_start + c.window_s
        warmed = state["seen"] >= c.warmup_windows
        if state["open"] is None:
            if (warmed and state["cusum"] >= c.threshold and state["run_neg"] >= c.min_negative
                    and window_end >= state["cooldown_until"]):
                state["open"] = state["run_start"]
                verdict.event = "fired"
        elif state["cusum"] == 0.0:
            verdict.event, verdict.incident_started = "resolved", state["open"]
            state["open"], state["cooldown_until"] = None, window_end + c.cooldown_s
        if state["open"] is not None:
            verdict.incident_started = state["open"]
            state["cusum"] = min(state["cusum"], 3 * c.threshold)  # drains in reasonable time once it is over
        elif state["cusum"] < c.threshold / 3 or not warmed:
            # learn the share only from windows that do not look like a shift (frozen while one builds up)
            rate = max(1.0 - 0.5 ** (1.0 / c.baseline_half_life_windows), 1.0 / (state["seen"] + 1))
            decay = 1.0 - rate
            state["neg"], state["all"] = state["neg"] * decay + negative, state["all"] * decay + total
            if total > 1:
                pearson = (negative - total * p0) ** 2 / (total * p0 * (1 - p0))
                sample = min(max((pearson - 1.0) / (total - 1), 0.0), 0.5)
                state["rho"] += max(rate, 1.0 / (state["seen"] + 20)) * (sample - state["rho"])
        state["seen"] += 1
        return verdict
