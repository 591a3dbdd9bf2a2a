"""Complaint-spike detection for one count series (e.g. negative mentions of a brand per 5 min).

Built on real brand-mention volumes (NAB realTweets, benchmarks/spikes.py --nab), which are far
burstier than any textbook count family: a single retweet storm is 100× the median, a campaign
lifts the level for days. Each part is there because the benchmark needed it:

- **Robust seasonal baseline in log space**: log(1 + count) = level + hour-of-day effect +
  weekday effect, learned from residuals clipped at ``clip_mad`` × their mean absolute deviation
  (a burst moves the baseline no more than an ordinary window would). Frozen while an incident
  is open, so a plateau stays an incident.
- **One score over three time scales** (5, 15, 60 minutes: the window and rolling sums): the
  log residual of the sum divided by that scale's robust spread, in units of the scale's typical
  daily peak (median of its daily maxima). A series whose 5-minute windows are bursty by nature
  needs more there than a 60-minute wave does.
- **Alert budget from the series' own history**: operators say how many pages per series and
  week they can afford on ordinary days (``budget_per_week``; presets low/medium/high). Every
  day's peak score is kept for ``history_days`` — spikes included: a history of only the days
  that stayed below the bar (as in the previous version) pulls the bar down and the series paged
  three times its budget. The threshold is the score a day's peak exceeds with probability
  budget / 7, read from the median and upper quartile of the daily peaks as an exponential tail
  (``quartile_tail``): the top quarter of days, where incidents are, does not move it, so past
  incidents do not raise the bar for the next. The order statistic (``peak_threshold``, exact for
  exchangeable days) is kept as ``tail="order"``; on NAB it let past incidents hide the next.
- **Maximum notification frequency**: a series that paged pages again no sooner than
  ``min_page_interval_s``; what happens meanwhile is a muted incident (baseline frozen, nothing
  sent). **Hysteresis**: an incident is quiet only below ``resolve_fraction`` × the threshold.
- **Level shifts**: when the median residual of the last hour has stayed off the baseline for
  ``level_shift_s``, the level jumps there (a campaign, a new audience).
- **Evidence**: with per-window distinct authors and distinct texts, the test uses the smallest of
  count, authors and texts, and a window needs ``min_distinct`` of each to count at all: one
  author or one copied text alone cannot page.
- **Young series** (fewer than ``min_history_days`` daily peaks) use a conservative
  negative-binomial tail test (``alpha``) on the same baseline, after ``warmup_windows``.
- **Incidents**: ``fired`` once, ``escalated`` once when it turns critical (a peak
  ``escalate_factor`` × rarer than the threshold's, or ``critical_ratio`` × expected) after its
  first hour (earlier, the severity rises silently), ``updated`` while it lasts, ``resolved``
  after ``resolve_windows`` quiet windows; a cooldown follows. Paging events: fired, escalated.

The p-value of a verdict is the share of past days whose peak was as surprising. State: a
JSON-serialisable dict of ~200 numbers per series; each window costs O(history_days). One module
over 400 lines on purpose: baseline, scores, thresholds and incidents all read and write the one
state dict, and splitting them would spread its invariants over files.

One module on purpose (about 440 lines): the detector's state, scoring and budgeted thresholds
are one streaming algorithm; the role's window bookkeeping is in series.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from scipy.special import betainc, gammainc

SCALES = (1, 3, 12)  # windows per test: 5, 15 and 60 minutes at the default window
HISTORY = max(SCALES)
STATE_VERSION = 3
BUDGETS = {"low": 0.25, "medium": 0.5, "high": 1.0}  # paging alerts per series and week
# An incident that turns critical within its first hour is the same news: its severity is raised
# silently ('updated' events carry it); an escalation pages only after that.
ESCALATE_AFTER_S = 3600.0


@dataclass(frozen=True)
class DetectorConfig:
    window_s: int = 300
    budget_per_week: float = BUDGETS["medium"]
    alpha: float = 1e-4  # young series only: family-wise tail probability per window
    min_count: int = 5
    min_ratio: float = 1.5
    critical_ratio: float = 10.0
    warmup_windows: int = 288  # a day: the fallback test needs a level and some hours
    resolve_windows: int = 2
    cooldown_s: float = 1800.0
    escalate_factor: float = 4.0  # critical: the peak score ``escalate_factor`` × rarer than the threshold's
    min_page_interval_s: float = 12 * 3600.0  # maximum notification frequency: no new incident pages sooner
    resolve_fraction: float = 0.5  # hysteresis: quiet means below this share of the threshold
    level_shift_s: float = 3 * 3600.0
    min_expected: float = 0.05
    level_half_life_windows: float = 288.0
    hour_half_life_obs: float = 36.0
    dow_half_life_obs: float = 576.0
    spread_half_life_windows: float = 864.0
    clip_mad: float = 3.0
    history_days: int = 28
    min_history_days: int = 7
    min_threshold: float = 3.0  # in spreads: a flat series does not page on small wiggles
    dispersion_prior: float = 0.1  # young series: 1/k of the fallback negative binomial
    tail: str = "quartile"
    min_distinct: int = 2  # distinct authors and texts a window needs to count as evidence at all

    @classmethod
    def preset(cls, sensitivity: Literal["low", "medium", "high"], **overrides: Any) -> "DetectorConfig":
        # Budgets chosen with benchmarks/spikes.py --nab (figures in benchmarks/RESULTS.md).
        return cls(**{"budget_per_week": BUDGETS[sensitivity], **overrides})


@dataclass
class Verdict:
    """What one closed window means for the series."""

    event: Literal["fired", "escalated", "updated", "resolved"] | None
    observed: int
    expected: float
    p_value: float  # share of the last days whose peak was this surprising (young series: tail probability)
    scale: int  # windows in the most significant test
    severity: Literal["warning", "critical"] | None = None
    incident_id: str | None = None
    incident_started: float | None = None
    lower: float = 0.0  # expected band of the count over ``scale`` windows: beyond ``upper`` is an alert
    upper: float = 0.0
    score: float = 0.0  # surprise in units of the scale's typical daily peak, and the threshold it was held against
    threshold: float = 0.0
    evidence: int | None = None  # min(count, distinct authors, distinct texts) summed over the scale, when known


def upper_tail(x: float, mean: float, inv_k: float) -> float:
    """P(X >= x) for a count with this mean: negative binomial with dispersion 1/k (Var = mean +
    mean²/k), Poisson when inv_k is ~0."""
    if x <= 0:
        return 1.0
    mean = max(mean, 1e-9)
    if inv_k < 1e-6:
        return float(gammainc(x, mean))
    r = 1.0 / inv_k
    return float(betainc(x, r, mean / (r + mean)))


def tail_fit(peaks: list[float]) -> tuple[float, float]:
    """(median, mean excess over it) of daily peaks: the upper half read as an exponential tail,
    P(peak > median + t) = 0.5 exp(-t / mean excess). Only used beyond the largest peak seen."""
    xs = sorted(peaks)
    median = xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])
    upper = [x - median for x in xs if x > median]
    return median, max(sum(upper) / len(upper) if upper else 0.0, 0.1)


def peak_threshold(peaks: list[float], exceed_per_day: float) -> float:
    """The score a new day's peak exceeds with probability ``exceed_per_day`` if it is like the
    past ``peaks``: the order statistic of rank (n + 1) × exceed from the top — for exchangeable
    days exactly that rate, whatever their law (the conformal argument), interpolated between
    ranks. Rarer than 1 / (n + 1) the history cannot say: the exponential tail of the upper half
    extends it above the largest peak."""
    xs = sorted(peaks, reverse=True)
    rank = exceed_per_day * (len(xs) + 1)
    if rank >= len(xs):
        return xs[-1]
    if rank >= 1.0:
        lo = int(rank)
        return xs[lo - 1] + (rank - lo) * (xs[lo] - xs[lo - 1])
    median, excess = tail_fit(xs)
    beyond = median + excess * math.log(0.5 / exceed_per_day)
    return max(xs[0], beyond) if exceed_per_day < 0.5 else xs[0]


def quartile_tail(peaks: list[float], exceed_per_day: float) -> float:
    """The score a day's peak exceeds with probability ``exceed_per_day``, from the median and
    upper quartile of the peaks read as an exponential tail, P(peak > median + t) = 0.5 exp(-t/β),
    β = (q75 - median) / ln 2: the top quarter of days — where the incidents are — moves neither."""
    xs = sorted(peaks)

    def q(f: float) -> float:
        pos = f * (len(xs) - 1)
        lo = int(pos)
        return xs[lo] + (pos - lo) * (xs[min(lo + 1, len(xs) - 1)] - xs[lo])

    median = q(0.5)
    beta = max((q(0.75) - median) / math.log(2.0), 0.05)
    return median + beta * math.log(0.5 / min(exceed_per_day, 0.5))


def peak_p_value(peaks: list[float], score: float) -> float:
    """Share of the past days whose peak reached ``score`` (conformal p-value per day)."""
    return (1 + sum(1 for x in peaks if x >= score)) / (len(peaks) + 1)


def _poisson_var(m: float) -> float:
    """Variance of log(1 + X) for a Poisson count of mean m (delta method)."""
    return m / (1.0 + m) ** 2


def _sd(spread: float, m: float) -> float:
    """Spread of log(1 + count) at expected count m: Poisson noise plus the series' own excess
    (a quiet series' zeros and ones are not read as a tiny spread)."""
    return math.sqrt(_poisson_var(m) + spread * spread)


def _rate(half_life: float, n: int) -> float:  # 1/(n+1) while young: a running mean to start with
    return max(1.0 - 0.5 ** (1.0 / half_life), 1.0 / (n + 1))


@dataclass
class SpikeDetector:
    config: DetectorConfig = field(default_factory=DetectorConfig)

    @staticmethod
    def new_state() -> dict[str, Any]:
        return {"v": STATE_VERSION, "seen": 0, "level": 0.0, "hour": [0.0] * 24, "dow": [0.0] * 7,
                "hour_n": [0] * 24, "dow_n": [0] * 7, "spread": [0.5] * len(SCALES), "spread_n": 0,
                "off_run": 0, "recent": [], "recent_expected": [], "recent_evidence": [],
                "day": None, "day_max": [None] * len(SCALES), "maxima": [[] for _ in SCALES],
                "day_peak": None, "peaks": [], "incident": None, "cooldown_until": 0.0, "last_page": None,
                "calm": HISTORY}

    def baseline(self, state: dict[str, Any], window_start: float) -> float:
        """Expected log(1 + count) of the window."""
        when = datetime.fromtimestamp(window_start, timezone.utc)
        return state["level"] + state["hour"][when.hour] + state["dow"][when.weekday()]

    def expected(self, state: dict[str, Any], window_start: float) -> float:
        return max(math.expm1(self.baseline(state, window_start)), self.config.min_expected)

    def norms(self, state: dict[str, Any]) -> list[float]:
        """Per scale its typical daily peak (median of the daily maxima): scores of all scales in
        one unit, so a series whose 5-minute windows are bursty by nature needs more there."""
        out = []
        for maxima in state["maxima"]:
            xs = sorted(maxima)
            out.append(max(xs[len(xs) // 2], 1.0) if xs else 1.0)
        return out

    def thresholds(self, state: dict[str, Any]) -> tuple[float, float] | None:
        """(threshold, critical threshold) of the combined score; None while history is short."""
        c = self.config
        if len(state["peaks"]) < c.min_history_days:
            return None
        exceed = c.budget_per_week / 7.0
        rule = quartile_tail if c.tail == "quartile" else peak_threshold
        return rule(state["peaks"], exceed), rule(state["peaks"], exceed / c.escalate_factor)

    def observe(self, state: dict[str, Any], window_start: float, count: int, series: str = "",
                authors: int | None = None, texts: int | None = None) -> Verdict:
        """Feed one closed window (in time order); updates ``state`` in place. ``authors`` and
        ``texts``: distinct authors and distinct texts among the window's mentions, when known."""
        c = self.config
        if state.get("v") != STATE_VERSION:  # a state of an older detector: learn again
            state.clear()
            state.update(self.new_state())
        self._roll_day(state, window_start)
        base = self.baseline(state, window_start)
        mu = max(math.expm1(base), c.min_expected)
        evidence = None if authors is None and texts is None else min(
            count, authors if authors is not None else count, texts if texts is not None else count)
        recent = (state["recent"] + [count])[-HISTORY:]
        recent_mu = (state["recent_expected"] + [mu])[-HISTORY:]
        recent_ev = (state["recent_evidence"] + [evidence])[-HISTORY:]
        incident = state["incident"]
        # An open incident is judged on the scales up to the one it was reported on (at least 15
        # minutes); outside one, rolling sums reach back only to the end of the last incident.
        calm = state["calm"] + 1
        allowed = [s for s in SCALES if (s <= max(incident["reported_scale"], SCALES[1]) if incident else s <= calm)]
        limits, norms = self.thresholds(state), self.norms(state)
        warmed = state["seen"] >= c.warmup_windows
        best: tuple | None = None  # margin, i, x, m, score, threshold, p, critical, evidence
        units: list[float | None] = []  # per scale: the evidence's surprise in typical daily peaks
        held = 0.0  # the largest allowed score: an open incident stays open while it is high
        for i, scale in enumerate(SCALES):
            if len(recent) < scale:
                units.append(None)
                continue
            x, m = sum(recent[-scale:]), sum(recent_mu[-scale:])
            sd = _sd(state["spread"][i], m)
            window_ev = recent_ev[-scale:]
            known = any(e is not None for e in window_ev)
            # what counts is the evidence: distinct authors and texts, never more than the count
            x_ev = sum(e if e is not None else n for e, n in zip(window_ev, recent[-scale:])) if known else x
            z = (math.log1p(x_ev) - math.log1p(m)) / sd
            units.append(z / norms[i])
            if scale not in allowed or not warmed:
                continue
            held = max(held, z / norms[i])
            if known and max((e or 0) for e in window_ev) < c.min_distinct:
                continue
            if x_ev < c.min_count or x_ev < c.min_ratio * m or z < c.min_threshold:
                continue
            if limits is not None:
                limit, critical_limit = limits
                u = z / norms[i]
                p = peak_p_value(state["peaks"], u)
                significant, margin = u > limit, u / limit
                critical = u > critical_limit or x_ev >= c.critical_ratio * m
                score = u
            else:  # young series: the negative-binomial tail
                limit, score = c.min_threshold, z
                p = min(1.0, upper_tail(x_ev, m, c.dispersion_prior) * len(SCALES))
                significant = p < c.alpha
                margin = math.log(max(p, 1e-300)) / math.log(c.alpha)
                critical = p < c.alpha / c.escalate_factor and x_ev >= c.critical_ratio * m
            if significant and (best is None or margin > best[0]):
                best = (margin, i, x, m, score, limit, p, critical, x_ev if known else None)
        quiet_below = limits[0] * c.resolve_fraction if limits is not None else math.inf
        verdict = self._incident(state, incident, best, window_start, series, count, mu, held < quiet_below)
        if best is None:
            verdict.score = units[0] or 0.0  # report the 5-minute view
            verdict.threshold = limits[0] if limits else c.min_threshold
            verdict.evidence = evidence
        self._band(state, verdict, limits, norms, recent_mu)
        self._track_peaks(state, units)
        self._adapt(state, window_start, count, base, recent, recent_mu)
        state["seen"] += 1
        state["calm"] = 0 if incident is not None and state["incident"] is None else calm
        state["recent"], state["recent_expected"], state["recent_evidence"] = recent, recent_mu, recent_ev
        return verdict

    def _incident(self, state: dict[str, Any], incident: dict[str, Any] | None, best: tuple | None,
                  window_start: float, series: str, count: int, mu: float, quiet: bool) -> Verdict:
        c = self.config
        window_end = window_start + c.window_s
        closed = False
        if best is None:
            verdict = Verdict(None, count, mu, 1.0, 1)
            if incident is not None:
                incident["quiet"] = incident["quiet"] + 1 if quiet else 0
                # not over while the last hour's median is still high: a level shift under way
                # stays one incident until the baseline has moved (no page per dip)
                over = incident["quiet"] >= c.resolve_windows and state["off_run"] <= 0
                verdict.event = "resolved" if over else "updated"
                verdict.severity = incident["severity"]
                if over:
                    state["cooldown_until"], closed = window_end + c.cooldown_s, True
                if incident.get("muted"):
                    verdict.event = None
        else:
            _, i, x, m, score, limit, p, critical, x_ev = best
            scale = SCALES[i]
            severity: Literal["warning", "critical"] = "critical" if critical else "warning"
            verdict = Verdict(None, x, m, min(1.0, max(0.0, p)), scale, severity, score=score, threshold=limit,
                              evidence=x_ev)
            if incident is None and window_end >= state["cooldown_until"]:
                start = window_start - (scale - 1) * c.window_s
                # maximum notification frequency: a series that paged recently gets a muted
                # incident (the baseline still freezes, nothing is sent, it does not page later)
                muted = state["last_page"] is not None and window_end < state["last_page"] + c.min_page_interval_s
                incident = {"id": f"{series}@{int(start)}", "started": start, "severity": severity,
                            "reported": x, "reported_scale": scale, "quiet": 0, "muted": muted}
                if not muted:
                    verdict.event, state["last_page"] = "fired", window_end
            elif incident is not None:
                incident["quiet"] = 0
                verdict.event = None if incident.get("muted") else "updated"
                if severity == "critical" and incident["severity"] == "warning":
                    incident.update(severity=severity, reported=x, reported_scale=scale)
                    if verdict.event and window_end - incident["started"] >= ESCALATE_AFTER_S:
                        verdict.event, state["last_page"] = "escalated", window_end
                verdict.severity = incident["severity"]
        if incident is not None and verdict.event is not None:
            verdict.incident_id, verdict.incident_started = incident["id"], incident["started"]
        state["incident"] = None if closed else incident
        return verdict

    def _band(self, state: dict[str, Any], verdict: Verdict, limits: tuple[float, float] | None,
              norms: list[float], recent_mu: list[float]) -> None:
        """Expected band of the count over the verdict's scale: what the baseline allows before
        the threshold is reached."""
        i = SCALES.index(verdict.scale)
        m = sum(recent_mu[-verdict.scale:])
        width = max(limits[0] * norms[i] if limits else 0.0, self.config.min_threshold) * _sd(state["spread"][i], m)
        verdict.lower = round(max(0.0, math.expm1(math.log1p(m) - width)), 3)
        verdict.upper = round(math.expm1(math.log1p(m) + width), 3)

    def _roll_day(self, state: dict[str, Any], window_start: float) -> None:
        day = int(window_start // 86400)
        if state["day"] is None:
            state["day"] = day
        elif day != state["day"]:
            keep = self.config.history_days
            if state["seen"] >= self.config.warmup_windows:  # a day's peak over a rough baseline says little
                for i, top in enumerate(state["day_max"]):
                    if top is not None:
                        state["maxima"][i] = (state["maxima"][i] + [round(top, 4)])[-keep:]
                if state["day_peak"] is not None:
                    state["peaks"] = (state["peaks"] + [round(state["day_peak"], 4)])[-keep:]
            state["day"], state["day_max"], state["day_peak"] = day, [None] * len(SCALES), None

    @staticmethod
    def _track_peaks(state: dict[str, Any], units: list[float | None]) -> None:
        """Every window, spikes included: a threshold learned from censored peaks (only the days
        that stayed below it) sinks, and the series pages more than its budget."""
        norms = [max(sorted(m)[len(m) // 2], 1.0) if m else 1.0 for m in state["maxima"]]
        for i, u in enumerate(units):
            if u is None:
                continue
            z = u * norms[i]
            if state["day_max"][i] is None or z > state["day_max"][i]:
                state["day_max"][i] = z
            if state["day_peak"] is None or u > state["day_peak"]:
                state["day_peak"] = u

    def _adapt(self, state: dict[str, Any], window_start: float, count: int, base: float,
               recent: list[int], recent_mu: list[float]) -> None:
        c = self.config
        y = math.log1p(count)
        # A level shift: the median residual of the last hour has stayed off the baseline, on the
        # same side, for level_shift_s. A median, so one burst (a retweet storm) is no shift.
        residuals = sorted(math.log1p(x) - math.log1p(m) for x, m in zip(recent, recent_mu))
        shift = residuals[len(residuals) // 2]
        hour_sd = _sd(state["spread"][0], sum(recent_mu) / len(recent_mu)) / math.sqrt(len(recent_mu))
        side = (shift > 3.0 * hour_sd) - (shift < -3.0 * hour_sd)
        if not side or len(recent) < HISTORY or state["seen"] < c.warmup_windows:
            state["off_run"] = 0
        else:
            state["off_run"] = state["off_run"] + side if state["off_run"] * side >= 0 else side
        if abs(state["off_run"]) * c.window_s >= c.level_shift_s:
            state["level"] += shift
            state["off_run"] = 0
            return
        if state["incident"] is not None:
            return  # frozen: a spike must not teach that spikes are normal
        when = datetime.fromtimestamp(window_start, timezone.utc)
        h, d = when.hour, when.weekday()
        young = state["seen"] < c.warmup_windows
        bound = c.clip_mad * _sd(state["spread"][0], max(math.expm1(base), c.min_expected))
        clip = (lambda r: r) if young else (lambda r: max(-bound, min(bound, r)))
        state["level"] += _rate(c.level_half_life_windows, state["seen"]) * clip(y - self.baseline(state, window_start))
        state["hour"][h] += _rate(c.hour_half_life_obs, state["hour_n"][h]) * clip(y - self.baseline(state, window_start))
        state["dow"][d] += _rate(c.dow_half_life_obs, state["dow_n"][d]) * clip(y - self.baseline(state, window_start))
        state["hour_n"][h] += 1
        state["dow_n"][d] += 1
        for key in ("hour", "dow"):  # effects average zero: the level carries the volume
            seen = [j for j, n in enumerate(state[f"{key}_n"]) if n]
            shift = sum(state[key][j] for j in seen) / len(seen)
            state["level"] += shift
            for j in seen:
                state[key][j] -= shift
        # Each scale's spread: mean absolute log residual of its sum, clipped like the baseline.
        state["spread_n"] += 1
        rate = _rate(c.spread_half_life_windows, state["spread_n"])
        for i, scale in enumerate(SCALES):
            if len(state["recent"]) + 1 < scale:
                continue
            x = sum(state["recent"][-(scale - 1):] if scale > 1 else []) + count
            m = sum(state["recent_expected"][-(scale - 1):] if scale > 1 else []) + max(math.expm1(base), c.min_expected)
            r = abs(math.log1p(x) - math.log1p(m))
            if not young:
                r = min(r, c.clip_mad * _sd(state["spread"][i], m))
            excess = math.sqrt(max(0.0, r * r - _poisson_var(m)))
            state["spread"][i] = max(0.01, state["spread"][i] + rate * (excess - state["spread"][i]))
