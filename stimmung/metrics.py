"""Prometheus metrics shared by every component (conventional names: *_total, *_seconds, *_bytes).

Every long-running component calls ``serve(port, host)`` once; the port 0 default disables the
HTTP endpoint (tests and one-shot CLI runs), while deployments set one. The same port answers
``/healthz`` and ``/readyz`` (stimmung.health) for Kubernetes probes.
"""

from __future__ import annotations

import json
import logging
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from stimmung.health import HEALTH

log = logging.getLogger(__name__)

MENTIONS_FETCHED = Counter(
    "stimmung_mentions_fetched_total", "Mentions read from a source", ["connector"]
)
MENTIONS_PUBLISHED = Counter(
    "stimmung_mentions_published_total", "Raw mentions acknowledged by Kafka", ["connector"]
)
MENTIONS_ENRICHED = Counter(
    "stimmung_mentions_enriched_total", "Mentions enriched and acknowledged by Kafka", ["language"]
)
MENTIONS_INDEXED = Counter(
    "stimmung_mentions_indexed_total", "Documents acknowledged by Elasticsearch", ["index"]
)
CONNECTOR_ERRORS = Counter(
    "stimmung_connector_errors_total", "Failed requests/connections of a connector (retried)", ["connector", "kind"]
)
CONNECTOR_RATE_LIMIT_WAIT = Counter(
    "stimmung_connector_rate_limit_wait_seconds_total", "Time spent waiting because a source asked us to", ["connector"]
)
CONNECTOR_LAG = Gauge(
    "stimmung_connector_lag_seconds", "Age of the newest mention a connector has published", ["connector"]
)
CONNECTOR_UP = Gauge(
    "stimmung_connector_up", "1 when the connector's last request to its source succeeded", ["connector"]
)
CONNECTOR_FILTERED = Counter(
    "stimmung_connector_filtered_total", "Mentions dropped before publishing because no brand query matched", ["connector"]
)
DEAD_LETTERS = Counter(
    "stimmung_dead_letters_total", "Inputs sent to the dead-letter topic", ["stage", "reason"]
)
ENRICH_BATCH_SIZE = Histogram(
    "stimmung_enrich_batch_size", "Mentions per enrichment micro-batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
ENRICH_BATCH_SECONDS = Histogram(
    "stimmung_enrich_batch_duration_seconds", "Model time per enrichment micro-batch",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_BULK_SECONDS = Histogram(
    "stimmung_sink_bulk_duration_seconds", "Elasticsearch bulk request latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SINK_BULK_BYTES = Histogram(
    "stimmung_sink_bulk_size_bytes", "Bytes per Elasticsearch bulk request",
    buckets=(1e3, 1e4, 1e5, 5e5, 1e6, 5e6, 1e7),
)
SINK_RETRIES = Counter(
    "stimmung_sink_retries_total", "Bulk items or requests retried", ["reason"]
)
SINK_SKIPPED = Counter(
    "stimmung_sink_skipped_total", "Mentions not indexed (erased author, past retention) or indexed without a CRM link whose consent is gone (unlinked)", ["reason"]
)
SINK_CIRCUIT_STATE = Gauge(
    "stimmung_sink_circuit_state", "Circuit breaker around Elasticsearch: 0 closed, 1 half-open, 2 open"
)
SINK_CIRCUIT_OPENED = Counter(
    "stimmung_sink_circuit_opened_total", "Times the circuit breaker opened (Elasticsearch failing)"
)
ERASURES = Counter(
    "stimmung_erasures_total", "Authors erased from Elasticsearch on request"
)
CONSUMER_LAG = Gauge(
    "stimmung_consumer_lag_messages", "Messages a consumer group has not committed yet, per topic", ["group", "topic"]
)
ALERTS = Counter(
    "stimmung_alerts_total", "Complaint-spike alert events (fired, escalated, updated, resolved)", ["event", "severity"]
)
ALERT_DELIVERIES = Counter(
    "stimmung_alert_deliveries_total", "Alert deliveries by channel and outcome (delivered, failed)", ["channel", "type", "outcome"]
)
ALERT_DELIVERY_SECONDS = Histogram(
    "stimmung_alert_delivery_duration_seconds", "Time to deliver an alert, retries included", ["type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
ALERT_WINDOWS_CLOSED = Counter(
    "stimmung_alert_windows_closed_total", "Count windows closed and judged by the spike detector"
)
ALERT_WATERMARK_DELAY = Gauge(
    "stimmung_alert_watermark_delay_seconds",
    "How far the alert watermark trails the wall clock: windows close (and alerts fire) this much after they end",
)
LATE_MENTIONS = Counter(
    "stimmung_late_mentions_total", "Mentions that arrived after their window had closed (not counted)"
)
CONSENT_CHANGES = Counter(
    "stimmung_consent_changes_total", "Consent grants, withdrawals and erasures recorded", ["action"]
)
CASES_OPENED = Counter("stimmung_cases_opened_total", "Cases opened by routing rules", ["queue", "priority"])
CASE_MENTIONS = Counter("stimmung_case_mentions_total", "Mentions attached to cases (new or joined)", ["queue"])
CASE_MENTIONS_SKIPPED = Counter("stimmung_case_mentions_skipped_total", "Routed mentions not attached to a case", ["reason"])
CASE_FIRST_RESPONSE_SECONDS = Histogram(
    "stimmung_case_first_response_seconds", "Time from a case's opening to its first reply", ["queue", "priority"],
    buckets=(60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400),
)
CASE_RESOLUTION_SECONDS = Histogram(
    "stimmung_case_resolution_seconds", "Time from a case's opening to its closing", ["queue", "priority"],
    buckets=(300, 1800, 3600, 4 * 3600, 8 * 3600, 86400, 2 * 86400, 3 * 86400, 7 * 86400),
)
CASE_SLA_BREACHES = Counter("stimmung_case_sla_breaches_total", "Cases that missed an SLA", ["queue", "kind"])
SINK_UP = Gauge("stimmung_sink_elasticsearch_up", "1 when the last bulk request reached Elasticsearch")

_served: set[int] = set()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: not worth a log line
        pass


def _app():
    metrics = make_wsgi_app()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok, body = HEALTH.liveness() if path == "/healthz" else HEALTH.readiness()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [json.dumps({"ok": ok, **body}).encode()]
        return metrics(environ, start_response)

    return app


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Expose /metrics, /healthz and /readyz on ``port`` (idempotent; 0 = disabled)."""
    if port and port not in _served:
        server = make_server(host, port, _app(), ThreadingWSGIServer, handler_class=_Quiet)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        _served.add(port)
        log.info("metrics and health endpoint listening", extra={"port": port})
