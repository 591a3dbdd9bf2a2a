"""The alerting role's pure part: which count series a mention belongs to, and one series' state
(open windows with the ids, author and text hashes and terms of their mentions, the last closed
windows, the detector state) as a JSON dict kept in the role's Faust table (pipeline/alerts/alerting.py).
Closing a window judges it — the spike detector for count series, the sentiment-shift detector
for a brand's all-mentions series — and builds the alerts with their evidence.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from scipy.special import betainc

from stimmung.config import AlertingSettings, SeriesSettings, Settings
from stimmung.metrics import ALERT_WINDOWS_CLOSED, ALERTS
from stimmung.pipeline.alerts import evidence
from stimmung.pipeline.alerts.sentiment_shift import SentimentShiftDetector, ShiftConfig, ShiftVerdict
from stimmung.pipeline.alerts.spikes import HISTORY, DetectorConfig, SpikeDetector, Verdict
from stimmung.schemas.alert import Alert, AlertSample
from stimmung.schemas.mention import EnrichedMention

MAX_CATCH_UP_WINDOWS = 7 * 288  # a series idle for longer restarts its window clock
IGNORED_DETECTOR_SETTINGS = ("max_incident_s",)  # accepted for old configs; the level-shift rule bounds incidents
SHIFT = "sentiment_shift"  # the per-brand series of all mentions the sentiment-shift detector reads
SERIES_KEY_PARTS = ("brand", "topic", "platform", "sentiment", "signal", "min_relevance")


# --- series -------------------------------------------------------------------------------------

def series_of(mention: EnrichedMention, families: list[SeriesSettings]) -> list[tuple[str, dict[str, str]]]:
    """The count series a mention belongs to: (key, labels), e.g.
    ('brand=Nordbahn|topic=delivery|signal=complaint', {...})."""
    sentiment = mention.sentiment.label if mention.sentiment else None
    topics = [t.label for t in mention.topics]
    complaint = is_complaint(mention)
    out: dict[str, dict[str, str]] = {}
    for brand in sorted({b.brand for b in mention.brands}):
        for family in families:
            if family.complaint and not complaint:
                continue
            if family.sentiment and sentiment != family.sentiment:
                continue
            if family.topic and family.topic not in topics:
                continue
            if not mention.relevant_at(family.min_relevance):
                continue
            splits: list[dict[str, str]] = [{}]
            if "topic" in family.split_by:
                splits = [{**s, "topic": t} for s in splits for t in topics]
            if "platform" in family.split_by:
                splits = [{**s, "platform": mention.platform} for s in splits]
            for split in splits:
                labels = {"brand": brand, **({"topic": family.topic} if family.topic else {}), **split}
                if family.sentiment:
                    labels["sentiment"] = family.sentiment
                if family.complaint:
                    labels["signal"] = "complaint"
                if family.min_relevance is not None:  # a family of its own: not one key for two filters
                    labels["min_relevance"] = repr(float(family.min_relevance))  # exact: two minimums, two keys
                key = "|".join(f"{k}={labels[k]}" for k in SERIES_KEY_PARTS if k in labels)
                out[key] = labels
    return list(out.items())


def _min_relevance(labels: dict[str, str]) -> float | None:
    """The relevance minimum of the series' family (kept in its labels as written in its key)."""
    return float(labels["min_relevance"]) if "min_relevance" in labels else None


def is_complaint(mention: EnrichedMention) -> bool:
    """The trained complaint head's decision; without the heads (models.heads off, or a Hugging
    Face sentiment model) the prototype 'complaint' topic stands in."""
    if mention.complaint is not None:
        return mention.complaint.label == "complaint"
    return any(t.label == "complaint" for t in mention.topics)


def shift_series_of(mention: EnrichedMention) -> list[tuple[str, dict[str, str]]]:
    """Per brand one series of all its mentions (with their sentiment) for the sentiment-shift test."""
    return [(f"brand={b}|{SHIFT}", {"brand": b, "kind": SHIFT}) for b in sorted({b.brand for b in mention.brands})]


def detector_config(a: AlertingSettings) -> DetectorConfig:
    explicit = {k: v for k, v in a.detector.model_dump().items() if v is not None and k not in IGNORED_DETECTOR_SETTINGS}
    return DetectorConfig.preset(a.sensitivity, window_s=a.window_s, **explicit)


def shift_config(a: AlertingSettings) -> ShiftConfig:
    return ShiftConfig(window_s=a.window_s, threshold=a.sentiment_shift_threshold)


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0 or n <= 0:
        return 1.0
    return float(min(1.0, max(0.0, betainc(k, n - k + 1, min(max(p, 1e-9), 1.0)))))


