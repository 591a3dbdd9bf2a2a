"""Frozen copy of pipeline/spikes.py as of commit 25eca88 (the negative-binomial detector), kept only
as the same-run baseline of benchmarks/spikes.py. Not used by the pipeline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from scipy.special import betainc, gammainc

SCALES = (1, 3, 12)  # windows per test: 5, 15 and 60 minutes at the default window
HISTORY = max(SCALES)


@dataclass(frozen=True)
class DetectorConfig:
    window_s: int = 300
    alpha: float = 1e-3  # family-wise significance per window (split over the scales)
    min_count: int = 5
    min_ratio: float = 2.0
    critical_ratio: float = 5.0
    warmup_windows: int = 7 * 288  # one week of 5-minute windows: a weekly cycle seen once
    resolve_windows: int = 2
    cooldown_s: float = 1800.0
    escalate_factor: float = 2.0
    min_expected: float = 0.05  # per window: even a silent series may see a mention
    level_half_life_windows: float = 288.0
    hour_half_life_obs: float = 36.0
    dow_half_life_obs: float = 576.0
    max_incident_s: float = 6 * 3600.0
    dispersion_prior: float = 0.1  # 1/k: social counts are burstier than Poisson
    dispersion_prior_n: int = 50
    season_pseudo_count: float = 0.5  # per window: shrinks seasonal factors of quiet series towards 1
    learn_clip_sd: float = 2.0  # observations above expected + 2 sd update the baseline as if they were that

    @classmethod
    def preset(cls, sensitivity: Literal["low", "medium", "high"], **overrides: Any) -> "DetectorConfig":
        # Chosen with benchmarks/spikes.py (figures in benchmarks/RESULTS.md).
        base = {"low": dict(alpha=1e-4, min_count=10, min_ratio=3.0),
                "medium": dict(alpha=1e-3, min_count=5, min_ratio=2.0),
                "high": dict(alpha=3e-3, min_count=3, min_ratio=1.5)}[sensitivity]
        return cls(**{**base, **overrides})


@dataclass
class Verdict:
    """What one closed window means for the series."""

    event: Literal["fired", "escalated", "updated", "resolved"] | None
    observed: int
    expected: float
    p_value: float
    scale: int  # windows in the most significant test
    severity: Literal["warning", "critical"] | None = None
    incident_id: str | None = None
    incident_started: float | None = None


def upper_tail(x: float, mean: float, inv_k: float) -> float:
    """P(X >= x) for a count with this mean: negative binomial with dispersion 1/k (Var = mean +
    mean²/k), Poisson when inv_k is ~0. Via the regularised incomplete beta/gamma functions."""
    if x <= 0:
        return 1.0
    mean = max(mean, 1e-9)
    if inv_k < 1e-6:
        return float(gammainc(x, mean))  # Poisson: P(X >= x) = P(x, mean)
    r = 1.0 / inv_k
    p = r / (r + mean)
    return float(betainc(x, r, 1.0 - p))  # NB: P(X >= x) = I_{1-p}(x, r)


@dataclass
class SpikeDetector:
    config: DetectorConfig = field(default_factory=DetectorConfig)

    @staticmethod
    def new_state() -> dict[str, Any]:
        return {"level": 0.0, "hour_mean": [0.0] * 24, "dow_mean": [0.0] * 7, "hour_n": [0] * 24, "dow_n": [0] * 7,
                "inv_k": DetectorConfig.dispersion_prior, "seen": 0, "recent": [], "recent_expected": [], "incident": None,
                "cooldown_until": 0.0}

    def _factors(self, state: dict[str, Any], hour: int, dow: int) -> tuple[float, float]:
        """Shape factors (average 1) of this hour of day and day of week. A pseudo-count shrinks
        them towards 1 where counts are small, so a quiet series' zeros cannot make a factor ~0;
        a slot not seen yet (the first week's Tuesday, say) is neutral."""
        k = self.config.season_pseudo_count

        def factor(means: list[float], seen: list[int], slot: int) -> float:
            known = [m for m, n in zip(means, seen) if n]
            if not seen[slot] or not known:
                return 1.0
            return (means[slot] + k) / (sum(known) / len(known) + k)

        return factor(state["hour_mean"], state["hour_n"], hour), factor(state["dow_mean"], state["dow_n"], dow)

    def expected(self, state: dict[str, Any], window_start: float) -> float:
        when = datetime.fromtimestamp(window_start, timezone.utc)
        fh, fd = self._factors(state, when.hour, when.weekday())
        return max(state["level"] * fh * fd, self.config.min_expected)

    def observe(self, state: dict[str, Any], window_start: float, count: int, series: str = "") -> Verdict:
        """Feed one closed window (in time order); updates ``state`` in place."""
        c = self.config
        mu = self.expected(state, window_start)
        recent = (state["recent"] + [count])[-HISTORY:]
        recent_mu = (state["recent_expected"] + [mu])[-HISTORY:]
        incident = state["incident"]
        # An open incident is judged on the scales up to the one it was reported on (at least
        # 15 minutes): a short spike resolves when the recent windows are calm, not an hour
        # later when the 60-min sum forgets it.
        # Outside an incident, rolling sums reach back only to the end of the last one: its
        # windows must not make a second alert once the cooldown is over.
        calm = state.get("calm", HISTORY) + 1
        scales = [s for s in SCALES if (s <= max(incident["reported_scale"], SCALES[1]) if incident else s <= calm)]
        best_p, best_scale, best_x, best_mu = 1.0, 1, count, mu
        warmed = state["seen"] >= c.warmup_windows
        for scale in scales:
            if len(recent) < scale:
                break
            x, m = sum(recent[-scale:]), sum(recent_mu[-scale:])
            p = min(1.0, upper_tail(x, m, state["inv_k"]) * len(SCALES))
            if x >= c.min_count and x >= c.min_ratio * m and p < best_p:
                best_p, best_scale, best_x, best_mu = p, scale, x, m
        significant = warmed and best_p < c.alpha
        verdict = Verdict(None, best_x, best_mu, best_p, best_scale)
        window_end = window_start + c.window_s
        if significant:
            ratio = best_x / max(best_mu, 1e-9)
            severity: Literal["warning", "critical"] = "critical" if ratio >= c.critical_ratio else "warning"
            verdict.severity = severity
            if incident is None and window_end >= state["cooldown_until"]:
                start = window_start - (best_scale - 1) * c.window_s
                incident = {"id": f"{series}@{int(start)}", "started": start, "severity": severity,
                            "reported": best_x, "reported_scale": best_scale, "quiet": 0}
                verdict.event = "fired"
            elif incident is not None:
                incident["quiet"] = 0
                grew = (best_scale == incident["reported_scale"]
                        and best_x >= c.escalate_factor * incident["reported"])
                if (severity == "critical" and incident["severity"] == "warning") or grew:
                    incident.update(severity=severity, reported=best_x, reported_scale=best_scale)
                    verdict.event = "escalated"
                else:
                    verdict.event = "updated"
                    verdict.severity = incident["severity"]
        elif incident is not None:
            incident["quiet"] += 1
            if incident["quiet"] >= c.resolve_windows:
                verdict.event = "resolved"
                verdict.severity = incident["severity"]
                state["cooldown_until"] = window_end + c.cooldown_s
            else:
                verdict.event = "updated"
                verdict.severity = incident["severity"]
        if incident is not None:
            verdict.incident_id, verdict.incident_started = incident["id"], incident["started"]
        state["incident"] = None if verdict.event == "resolved" else incident
        # The baseline is frozen while an incident is open, so a plateau stays an incident; one
        # that lasts longer than max_incident_s is a new normal (a campaign, a bigger audience)
        # and is learned again, winsorised, until the incident resolves.
        long_incident = incident is not None and window_end - incident["started"] > c.max_incident_s
        if (state["incident"] is None and verdict.event != "resolved") or long_incident:
            self._learn(state, window_start, count, mu)
        state["seen"] += 1
        state["calm"] = 0 if verdict.event == "resolved" else calm
        state["recent"], state["recent_expected"] = recent, recent_mu
        return verdict

    def _learn(self, state: dict[str, Any], window_start: float, count: int, mu: float) -> None:
        c = self.config
        when = datetime.fromtimestamp(window_start, timezone.utc)
        h, d = when.hour, when.weekday()
        # Winsorise: a wild window (an undetected small spike, say) moves the baseline no more
        # than a plausible one would; a lasting change of level is still learned, step by step.
        var = mu + state["inv_k"] * mu * mu
        x = min(float(count), mu + c.learn_clip_sd * math.sqrt(var) + 1.0) if state["seen"] >= c.warmup_windows else float(count)

        def rate(half_life: float, n: int) -> float:  # 1/n while young: a running mean to start with
            return max(1.0 - 0.5 ** (1.0 / half_life), 1.0 / (n + 1))

        state["hour_mean"][h] += rate(c.hour_half_life_obs, state["hour_n"][h]) * (x - state["hour_mean"][h])
        state["dow_mean"][d] += rate(c.dow_half_life_obs, state["dow_n"][d]) * (x - state["dow_mean"][d])
        state["hour_n"][h] += 1
        state["dow_n"][d] += 1
        fh, fd = self._factors(state, h, d)
        state["level"] += rate(c.level_half_life_windows, state["seen"]) * (x / (fh * fd) - state["level"])
        # Overdispersion: E[(x - mu)^2] = mu + mu^2/k  =>  1/k ~ ((x - mu)^2 - mu) / mu^2, from
        # windows within 2.5 sd only (corrected for that truncation), so undetected spikes do not
        # inflate it; and only where counts are large enough for the moment to mean something
        # (below, Poisson and negative binomial hardly differ anyway).
        # Learned only after the warm-up (before, the expectation itself is still rough), starting
        # from a prior of moderate overdispersion worth ``dispersion_prior_n`` windows.
        sd = math.sqrt(mu + max(state["inv_k"], 0.02) * mu * mu)
        if state["seen"] >= c.warmup_windows and mu >= 3.0 and abs(count - mu) <= 2.5 * sd:
            state["inv_n"] = state.get("inv_n", 0) + 1
            sample = min(1.0, max(0.0, ((count - mu) ** 2 / 0.876 - mu) / (mu * mu)))
            step = max(1.0 - 0.5 ** (1.0 / c.level_half_life_windows), 1.0 / (state["inv_n"] + c.dispersion_prior_n))
            state["inv_k"] += step * (sample - state["inv_k"])
