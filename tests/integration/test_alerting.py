"""Complaint-spike alerting end to end on the real broker: enriched mentions -> the Faust alerting
worker (`stimmung alerting`, a real subprocess) -> a signed webhook and a real Prometheus
Alertmanager routing to a loopback receiver; the alert is indexed in Elasticsearch; a worker
killed mid-window loses no count and sends the alert once."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import shutil
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.schemas import EnrichedMention

from .conftest import free_port, probe, scrape, wait_for

WINDOW = 60
SECRET = "alert-signing-secret"


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def mention(n: int, created: float, text: str = "Nordbahn: Zug fällt schon wieder aus, keine Info!") -> EnrichedMention:
    return EnrichedMention(
        platform=("mastodon", "bluesky")[n % 2], native_id=f"m{n}-{created:.0f}", text=f"{text} #{n}",
        url=f"https://example.social/p/{n}", created_at=datetime.fromtimestamp(created, timezone.utc),
        language="de", language_confidence=0.99, language_source="model",
        engagement={"likes": n % 7, "shares": n % 3, "replies": 0},
        sentiment={"label": "negative", "score": 0.9, "probabilities": {"negative": 0.9, "neutral": 0.07, "positive": 0.03}},
        complaint={"label": "complaint", "probability": 0.93},
        topics=[{"label": "delivery", "score": 0.8}], brands=[{"brand": "Nordbahn", "query": "nordbahn"}],
        model_versions={"sentiment": "test"})


def produce(settings, mentions: list[EnrichedMention]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for m in mentions:
        producer.send(settings.kafka.topics.enriched, key=m.mention_id.encode(), value=m.model_dump_json().encode())
    producer.flush()
    producer.close()


def baseline(now: float, windows: int = 10, per_window: int = 3, first: int = 0) -> list[EnrichedMention]:
    start = math.floor(now / WINDOW) * WINDOW - windows * WINDOW
    return [mention(first + w * per_window + i, start + w * WINDOW + 5 + i) for w in range(windows) for i in range(per_window)]


@pytest.fixture
def alertmanager(tmp_path):
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not binary:
        pytest.fail("prometheus-alertmanager not found; `./run tests` installs it (Debian package)", pytrace=False)
    server, base = receiver()
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump({
        "route": {"receiver": "oncall", "group_by": ["alertname", "brand"], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "oncall", "webhook_configs": [{"url": f"{base}/am", "send_resolved": True}]}]}))
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=open(tmp_path / "alertmanager.log", "wb"), stderr=subprocess.STDOUT)
    wait_for(lambda: _ready(port), timeout=30, message="alertmanager ready")
    yield f"http://127.0.0.1:{port}", server
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    server.shutdown()


def _ready(port: int) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2).status == 200
    except OSError:
        return False


def alerting_config(config: dict, webhook: str, alertmanager_url: str | None = None) -> dict:
    channels = [{"name": "hook", "type": "webhook", "url": f"{webhook}/alerts", "secret": SECRET}]
    if alertmanager_url:
        channels.append({"name": "am", "type": "alertmanager", "url": alertmanager_url})
    config["alerting"] = {"window_s": WINDOW, "lateness_s": 2, "tick_s": 1,
                          "detector": {"warmup_windows": 5, "cooldown_s": 600},
                          "series": [{}], "channels": channels,  # the default family: complaints per brand
                          "routes": [{"brands": ["Nordbahn"], "channels": [c["name"] for c in channels]}]}
    config["kibana"] = {"url": "http://kibana.example:5601"}
    return config


def posted(server, path: str) -> list[dict]:
    return [json.loads(body) for p, _, body in list(server.received) if p == path]


def test_a_spike_reaches_a_signed_webhook_alertmanager_and_the_alerts_index(settings, config, roles, alertmanager, tmp_path):
    am_url, am_receiver = alertmanager
    hook, hook_base = receiver()
    roles.config_file.write_text(yaml.safe_dump(alerting_config(config, hook_base, am_url)))
    ensure_topics(settings.kafka)
    now = time.time()
    spike_start = math.floor(now / WINDOW) * WINDOW - 2 * WINDOW  # closed: two windows ago
    history = baseline(now, windows=12)
    history = [m for m in history if not (spike_start <= m.created_at.timestamp() < spike_start + WINDOW)]
    spike = [mention(1000 + i, spike_start + 1 + i) for i in range(40)]
    produce(settings, history + spike)
    port = free_port()
    roles.start("alerting", metrics_ports={"alerting": port})

    fired = wait_for(lambda: [a for a in posted(hook, "/alerts") if a["event"] == "fired"], timeout=180,
                     check=roles.check_alive, message="the spike alert at the webhook")
    alert = fired[0]
    # the default series counts complaints (issue #18), not a sentiment
    assert alert["brand"] == "Nordbahn" and alert["series"] == "brand=Nordbahn|signal=complaint"
    assert alert["sentiment"] is None and alert["severity"] == "critical"
    assert alert["observed"] == 40 and alert["expected"] < 6 and alert["p_value"] < 1e-6
    assert alert["window_start"].startswith(datetime.fromtimestamp(spike_start, timezone.utc).isoformat()[:19])
    assert alert["sentiment_mix"] == {"negative": 40} and alert["platform_mix"] == {"mastodon": 20, "bluesky": 20}
    assert len(alert["samples"]) == 3 and all(s["excerpt"].startswith("Nordbahn") and s["url"] for s in alert["samples"])
    # the evidence: 40 mentions without author (each its own), 40 distinct texts, the expected band
    assert alert["kind"] == "spike" and alert["distinct_authors"] == 40 and alert["distinct_texts"] == 40
    assert alert["expected_lower"] <= alert["expected"] < alert["expected_upper"] < 40
    assert {"nordbahn", "zug", "fällt"} <= set(alert["top_terms"]) and "wieder" not in alert["top_terms"]
    assert alert["kibana_url"].startswith("http://kibana.example:5601/app/discover#/") and "Nordbahn" in alert["kibana_url"]
    assert "complaint" in alert["kibana_url"]  # the slice of exactly the counted mentions
    _, headers, body = next(r for r in hook.received if r[0] == "/alerts" and json.loads(r[2])["event"] == "fired")
    expected_sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Stimmung-Signature"] == expected_sig and headers["Idempotency-Key"] == alert["event_id"]

    # the real Alertmanager routed it to its receiver
    am = wait_for(lambda: posted(am_receiver, "/am"), timeout=60, message="Alertmanager's notification")
    am_alert = am[0]["alerts"][0]
    assert am_alert["status"] == "firing" and am_alert["labels"]["alertname"] == "StimmungComplaintSpike"
    assert am_alert["labels"]["brand"] == "Nordbahn" and am_alert["labels"]["incident"] == alert["alert_id"]
    assert "40 mentions" in am_alert["annotations"]["summary"]

    # indexed for the alert timeline, id = event id
    es = Elasticsearch(settings.elasticsearch.url)
    doc = wait_for(lambda: es.options(ignore_status=404).get(index=settings.elasticsearch.alerts_index, id=alert["event_id"]).get("_source"),
                   timeout=60, message="alert indexed")
    assert doc["observed"] == 40 and doc["event"] == "fired" and doc["@timestamp"] == doc["window_end"]
    assert doc["distinct_authors"] == 40 and doc["top_terms"], "the evidence is in the strict alerts mapping"

    # the spike is over: the incident resolves (after the 15-minute sum is calm), at the webhook too
    resolved = wait_for(lambda: [a for a in posted(hook, "/alerts") if a["event"] == "resolved"],
                        # windows after the spike are empty and close on the wall clock; the 3-window
                        # sum drops the spike with the window ending at spike_start + 4 windows
                        timeout=max(60.0, spike_start + 6 * WINDOW + 60 - time.time()), check=roles.check_alive,
                        message="the incident resolved at the webhook")
    assert len(resolved) == 1 and resolved[0]["alert_id"] == alert["alert_id"] and resolved[0]["status"] == "resolved"
    assert datetime.fromisoformat(resolved[0]["window_end"]).timestamp() >= spike_start + 4 * WINDOW
    metrics = scrape(port)
    assert metrics['stimmung_alerts_total{event="fired",severity="critical"}'] == 1
    assert metrics['stimmung_alert_deliveries_total{channel="hook",outcome="delivered",type="webhook"}'] >= 1
    assert probe(port, "/readyz")[0] == 200
    hook.shutdown()


def test_restart_mid_window_loses_no_count_and_alerts_once(settings, config, roles, tmp_path):
    hook, hook_base = receiver()
    roles.config_file.write_text(yaml.safe_dump(alerting_config(config, hook_base)))
    ensure_topics(settings.kafka)
    now = time.time()
    current = math.floor(now / WINDOW) * WINDOW
    if current + WINDOW - now < 40:  # leave the window open long enough for the restart
        current += WINDOW
    produce(settings, baseline(current, windows=10))
    roles.start("alerting")
    first_half = [mention(2000 + i, current + 1 + i * 0.1) for i in range(20)]
    produce(settings, first_half)
    time.sleep(8)  # counted (and committed, Faust commits every few seconds) ...
    roles.procs["alerting"].send_signal(signal.SIGKILL)  # ... then the worker dies mid-window
    roles.procs["alerting"].wait(10)
    roles.procs.pop("alerting")
    produce(settings, [mention(2020 + i, current + 3 + i * 0.1) for i in range(20)])
    port = free_port()
    roles.start("alerting", metrics_ports={"alerting": port})
    try:
        fired = wait_for(lambda: [a for a in posted(hook, "/alerts") if a["event"] == "fired"],
                         # the dead member holds its partitions until Faust's 60 s session timeout, then
                         # the tables are recovered from their changelogs: allow for both on a busy machine
                         timeout=max(60.0, current + WINDOW + 300 - time.time()), check=roles.check_alive,
                         message="the alert after the restart")
    except AssertionError as err:  # say where it stopped: windows held, closed, mentions late?
        try:
            figures = {k: v for k, v in scrape(port).items() if k.startswith(("stimmung_alert", "stimmung_late"))}
            figures.update({path: probe(port, path) for path in ("/healthz", "/readyz")})
        except OSError as scrape_err:
            figures = {"metrics unavailable": str(scrape_err)}
        raise AssertionError(f"{err}; alerting worker metrics: {figures}") from None
    time.sleep(5)  # give a duplicate the chance to show up
    fired = [a for a in posted(hook, "/alerts") if a["event"] == "fired"]
    assert len(fired) == 1, "alerted once"
    assert fired[0]["observed"] == 40, "every mention counted once: none lost, none twice"
    hook.shutdown()


def test_catch_up_is_asked_of_kafka_not_guessed_from_what_was_seen(settings):
    import asyncio

    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from stimmung.pipeline.alerts.watermark import CatchUpProbe

    ensure_topics(settings.kafka)
    topic = settings.kafka.topics.enriched
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for n in range(3):
        producer.send(topic, value=str(n).encode(), partition=0)  # partition 1 stays empty
    producer.flush()
    producer.close()
    group = f"{settings.pipeline.app_id}-catchup"
    probe = CatchUpProbe(settings.kafka, group)
    both = [(topic, 0), (topic, 1)]

    async def ask(handed):
        return await probe.caught_up(both, handed)

    try:
        assert asyncio.run(ask({})) is False, "nothing handed on and no commit: 3 messages to read"
        assert asyncio.run(ask({(topic, 0): 1})) is False, "offset 2 not handed on yet"
        assert asyncio.run(ask({(topic, 0): 2})) is True, "handed on to the end (the commit trails)"
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_list, group_id=group, enable_auto_commit=False)
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
        consumer.close()
        assert asyncio.run(ask({})) is True, "after a restart: the group's commit is at the end"
    finally:
        probe.close()
    # Kafka unreachable: unknown, never "caught up"
    dead = CatchUpProbe(settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"}), group)
    try:
        assert asyncio.run(dead.caught_up(both, {})) is None
    finally:
        dead.close()
