"""Complaint-spike alerting: windowed counts in Faust tables -> spike detector -> alerts -> deliveries.

One Faust app (``stimmung alerting``, consumer group ``<app_id>-alerting``):

    enriched topic --fan_out--> counts topic, keyed by series (one series lives in one partition)
    counts topic ----count----> table ``alert-series``: per series its open windows (the ids of
                                the mentions seen: counting twice after a replay is impossible),
                                the last closed windows and the detector state
    tick task ----------------> a tick into every partition of the counts topic: windows that ended
                                more than ``lateness_s`` before the watermark are closed, judged
                                (pipeline/alerts/spikes.py, empty windows included) and alert events sent
    alerts topic --deliver----> Elasticsearch alerts index (id = event id) and the routed channels

Windows are in event time (the mention's creation). The watermark (pipeline/alerts/watermark.py) is the
wall clock when this app is idle and Kafka confirms it has read every enriched partition it holds,
and otherwise — mentions flowing, or a backlog after downtime — the newest creation time it has
handed on: a backlog closes windows as it is worked off instead of faking a dip. No window closes
during a rebalance. A mention
for a window that is already closed is counted as late and dropped, never added to the current
window (it would fake a spike). The tables' changelog topics make all of it survive restarts; the
alert is acknowledged by Kafka before the series state that records it is written, and its event
id makes a re-send after a crash a no-op downstream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import faust
from elasticsearch import ApiError, TransportError
from pydantic import ValidationError

from stimmung.config import AlertingSettings, DetectorSettings, SeriesSettings, Settings
from stimmung.health import HEALTH, beat_forever
from stimmung.pipeline.faust_fixes import install as install_faust_fixes
from stimmung.kafka import faust_credentials
from stimmung.metrics import ALERT_WINDOWS_CLOSED, ALERTS, LATE_MENTIONS
from stimmung.pipeline.alerts.spikes import HISTORY, DetectorConfig, SpikeDetector, Verdict
from stimmung.pipeline.alerts.watermark import CatchUpProbe, FanOutProgress, HeldWindows, pick_watermark
from stimmung.retry import Backoff
from stimmung.schemas.alert import Alert, AlertSample
from stimmung.schemas.deadletter import DeadLetter
from stimmung.schemas.mention import EnrichedMention

log = logging.getLogger(__name__)
TICK_KEY = b"__tick__"
MAX_CATCH_UP_WINDOWS = 7 * 288  # a series idle for longer restarts its window clock


# --- series -------------------------------------------------------------------------------------

def series_of(mention: EnrichedMention, families: list[SeriesSettings]) -> list[tuple[str, dict[str, str]]]:
    """The count series a mention belongs to: (key, labels), e.g.
    ('brand=Nordbahn|topic=delivery|sentiment=negative', {...})."""
    sentiment = mention.sentiment.label if mention.sentiment else None
    topics = [t.label for t in mention.topics]
    out: dict[str, dict[str, str]] = {}
    for brand in sorted({b.brand for b in mention.brands}):
        for family in families:
            if family.sentiment and sentiment != family.sentiment:
                continue
            if family.topic and family.topic not in topics:
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
                key = "|".join(f"{k}={labels[k]}" for k in ("brand", "topic", "platform", "sentiment") if k in labels)
                out[key] = labels
    return list(out.items())


def detector_config(a: AlertingSettings) -> DetectorConfig:
    explicit = {k: v for k, v in a.detector.model_dump().items() if v is not None}
    return DetectorConfig.preset(a.sensitivity, window_s=a.window_s, **explicit)


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

    def __init__(self, settings: Settings, detector: SpikeDetector):
        self.settings = settings
        self.window_s = settings.alerting.window_s
        self.detector = detector

    def new(self, partition: int, labels: dict[str, str], first_window: float) -> dict[str, Any]:
        return {"partition": partition, "labels": labels, "closed_until": first_window, "open": {}, "closed": [],
                "det": SpikeDetector.new_state()}

    def window_of(self, created: float) -> float:
        return math.floor(created / self.window_s) * self.window_s

    def add(self, state: dict[str, Any], item: dict[str, Any]) -> bool:
        """Count one mention; False when its window is already closed (late)."""
        ws = self.window_of(item["t"])
        if ws < state["closed_until"]:
            return False
        w = state["open"].setdefault(str(int(ws)), {"ids": [], "sent": {}, "plat": {}, "samples": []})
        if item["id"] in w["ids"]:
            return True  # a replayed message: already counted
        w["ids"].append(item["id"])
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
            w = state["open"].pop(str(int(ws)), {"ids": [], "sent": {}, "plat": {}, "samples": []})
            state["closed"] = (state["closed"] + [{"ws": ws, "n": len(w["ids"]), "sent": w["sent"], "plat": w["plat"],
                                                   "samples": w["samples"]}])[-HISTORY:]
            verdict = self.detector.observe(state["det"], ws, len(w["ids"]), key)
            ALERT_WINDOWS_CLOSED.inc()
            if verdict.event:
                alerts.append(self.alert(key, state, ws, verdict))
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
            alert_id=v.incident_id or f"{key}@{int(ws)}", event_id=f"{v.incident_id}:{event}:{int(ws)}", event=event,
            status="resolved" if event == "resolved" else "firing", severity=severity, series=key,
            brand=labels["brand"], topic=labels.get("topic"), sentiment=labels.get("sentiment"),
            window_start=start, window_end=end,
            incident_started=datetime.fromtimestamp(v.incident_started, timezone.utc) if v.incident_started else None,
            observed=int(v.observed), expected=round(v.expected, 3), p_value=min(1.0, max(0.0, v.p_value)),
            sentiment_mix=sentiment_mix, platform_mix=platform_mix,
            samples=[AlertSample(**{k: s[k] for k in ("mention_id", "excerpt", "platform", "url")})
                     for s in _top([s for w in span for s in w["samples"]], self.settings.alerting.samples)],
            kibana_url=self.discover_link(labels, start, end),
        )
        ALERTS.labels(event=event, severity=severity).inc()
        return alert

    def discover_link(self, labels: dict[str, str], start: datetime, end: datetime) -> str | None:
        if not self.settings.kibana.url:
            return None
        from stimmung.pipeline.elastic.search import SearchRequest, discover_url

        request = SearchRequest(brand=[labels["brand"]], topic=[labels["topic"]] if "topic" in labels else [],
                                sentiment=[labels["sentiment"]] if "sentiment" in labels else [],
                                platform=[labels["platform"]] if "platform" in labels else [],
                                since=start.isoformat(), until=end.isoformat())
        return discover_url(self.settings.kibana.url, request)


# --- the Faust app ------------------------------------------------------------------------------

def counts_topic_name(settings: Settings) -> str:
    return f"{settings.pipeline.app_id}-alerting-counts"


def build_alerting_app(settings: Settings) -> faust.App:
    from stimmung.pipeline.alerts.deliveries import Dispatcher
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.elastic.indices import ensure_indices

    kafka, topics, a = settings.kafka, settings.kafka.topics, settings.alerting
    app_id = f"{settings.pipeline.app_id}-alerting"
    (settings.pipeline.data_dir / "alerting").mkdir(parents=True, exist_ok=True)
    install_faust_fixes()  # see pipeline/faust_fixes.py: no acks for skipped messages, no delivery while seeking
    app = faust.App(
        app_id,
        broker=[f"kafka://{host}" for host in kafka.bootstrap_list],
        broker_credentials=faust_credentials(kafka),
        broker_client_id=f"{kafka.client_id}-alerting",
        store="memory://",  # restored from the changelog topics at start
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=topics.partitions,
        topic_replication_factor=topics.replication_factor,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        datadir=str(settings.pipeline.data_dir / "alerting"),
        broker_session_timeout=settings.pipeline.session_timeout_s,
        broker_rebalance_timeout=settings.pipeline.rebalance_timeout_s,
    )
    enriched = app.topic(topics.enriched, key_type=bytes, value_type=bytes)
    # internal: Faust declares it (and the tables' changelog topics) at start
    counts = app.topic(counts_topic_name(settings), key_type=bytes, value_type=bytes, partitions=topics.partitions,
                       internal=True, retention=timedelta(days=1))
    alerts_topic = app.topic(topics.alerts, key_type=bytes, value_type=bytes)
    deadletter = app.topic(topics.deadletter, key_type=bytes, value_type=bytes)
    series_table = app.Table("alert-series", default=None, partitions=topics.partitions, key_type=bytes, value_type=bytes)
    delivered = app.Table("alert-delivered", default=None, partitions=topics.partitions, key_type=bytes, value_type=bytes)
    book = SeriesBook(settings, SpikeDetector(detector_config(a)))
    # What the fan-out has handed on; ticks read it (and ask Kafka) to pick their watermark.
    progress = FanOutProgress(idle_s=max(5.0, 3 * a.tick_s))
    probe = CatchUpProbe(kafka, app_id)

    @app.agent(enriched, name="alert-fan-out")
    async def fan_out(stream):
        async for event in stream.events():
            try:
                mention = EnrichedMention.model_validate_json(event.value or b"")
            except ValidationError:
                mention = None  # malformed: the sink dead-letters it; counting it nowhere is right
            if mention is not None:
                created = mention.created_at.timestamp()
                item = {"id": mention.mention_id, "t": created, "plat": mention.platform, "sample": _sample(mention),
                        "sent": mention.sentiment.label if mention.sentiment else None}
                sends = [await counts.send(key=key.encode(), value=json.dumps({**item, "labels": labels}).encode())
                         for key, labels in series_of(mention, a.series)]
                await asyncio.gather(*sends)  # acknowledged before this mention's offset may be committed
            # Only now: a tick that this progress lets close the window lands on the counts topic
            # after this mention's counts (a tick racing ahead of them made the last one "late").
            progress.handed_on(event.message.topic, event.message.partition, event.message.offset,
                               mention.created_at.timestamp() if mention is not None else None)

    @app.agent(counts, name="alert-count")
    async def count(stream):
        async for event in stream.events():
            partition = event.message.partition
            message = json.loads(event.value)
            if "tick" in message:
                for raw_key in list(series_table.keys()):
                    state = json.loads(series_table.get(raw_key) or b"{}")
                    if not state:
                        continue
                    if state["partition"] != partition:
                        continue  # another partition's series: its own tick closes it
                    key = raw_key.decode()
                    for alert in book.close(key, state, message["tick"]):
                        # acknowledged by Kafka before the state that remembers it is written
                        sent = await alerts_topic.send(key=alert.alert_id.encode(), value=alert.model_dump_json().encode())
                        await sent
                        log.warning("complaint spike " + alert.event, extra={
                            "series": key, "severity": alert.severity, "observed": alert.observed,
                            "expected": alert.expected, "p_value": alert.p_value})
                    series_table[raw_key] = json.dumps(state).encode()
                continue
            key = event.key
            raw = series_table.get(key)
            state = json.loads(raw) if raw else book.new(partition, message["labels"], book.window_of(message["t"]))
            if not book.add(state, message):
                LATE_MENTIONS.inc()
                continue
            series_table[key] = json.dumps(state).encode()

    es = make_client(settings.elasticsearch)
    dispatcher = Dispatcher(a)

    def index_alert(alert: Alert) -> None:
        backoff = Backoff(base_s=0.5, cap_s=30.0)
        doc = alert.model_dump(mode="json")
        doc["@timestamp"] = doc["window_end"]
        while True:
            try:
                es.index(index=settings.elasticsearch.alerts_index, id=alert.event_id, document=doc)
                return
            except (TransportError, ConnectionError) as err:
                log.warning("alerts index unavailable; retrying", extra={"error": str(err)[:200]})
            except ApiError as err:
                if err.status_code not in (429, 502, 503, 504):
                    raise
            time.sleep(backoff.next_delay())

    @app.agent(alerts_topic, name="alert-deliver")
    async def deliver(stream):
        async for event in stream.events():
            try:
                alert = Alert.model_validate_json(event.value or b"")
            except ValidationError as err:
                log.error("unreadable alert on the alerts topic", extra={"error": str(err)[:300]})
                continue
            if alert.event != "updated":
                try:
                    await asyncio.to_thread(index_alert, alert)
                except ApiError as err:
                    letter = DeadLetter(stage="alerting", reason=f"Elasticsearch refused the alert: {err}", error_type="index",
                                        source=topics.alerts, offset=event.message.offset,
                                        payload=DeadLetter.encode_payload(event.value or b""))
                    await deadletter.send(key=alert.event_id.encode(), value=letter.model_dump_json().encode())
            if delivered.get(alert.event_id.encode()) is not None:
                continue  # delivered before a restart: receivers would dedupe, but why bother them
            for result in await dispatcher.deliver(alert):
                if not result.ok:
                    letter = DeadLetter(stage="alerting", reason=f"delivery to {result.channel} failed after "
                                        f"{result.attempts} attempts: {result.detail}", error_type="delivery",
                                        source=topics.alerts, offset=event.message.offset,
                                        payload=DeadLetter.encode_payload(event.value or b""))
                    await deadletter.send(key=alert.event_id.encode(), value=letter.model_dump_json().encode())
            delivered[alert.event_id.encode()] = str(time.time()).encode()

    @app.task
    async def ticks() -> None:
        await asyncio.to_thread(ensure_indices, es, settings.elasticsearch)
        HEALTH.set_ready("alerting", True, "tables recovered, agents started")
        beats = asyncio.ensure_future(beat_forever("alerting", interval_s=5.0, stale_after_s=60.0))
        held = HeldWindows(a.window_s)
        was_rebalancing = True
        try:
            while True:
                await asyncio.sleep(a.tick_s)
                assigned = sorted((tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic == topics.enriched)
                rebalancing = app.rebalancing or not assigned  # the backlog is not visible yet
                if was_rebalancing and not rebalancing:
                    progress.rebalanced()
                was_rebalancing = rebalancing
                busy = progress.busy()
                caught_up = None if rebalancing or busy else await probe.caught_up(assigned, progress.offsets)
                tick, reason = pick_watermark(time.time(), rebalancing=rebalancing, busy=busy, caught_up=caught_up,
                                              max_t=progress.max_t)
                held.observe(tick, reason, probe.last_detail)
                if tick is None:
                    continue
                mark = json.dumps({"tick": tick}).encode()
                for partition in range(topics.partitions):
                    await counts.send(key=TICK_KEY, value=mark, partition=partition)
        finally:
            beats.cancel()
            probe.close()

    app.stimmung_settings = settings
    return app


__all__ = ["SeriesBook", "build_alerting_app", "counts_topic_name", "detector_config", "series_of", "DetectorSettings"]
