"""Alert deliveries: Prometheus Alertmanager, Slack, Microsoft Teams, PagerDuty, signed webhooks.

Each channel turns an ``Alert`` into its receiver's wire format and sends it with retries: 429
waits as long as ``Retry-After`` says, 5xx and connection errors back off exponentially with
jitter, other 4xx fail at once (a wrong URL or key will not heal). Every payload carries the
incident id as dedupe key (Alertmanager labels, PagerDuty ``dedup_key``, the webhook's
``Idempotency-Key``), so a re-delivery after a restart updates the same incident instead of
opening a second one. Routing rules (settings ``alerting.routes``) pick channels by brand, topic
and severity.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping

import httpx

from stimmung import __version__
from stimmung.config import AlertingSettings, ChannelSettings, ConfigError, read_secret
from stimmung.metrics import ALERT_DELIVERIES, ALERT_DELIVERY_SECONDS
from stimmung.retry import Backoff, retry_after
from stimmung.schemas.alert import Alert

log = logging.getLogger(__name__)
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SIGNATURE_HEADER = "X-Stimmung-Signature"


def summary(alert: Alert) -> str:
    if alert.kind == "sla":
        prefix = "Resolved: " if alert.event == "resolved" else ""
        return f"{prefix}SLA breach: case {alert.case_id} ({alert.queue}, {alert.brand}) — {alert.detail}"
    what = (f"{alert.brand}" + (f" / {alert.topic}" if alert.topic else "") + (f" ({alert.sentiment})" if alert.sentiment else "")
            + (f" (relevance ≥ {alert.min_relevance:g})" if alert.min_relevance is not None else ""))
    minutes = int((alert.window_end - alert.window_start).total_seconds() // 60)
    if alert.kind == "sentiment_shift":
        if alert.event == "resolved":
            return f"Resolved: negative share back to normal for {alert.brand}"
        return (f"Sentiment shift for {alert.brand}: {100 * (alert.negative_share or 0):.0f}% negative in {minutes} min "
                f"({alert.observed} mentions), usually {100 * (alert.baseline_share or 0):.0f}%")
    if alert.event == "resolved":
        return f"Resolved: complaint spike for {what}"
    verb = {"fired": "Complaint spike", "escalated": "Complaint spike growing", "updated": "Complaint spike ongoing"}[alert.event]
    return (f"{verb} for {what}: {alert.observed} mentions in {minutes} min, {alert.expected:.1f} expected "
            f"({alert.observed / max(alert.expected, 0.01):.1f}×, p={alert.p_value:.1g})")


def _mix(mix: Mapping[Any, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1])) or "–"


def evidence_line(alert: Alert) -> str:
    """Who and what stands behind the count: one author or one copied text shows at a glance."""
    parts = []
    if alert.distinct_authors is not None:
        parts.append(f"{alert.distinct_authors} authors, {alert.distinct_texts} distinct texts")
    if alert.expected_upper is not None:
        parts.append(f"expected {alert.expected_lower or 0:.0f}–{alert.expected_upper:.0f}")
    if alert.top_terms:
        parts.append("terms: " + ", ".join(alert.top_terms))
    return "; ".join(parts) or "–"


def evidence_fields(alert: Alert) -> dict[str, Any]:
    return {k: v for k, v in alert.model_dump(mode="json", include={
        "kind", "distinct_authors", "distinct_texts", "top_terms", "expected_lower", "expected_upper", "score",
        "threshold", "negative_share", "baseline_share"}).items() if v not in (None, [])}


class Channel:
    def __init__(self, settings: ChannelSettings, http: httpx.AsyncClient):
        self.settings = settings
        self.name = settings.name
        self.http = http

    def wants(self, alert: Alert) -> bool:
        return alert.event != "updated" or self.settings.notify_updates

    def request(self, alert: Alert) -> tuple[str, dict[str, str], bytes]:
        raise NotImplementedError

    def accepted(self, status: int) -> bool:
        return 200 <= status < 300


class AlertmanagerChannel(Channel):
    """``POST /api/v2/alerts``. Alertmanager expires an alert it has not heard of for a while,
    so it gets every window of an open incident ('updated') with an ``endsAt`` a few windows
    ahead; the resolve sets ``endsAt`` to the end of the spike."""

    def wants(self, alert: Alert) -> bool:
        return True

    def request(self, alert: Alert) -> tuple[str, dict[str, str], bytes]:
        window = alert.window_end - alert.window_start
        ends = alert.window_end if alert.status == "resolved" else datetime.now(timezone.utc) + max(window, timedelta(minutes=5)) * 3
        name = "StimmungSentimentShift" if alert.kind == "sentiment_shift" else "StimmungComplaintSpike"
        labels = {"alertname": name, "brand": alert.brand, "severity": alert.severity,
                  "incident": alert.alert_id, "series": alert.series}
        if alert.topic:
            labels["topic"] = alert.topic
        body = [{
            "labels": labels,
            "annotations": {"summary": summary(alert), "observed": str(alert.observed), "expected": f"{alert.expected:.1f}",
                            "p_value": f"{alert.p_value:.2g}", "sentiment_mix": _mix(alert.sentiment_mix),
                            "evidence": evidence_line(alert),
                            "samples": "\n".join(f"[{s.platform}] {s.excerpt} {s.url or ''}".strip() for s in alert.samples)},
            "startsAt": (alert.incident_started or alert.window_start).isoformat(),
            "endsAt": ends.isoformat(),
            "generatorURL": alert.kibana_url or "",
        }]
        return f"{(self.settings.url or '').rstrip('/')}/api/v2/alerts", {}, json.dumps(body).encode()


class SlackChannel(Channel):
    def request(self, alert: Alert) -> tuple[str, dict[str, str], bytes]:
        icon = {"resolved": ":white_check_mark:", "critical": ":rotating_light:"}.get(
            "resolved" if alert.event == "resolved" else alert.severity, ":warning:")
        blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{summary(alert)}*"}}]
        if alert.event != "resolved":
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Window*\n{alert.window_start:%Y-%m-%d %H:%M}–{alert.window_end:%H:%M} UTC"},
                {"type": "mrkdwn", "text": f"*Sentiment*\n{_mix(alert.sentiment_mix)}"},
                {"type": "mrkdwn", "text": f"*Platforms*\n{_mix(alert.platform_mix)}"},
                {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"}]})
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence*: {evidence_line(alert)}"}})
            for s in alert.samples:
                link = f" <{s.url}|open>" if s.url else ""
                blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{s.platform}_: {s.excerpt}{link}"}]})
            if alert.kibana_url:
                blocks.append({"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open in Kibana"}, "url": alert.kibana_url}]})
        return self._url(), {}, json.dumps({"text": summary(alert), "blocks": blocks}).encode()

    def _url(self) -> str:
        return read_secret(None, self.settings.url_file, f"alerting.channels[{self.name}].url_file") or self.settings.url or ""


class TeamsChannel(SlackChannel):
    """A Teams Workflows (or legacy connector) webhook: a message with an Adaptive Card."""

    def request(self, alert: Alert) -> tuple[str, dict[str, str], bytes]:
        facts = [{"title": "Window", "value": f"{alert.window_start:%Y-%m-%d %H:%M}–{alert.window_end:%H:%M} UTC"},
                 {"title": "Observed / expected", "value": f"{alert.observed} / {alert.expected:.1f}"},
                 {"title": "Sentiment", "value": _mix(alert.sentiment_mix)},
                 {"title": "Platforms", "value": _mix(alert.platform_mix)},
                 {"title": "Evidence", "value": evidence_line(alert)}]
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True, "text": summary(alert),
             "color": "Good" if alert.event == "resolved" else ("Attention" if alert.severity == "critical" else "Warning")},
            {"type": "FactSet", "facts": facts}]
        body += [{"type": "TextBlock", "wrap": True, "isSubtle": True, "text": f"{s.platform}: {s.excerpt}"} for s in alert.samples]
        card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                                "version": "1.4", "body": body}
        if alert.kibana_url:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Kibana", "url": alert.kibana_url}]
        message = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
        return self._url(), {}, json.dumps(message).encode()


class PagerDutyChannel(Channel):
    """Events API v2: trigger (and escalate) under the incident's dedup key, resolve it."""

    def request(self, alert: Alert) -> tuple[str, dict[str, str], bytes]:
        key = read_secret(self.settings.routing_key, self.settings.routing_key_file, f"alerting.channels[{self.name}].routing_key")
        if not key:
            raise ConfigError(f"alerting.channels[{self.name}]: a PagerDuty routing_key (env or file) is required")
        event: dict[str, Any] = {"routing_key": key, "dedup_key": alert.alert_id,
                                 "event_action": "resolve" if alert.event == "resolved" else "trigger"}
        if alert.event != "resolved":
            event["payload"] = {
                "summary": summary(alert)[:1024], "source": f"stimmung/{alert.brand}", "severity": alert.severity,
                "timestamp": alert.window_end.isoformat(), "component": alert.brand, "group": alert.topic or "all topics",
                "class": alert.kind.replace("_", "-") if alert.kind != "spike" else "complaint-spike",
                "custom_details": {"observed": alert.observed, "expected": round(alert.expected, 2), "p_value": alert.p_value,
                                   "sentiment_mix": alert.sentiment_mix, "platform_mix": alert.platform_mix,
                                   **evidence_fields(alert), "samples": [s.model_dump() for s in alert.samples]}}
            if alert.kibana_url:
                event["links"] = [{"href": alert.kibana_url, "text": "Mentions in Kibana"}]
        return self.settings.url or PAGERDUTY_URL, {}, json.dumps(event).encode()


