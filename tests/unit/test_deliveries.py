"""Alert deliveries against a loopback HTTP server: each receiver's wire format, retries on 429/5xx
(Retry-After honoured), no retry on other 4xx, routing by brand/topic/severity, and the count
series a mention belongs to."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stimmung.config import AlertingSettings, SeriesSettings
from stimmung.pipeline.alerts.alerting import series_of
from stimmung.pipeline.alerts.deliveries import Dispatcher, summary
from stimmung.schemas import EnrichedMention
from stimmung.schemas.alert import Alert, AlertSample


class Server(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, dict(self.headers), body))
        status, headers = self.server.script.pop(0) if self.server.script else (200, {})
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    s = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    s.received, s.script = [], []
    threading.Thread(target=s.serve_forever, daemon=True).start()
    s.base = f"http://127.0.0.1:{s.server_address[1]}"
    yield s
    s.shutdown()


def alert(event="fired", **kw) -> Alert:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    data = dict(alert_id="brand=Nordbahn|sentiment=negative@1763974800", event_id=f"x:{event}:1", event=event,
                status="resolved" if event == "resolved" else "firing", severity="critical",
                series="brand=Nordbahn|sentiment=negative", brand="Nordbahn", sentiment="negative",
                window_start=start, window_end=start + timedelta(minutes=5), incident_started=start,
                observed=40, expected=3.2, p_value=1e-12, sentiment_mix={"negative": 40},
                platform_mix={"mastodon": 25, "bluesky": 15},
                samples=[AlertSample(mention_id="m1", excerpt="Zug fällt aus", platform="mastodon", url="https://x/1")],
                kibana_url="https://kibana/app/discover#/?x")
    data.update(kw)
    return Alert(**data)


def dispatcher(channels, routes=None, slept=None):
    async def fake_sleep(s):
        (slept if slept is not None else []).append(s)

    return Dispatcher(AlertingSettings(channels=channels, routes=routes or []), sleep=fake_sleep)


def run(coro):
    return asyncio.run(coro)


def test_each_channel_speaks_its_receivers_format(server, tmp_path):
    (tmp_path / "slack-url").write_text(f"{server.base}/slack/T000/B000/secret\n")
    (tmp_path / "pd-key").write_text("R0UTINGKEY")
    d = dispatcher([
        {"name": "am", "type": "alertmanager", "url": server.base},
        {"name": "slack", "type": "slack", "url_file": str(tmp_path / "slack-url")},
        {"name": "teams", "type": "teams", "url": f"{server.base}/teams"},
        {"name": "pd", "type": "pagerduty", "url": f"{server.base}/pd", "routing_key_file": str(tmp_path / "pd-key")},
        {"name": "hook", "type": "webhook", "url": f"{server.base}/hook", "secret": "s3cret"},
    ])
    results = run(d.deliver(alert()))
    assert all(r.ok for r in results) and len(results) == 5
    got = {path: (headers, json.loads(body)) for path, headers, body in server.received}
    am = got["/api/v2/alerts"][1][0]
    assert am["labels"] == {"alertname": "StimmungComplaintSpike", "brand": "Nordbahn", "severity": "critical",
                            "incident": alert().alert_id, "series": "brand=Nordbahn|sentiment=negative"}
    assert am["startsAt"].startswith("2026-11-24T09:00") and am["generatorURL"].startswith("https://kibana")
    slack = got["/slack/T000/B000/secret"][1]
    assert slack["text"] == summary(alert()) and "40 mentions in 5 min, 3.2 expected" in slack["text"]
    assert any(b["type"] == "actions" for b in slack["blocks"])
    card = got["/teams"][1]["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive" and card["content"]["type"] == "AdaptiveCard"
    pd = got["/pd"][1]
    assert pd["routing_key"] == "R0UTINGKEY" and pd["event_action"] == "trigger" and pd["dedup_key"] == alert().alert_id
    assert pd["payload"]["severity"] == "critical" and pd["links"][0]["href"].startswith("https://kibana")
    headers, body = next((h, b) for p, h, b in server.received if p == "/hook")
    assert headers["X-Stimmung-Signature"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["Idempotency-Key"] == "x:fired:1" and Alert.model_validate_json(body).model_dump(exclude={"created_at"}) == alert().model_dump(exclude={"created_at"})


def test_resolve_and_update_events_go_where_they_make_sense(server):
    d = dispatcher([{"name": "am", "type": "alertmanager", "url": server.base},
                    {"name": "pd", "type": "pagerduty", "url": f"{server.base}/pd", "routing_key": "k"},
                    {"name": "slack", "type": "slack", "url": f"{server.base}/slack"}])
    assert [r.channel for r in run(d.deliver(alert("updated")))] == ["am"], "updates only keep Alertmanager's alert alive"
    run(d.deliver(alert("resolved")))
    got = {p: json.loads(b) for p, _, b in server.received[1:]}
    assert got["/pd"] == {"routing_key": "k", "dedup_key": alert().alert_id, "event_action": "resolve"}
    assert got["/slack"]["text"].startswith("Resolved")
    ends = datetime.fromisoformat(got["/api/v2/alerts"][0]["endsAt"])
    assert ends == alert("resolved").window_end, "resolved: endsAt is the end of the spike"


def test_retries_429_with_retry_after_and_5xx_but_not_other_4xx(server):
    slept = []
    d = dispatcher([{"name": "hook", "type": "webhook", "url": f"{server.base}/hook"}], slept=slept)
    server.script = [(429, {"Retry-After": "7"}), (503, {}), (200, {})]
    (result,) = run(d.deliver(alert()))
    assert result.ok and result.attempts == 3 and slept[0] == 7
    server.script = [(404, {})]
    (result,) = run(d.deliver(alert()))
    assert not result.ok and result.attempts == 1 and "HTTP 404" in result.detail


def test_unreachable_receiver_fails_after_max_attempts():
    d = dispatcher([{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook", "max_attempts": 3}])
    (result,) = run(d.deliver(alert()))
    assert not result.ok and result.attempts == 3


def test_routing_by_brand_topic_and_severity(server):
    channels = [{"name": n, "type": "webhook", "url": f"{server.base}/{n}"} for n in ("support", "pr", "pager")]
    routes = [{"brands": ["Nordbahn"], "severities": ["critical"], "channels": ["pager"], "continue_matching": True},
              {"topics": ["delivery"], "channels": ["support"]},
              {"channels": ["pr"]}]
    d = dispatcher(channels, routes)
    assert [c.name for c in d.route(alert(topic="delivery"))] == ["pager", "support"]
    assert [c.name for c in d.route(alert(severity="warning", topic="delivery"))] == ["support"]
    assert [c.name for c in d.route(alert(brand="Lumio", topic="pricing"))] == ["pr"]
    with pytest.raises(ValueError, match="unknown channels"):
        AlertingSettings(channels=channels, routes=[{"channels": ["nope"]}])


def test_a_mention_counts_in_each_series_it_belongs_to():
    m = EnrichedMention(platform="mastodon", native_id="1", text="Nordbahn Lieferung zu spät",
                        created_at=datetime(2026, 11, 24, tzinfo=timezone.utc), language="de", language_confidence=1,
                        language_source="model", sentiment={"label": "negative", "score": 0.9,
                                                            "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}},
                        topics=[{"label": "delivery", "score": 0.8}, {"label": "complaint", "score": 0.7}],
                        brands=[{"brand": "Nordbahn", "query": "nordbahn"}, {"brand": "Röstwerk", "query": "röstwerk"}])
    negative = SeriesSettings(complaint=False, sentiment="negative")
    keys = dict(series_of(m, [negative, SeriesSettings(complaint=False, sentiment="negative", split_by=["topic"]),
                              SeriesSettings(complaint=False, topic="complaint", split_by=["platform"])]))
    assert set(keys) == {
        "brand=Nordbahn|sentiment=negative", "brand=Röstwerk|sentiment=negative",
        "brand=Nordbahn|topic=delivery|sentiment=negative", "brand=Nordbahn|topic=complaint|sentiment=negative",
        "brand=Röstwerk|topic=delivery|sentiment=negative", "brand=Röstwerk|topic=complaint|sentiment=negative",
        "brand=Nordbahn|topic=complaint|platform=mastodon", "brand=Röstwerk|topic=complaint|platform=mastodon"}
    assert keys["brand=Nordbahn|topic=complaint|platform=mastodon"] == {"brand": "Nordbahn", "topic": "complaint", "platform": "mastodon"}
    positive = m.model_copy(update={"sentiment": m.sentiment.model_copy(update={"label": "positive"})})
    assert [k for k, _ in series_of(positive, [negative])] == []


def test_the_default_series_count_complaints_not_negativity():
    """Issue #18: a breach of expectations, as the complaint head decides, not negative sentiment."""
    from stimmung.config import AlertingSettings

    defaults = AlertingSettings().series
    base = dict(platform="bluesky", native_id="2", created_at=datetime(2026, 11, 24, tzinfo=timezone.utc), language="de",
                language_confidence=1, language_source="model", brands=[{"brand": "Nordbahn", "query": "nordbahn"}],
                topics=[{"label": "delivery", "score": 0.8}])
    negative = {"label": "negative", "score": 0.9, "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}}
    neutral = {"label": "neutral", "score": 0.8, "probabilities": {"negative": 0.1, "neutral": 0.8, "positive": 0.1}}
    # a complaint in a neutral tone counts; a negative post that complains about nobody does not
    complaint = EnrichedMention(text="Paket seit 3 Wochen nicht da, bitte um Rückmeldung", sentiment=neutral,
                                complaint={"label": "complaint", "probability": 0.8}, **base)
    grumble = EnrichedMention(text="Montage sind furchtbar", sentiment=negative,
                              complaint={"label": "no_complaint", "probability": 0.1}, **base)
    assert set(dict(series_of(complaint, defaults))) == {"brand=Nordbahn|signal=complaint",
                                                          "brand=Nordbahn|topic=delivery|signal=complaint"}
    assert series_of(grumble, defaults) == []
    # without the trained heads the prototype 'complaint' topic stands in
    legacy = EnrichedMention(text="Montage sind furchtbar", sentiment=negative,
                             **{**base, "topics": [{"label": "complaint", "score": 0.6}]})
    assert "brand=Nordbahn|signal=complaint" in dict(series_of(legacy, defaults))