def _sum_mix(span: list[dict[str, Any]], field: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for w in span:
        for k, n in w[field].items():
            mix[k] = mix.get(k, 0) + n
    return mix


def _item(mention: EnrichedMention) -> dict[str, Any]:
    """What the counts topic carries of a mention: no handle, no full text (hashes and terms)."""
    return {"id": mention.mention_id, "t": mention.created_at.timestamp(), "plat": mention.platform,
            "sample": _sample(mention), "sent": mention.sentiment.label if mention.sentiment else None,
            "au": evidence.author_key(mention.author.pseudonym if mention.author else None, mention.mention_id),
            "tx": evidence.text_key(mention.text), "terms": evidence.terms(mention.text)[:40]}


def _sample(mention: EnrichedMention) -> dict[str, Any]:
    e = mention.engagement
    return {"mention_id": mention.mention_id, "excerpt": mention.text[:280], "platform": mention.platform,
            "url": mention.url, "score": e.likes + 2 * e.shares + e.replies}


def _top(samples: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    unique = {s["mention_id"]: s for s in samples}
    return sorted(unique.values(), key=lambda s: (-s["score"], s["mention_id"]))[:n]


# --- one series' windows ------------------------------------------------------------------------

class SeriesBook:
    """Pure state handling of one series (a JSON dict kept in the Faust table)."""

    def __init__(self, settings: Settings, detector: SpikeDetector, shift: SentimentShiftDetector | None = None):
        self.settings = settings
        self.window_s = settings.alerting.window_s
        self.detector = detector
        self.shift = shift or SentimentShiftDetector(shift_config(settings.alerting))

    def new(self, partition: int, labels: dict[str, str], first_window: float) -> dict[str, Any]:
        detector = {"shift": SentimentShiftDetector.new_state()} if labels.get("kind") == SHIFT else {
            "det": SpikeDetector.new_state()}
        return {"partition": partition, "labels": labels, "closed_until": first_window, "open": {}, "closed": [],
                **detector}

    @staticmethod
    def empty_window() -> dict[str, Any]:
        return {"ids": [], "sent": {}, "plat": {}, "samples": [], "au": [], "tx": [], "terms": {}}

    def window_of(self, created: float) -> float:
        return math.floor(created / self.window_s) * self.window_s

    def add(self, state: dict[str, Any], item: dict[str, Any]) -> bool:
        """Count one mention; False when its window is already closed (late)."""
        ws = self.window_of(item["t"])
        if ws < state["closed_until"]:
            return False
        w = state["open"].setdefault(str(int(ws)), self.empty_window())
        if item["id"] in w["ids"]:
            return True  # a replayed message: already counted
        w["ids"].append(item["id"])
        for field in ("au", "tx"):  # windows persisted before evidence was kept lack the lists
            values = w.setdefault(field, [])
            if item.get(field) and item[field] not in values:
                values.append(item[field])
        if item.get("terms"):
            w["terms"] = evidence.merge_terms(w.get("terms", {}), item["terms"])
        if item.get("sent"):
            w["sent"][item["sent"]] = w["sent"].get(item["sent"], 0) + 1
        w["plat"][item["plat"]] = w["plat"].get(item["plat"], 0) + 1
        w["samples"] = _top(w["samples"] + [item["sample"]], self.settings.alerting.samples)
        return True

    def close(self, key: str, state: dict[str, Any], watermark: float) -> list[Alert]:
        """Close every window that ended at least ``lateness_s`` before ``watermark``."""
        alerts: list[Alert] = []
        lateness = self.settings.alerting.lateness_s
        if (watermark - lateness - state["closed_until"]) / self.window_s > MAX_CATCH_UP_WINDOWS:
            state["closed_until"] = self.window_of(watermark - lateness) - MAX_CATCH_UP_WINDOWS * self.window_s
        while state["closed_until"] + self.window_s + lateness <= watermark:
            ws = state["closed_until"]
            w = state["open"].pop(str(int(ws)), self.empty_window())
            n = len(w["ids"])
            # authors and texts are known only for windows counted since they were kept
            authors, texts = (len(w["au"]), len(w["tx"])) if n and "au" in w else (None, None)
            state["closed"] = (state["closed"] + [{"ws": ws, "n": n, "sent": w["sent"], "plat": w["plat"],
                                                   "samples": w["samples"], "au": w.get("au", []),
                                                   "tx": w.get("tx", []), "terms": w.get("terms", {})}])[-HISTORY:]
            if "shift" in state:
                shift = self.shift.observe(state["shift"], ws, n, min(n, w["sent"].get("negative", 0)))
                if shift.event:
                    alerts.append(self.shift_alert(key, state, ws, shift))
            else:
                verdict = self.detector.observe(state.setdefault("det", SpikeDetector.new_state()), ws, n, key,
                                                authors=authors, texts=texts)
                if verdict.event:
                    alerts.append(self.alert(key, state, ws, verdict))
            ALERT_WINDOWS_CLOSED.inc()
            state["closed_until"] = ws + self.window_s
        return alerts

    def alert(self, key: str, state: dict[str, Any], ws: float, v: Verdict) -> Alert:
        labels = state["labels"]
        span = [w for w in state["closed"] if w["ws"] > ws - v.scale * self.window_s]
        sentiment_mix: dict[str, int] = {}
        platform_mix: dict[str, int] = {}
        for w in span:
            for k, n in w["sent"].items():
                sentiment_mix[k] = sentiment_mix.get(k, 0) + n
            for k, n in w["plat"].items():
                platform_mix[k] = platform_mix.get(k, 0) + n
        start = datetime.fromtimestamp(ws - (v.scale - 1) * self.window_s, timezone.utc)
        end = datetime.fromtimestamp(ws + self.window_s, timezone.utc)
        severity = v.severity or "warning"
        event = v.event or "updated"
        alert = Alert(
            **self.evidence(span),
            expected_lower=v.lower, expected_upper=max(v.upper, v.lower), score=round(v.score, 3),
            threshold=round(v.threshold, 3),
            alert_id=v.incident_id or f"{key}@{int(ws)}", event_id=f"{v.incident_id}:{event}:{int(ws)}", event=event,
            status="resolved" if event == "resolved" else "firing", severity=severity, series=key,
            brand=labels["brand"], topic=labels.get("topic"), sentiment=labels.get("sentiment"),
            min_relevance=_min_relevance(labels), window_start=start, window_end=end,
            incident_started=datetime.fromtimestamp(v.incident_started, timezone.utc) if v.incident_started else None,
            observed=int(v.observed), expected=round(v.expected, 3), p_value=min(1.0, max(0.0, v.p_value)),
            sentiment_mix=sentiment_mix, platform_mix=platform_mix,
            samples=[AlertSample(**{k: s[k] for k in ("mention_id", "excerpt", "platform", "url")})
                     for s in _top([s for w in span for s in w["samples"]], self.settings.alerting.samples)],
            kibana_url=self.discover_link(labels, start, end),
        )
        ALERTS.labels(event=event, severity=severity).inc()
        return alert

    def evidence(self, span: list[dict[str, Any]]) -> dict[str, Any]:
        """Distinct authors and texts over the span (a window's hashes; the windows of one span
        can share an author, so the union), and its top terms."""
        if not any("au" in w for w in span):
            return {}
        return {"distinct_authors": len({a for w in span for a in w.get("au", [])}),
                "distinct_texts": len({t for w in span for t in w.get("tx", [])}),
                "top_terms": evidence.top_terms([w.get("terms", {}) for w in span])}

    def shift_alert(self, key: str, state: dict[str, Any], ws: float, v: ShiftVerdict) -> Alert:
        """A sentiment shift: the negative share of all the brand's mentions since the shift began."""
        labels = state["labels"]
        started = v.incident_started or ws
        # since the shift began, within the closed windows kept (the last hour)
        span = [w for w in state["closed"] if w["ws"] >= started] or state["closed"][-1:]
        total = sum(w["n"] for w in span)
        negative = sum(w["sent"].get("negative", 0) for w in span)
        expected = total * v.baseline_share
        event = v.event or "updated"
        start = datetime.fromtimestamp(min(w["ws"] for w in span), timezone.utc)
        end = datetime.fromtimestamp(ws + self.window_s, timezone.utc)
        negatives = [w for w in span if w["sent"].get("negative")]
        alert = Alert(
            kind=SHIFT, alert_id=f"{key}@{int(started)}", event_id=f"{key}@{int(started)}:{event}:{int(ws)}", event=event,
            status="resolved" if event == "resolved" else "firing", severity="warning", series=key,
            brand=labels["brand"], sentiment="negative", window_start=start, window_end=end,
            incident_started=datetime.fromtimestamp(started, timezone.utc),
            observed=negative, expected=round(expected, 3), p_value=binomial_tail(negative, total, v.baseline_share),
            negative_share=round(negative / total, 4) if total else 0.0, baseline_share=round(v.baseline_share, 4),
            sentiment_mix=_sum_mix(span, "sent"), platform_mix=_sum_mix(span, "plat"),
            samples=[AlertSample(**{k: s[k] for k in ("mention_id", "excerpt", "platform", "url")})
                     for s in _top([s for w in span for s in w["samples"]], self.settings.alerting.samples)],
            kibana_url=self.discover_link({**labels, "sentiment": "negative"}, start, end),
            **self.evidence(negatives or span),
        )
        ALERTS.labels(event=event, severity="warning").inc()
        return alert

    def discover_link(self, labels: dict[str, str], start: datetime, end: datetime) -> str | None:
        if not self.settings.kibana.url:
            return None
        from stimmung.pipeline.elastic.search import SearchRequest, discover_url

        # a complaint series' slice: the complaint topic, which the complaint head decides
        topic = [labels["topic"]] if "topic" in labels else (["complaint"] if labels.get("signal") == "complaint" else [])
        request = SearchRequest(brand=[labels["brand"]], topic=topic,
                                sentiment=[labels["sentiment"]] if "sentiment" in labels else [],
                                platform=[labels["platform"]] if "platform" in labels else [],
                                min_relevance=_min_relevance(labels),
                                since=start.isoformat(), until=end.isoformat())
        return discover_url(self.settings.kibana.url, request)
