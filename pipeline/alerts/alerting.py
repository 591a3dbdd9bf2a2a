"""Complaint-spike alerting: windowed counts in Faust tables -> spike detector -> alerts -> deliveries.

One Faust app (``stimmung alerting``, consumer group ``<app_id>-alerting``):

    enriched topic --fan_out--> counts topic, keyed by series (one series lives in one partition):
                                the count series of ``alerting.series`` and, per brand, the series
                                of all its mentions the sentiment-shift detector reads
    counts topic ----count----> table ``alert-series``: per series its open windows (the ids of
                                the mentions seen: counting twice after a replay is impossible;
                                hashes of authors' pseudonyms and of normalised texts; terms),
                                the last closed windows and the detector state (pipeline/alerts/series.py)
    tick task ----------------> a tick into every partition of the counts topic: windows that ended
                                more than ``lateness_s`` before the watermark are closed, judged
                                (pipeline/alerts/spikes.py or sentiment_shift.py, empty windows included) and alert events sent
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
import time
from datetime import timedelta

import faust
from elasticsearch import ApiError, TransportError
from pydantic import ValidationError

from stimmung.config import DetectorSettings, Settings
from stimmung.health import HEALTH, beat_forever
from stimmung.kafka import faust_credentials
from stimmung.metrics import LATE_MENTIONS
from stimmung.pipeline.alerts.sentiment_shift import SentimentShiftDetector
from stimmung.pipeline.alerts.series import SHIFT, SeriesBook, _item, detector_config, series_of, shift_config, shift_series_of
from stimmung.pipeline.alerts.spikes import SpikeDetector
from stimmung.pipeline.alerts.watermark import CatchUpProbe, FanOutProgress, HeldWindows, pick_watermark
from stimmung.pipeline.faust_fixes import install as install_faust_fixes
from stimmung.retry import Backoff
from stimmung.schemas.alert import Alert
from stimmung.schemas.deadletter import DeadLetter
from stimmung.schemas.mention import EnrichedMention

log = logging.getLogger(__name__)
TICK_KEY = b"__tick__"


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
    book = SeriesBook(settings, SpikeDetector(detector_config(a)), SentimentShiftDetector(shift_config(a)))
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
                item = _item(mention)
                families = series_of(mention, a.series) + (shift_series_of(mention) if a.sentiment_shift else [])
                sends = [await counts.send(key=key.encode(), value=json.dumps({**item, "labels": labels}).encode())
                         for key, labels in families]
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
                        log.warning(alert.kind.replace("_", " ") + " " + alert.event, extra={
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

    app.stimmung_settings = settings  # type: ignore[attr-defined]  # for the worker command
    return app


__all__ = ["SHIFT", "SeriesBook", "_item", "build_alerting_app", "counts_topic_name", "detector_config", "series_of",
           "shift_series_of", "DetectorSettings"]