class WebhookChannel(Channel):
    """The alert as JSON, signed: ``X-Stimmung-Signature: sha256=<HMAC-SHA256(secret, body)>``."""

    def request(self, alert: Alert) -> tuple[str, dict[str, str], bytes]:
        body = alert.model_dump_json().encode()
        headers = {"Idempotency-Key": alert.event_id, "X-Stimmung-Event": alert.event}
        secret = read_secret(self.settings.secret, self.settings.secret_file, f"alerting.channels[{self.name}].secret")
        if secret:
            headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return self.settings.url or "", headers, body


CHANNELS: dict[str, type[Channel]] = {"alertmanager": AlertmanagerChannel, "slack": SlackChannel, "teams": TeamsChannel,
                                      "pagerduty": PagerDutyChannel, "webhook": WebhookChannel}


@dataclass
class Delivery:
    channel: str
    ok: bool
    attempts: int
    detail: str = ""


class Dispatcher:
    def __init__(self, settings: AlertingSettings, http: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
        self.settings = settings
        self.http = http or httpx.AsyncClient(headers={"User-Agent": f"stimmung/{__version__}",
                                                       "Content-Type": "application/json"})
        self.channels = {c.name: CHANNELS[c.type](c, self.http) for c in settings.channels}
        self.sleep = sleep

    def route(self, alert: Alert) -> list[Channel]:
        if not self.settings.routes:
            return list(self.channels.values())
        chosen: list[str] = []
        for r in self.settings.routes:
            if ((not r.brands or alert.brand in r.brands) and (not r.topics or alert.topic in r.topics)
                    and (not r.severities or alert.severity in r.severities)):
                chosen += [c for c in r.channels if c not in chosen]
                if not r.continue_matching:
                    break
        return [self.channels[c] for c in chosen]

    async def deliver(self, alert: Alert) -> list[Delivery]:
        targets = [c for c in self.route(alert) if c.wants(alert)]
        return list(await asyncio.gather(*(self._send(c, alert) for c in targets)))

    async def _send(self, channel: Channel, alert: Alert) -> Delivery:
        backoff = Backoff(base_s=1.0, cap_s=60.0)
        started = time.perf_counter()
        detail = ""
        kind = channel.settings.type
        for attempt in range(1, channel.settings.max_attempts + 1):
            try:
                url, headers, body = channel.request(alert)
                resp = await self.http.post(url, content=body, headers=headers, timeout=channel.settings.timeout_s)
            except ConfigError as err:
                detail = str(err)
                break
            except httpx.HTTPError as err:
                detail = f"{type(err).__name__}: {err}"
                await self.sleep(backoff.next_delay())
                continue
            if channel.accepted(resp.status_code):
                ALERT_DELIVERIES.labels(channel=channel.name, type=kind, outcome="delivered").inc()
                ALERT_DELIVERY_SECONDS.labels(type=kind).observe(time.perf_counter() - started)
                return Delivery(channel.name, True, attempt)
            detail = f"HTTP {resp.status_code}: {resp.text[:300]}"
            if resp.status_code == 429 or resp.status_code >= 500:
                wait = retry_after(resp.headers)
                await self.sleep(wait if wait is not None else backoff.next_delay())
                continue
            break  # another 4xx: the URL, key or payload is wrong; retrying will not help
        ALERT_DELIVERIES.labels(channel=channel.name, type=kind, outcome="failed").inc()
        log.error("alert delivery failed", extra={"channel": channel.name, "alert": alert.alert_id, "error": detail[:300]})
        return Delivery(channel.name, False, attempt, detail)

    async def aclose(self) -> None:
        await self.http.aclose()
