"""The start-up every long-running role shares: /metrics + /healthz + /readyz, topics, consumer lag, signals.

Readiness itself is each component's own business (it calls ``HEALTH.set_ready`` once its
consumer is subscribed or its server listens); what is common is the order around it: the probe
server first, so Kubernetes gets an answer (alive, not ready) while Kafka is still being waited
for; then the topics; then the component; then its lag reporter and SIGTERM/SIGINT -> ``stop``.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Protocol, Sequence, TypeVar

from stimmung.config import Settings

T = TypeVar("T")


class Component(Protocol):
    """A consumer loop that runs until ``stop`` is called (sink, case manager, privacy worker)."""

    group_id: str

    def stop(self, *_: object) -> None: ...

    def run(self) -> None: ...


def start_role(settings: Settings, create_topics: bool = True) -> None:
    """Serve /metrics, /healthz and /readyz on the metrics port, then create missing topics."""
    import logging

    from stimmung.kafka import ensure_topics
    from stimmung.logs import quiet_level
    from stimmung.metrics import serve

    # A long-running role keeps the Kafka client's warnings (one-shot commands silence them).
    for client in ("kafka", "elastic_transport"):
        logging.getLogger(client).setLevel(quiet_level(settings.log_level))
    serve(settings.metrics.port, settings.metrics.host)
    if create_topics:
        ensure_topics(settings.kafka)


def report_lag(settings: Settings, group: str, topics: Sequence[str]) -> None:
    """Export the consumer group's lag on ``topics`` (only where metrics are served at all)."""
    if settings.metrics.port:
        from stimmung.lag import LagReporter

        LagReporter(settings.kafka, group, list(topics)).start()


def run_role(settings: Settings, build: Callable[[], Component], topics: Sequence[str], *,
             create_topics: bool = True) -> None:
    """Start-up (``start_role``), the component ``build()`` makes, its lag, signals; then run it."""
    start_role(settings, create_topics)
    component = build()
    report_lag(settings, component.group_id, topics)
    signal.signal(signal.SIGTERM, component.stop)
    signal.signal(signal.SIGINT, component.stop)
    component.run()


def run_faust_role(settings: Settings, build_app: Callable[[Settings], Any], group: str, topic: str) -> None:
    """Start-up, lag, then a Faust worker for the app ``build_app(settings)`` makes (Faust owns the signals)."""
    import faust

    from stimmung.logs import logging_config

    start_role(settings)
    report_lag(settings, group, [topic])
    app = build_app(settings)
    faust.Worker(app, loglevel=settings.log_level.lower(),
                 logging_config=logging_config(settings.log_level, settings.log_format)).execute_from_commandline()


def until_elasticsearch_answers(fn: Callable[..., T], *args: object, what: str,
                                should_stop: Callable[[], bool] = lambda: False) -> T:
    """A role's start-up call to Elasticsearch (templates, indices), retried with capped backoff
    while the cluster is unreachable or overloaded: one log line when the wait starts, one when it
    ends, ``/readyz`` check "elasticsearch" false in between (issue #20: the case manager and the
    consent API exited when they started during an Elasticsearch outage). Errors waiting cannot
    fix (a refused template, bad credentials: other 4xx) raise at once; ``should_stop()`` true
    raises ``InterruptedError``."""
    import logging
    import time

    from elasticsearch import ApiError, TransportError
    from elasticsearch import ConnectionError as ESConnectionError

    from stimmung.health import HEALTH
    from stimmung.retry import Backoff

    log = logging.getLogger(__name__)
    backoff = Backoff(base_s=0.5, cap_s=15.0)
    since: float | None = None
    while True:
        try:
            result = fn(*args)
        except (TransportError, ESConnectionError, ApiError) as err:
            if isinstance(err, ApiError) and err.status_code not in (429, 502, 503, 504):
                raise
            if since is None:
                since = time.monotonic()
                log.warning("%s: Elasticsearch unavailable; waiting for it", what, extra={"error": str(err)[:300]})
            HEALTH.set_ready("elasticsearch", False, "unavailable")
            deadline = time.monotonic() + max(0.2, backoff.next_delay())
            while time.monotonic() < deadline:
                if should_stop():
                    raise InterruptedError(f"{what}: stopped while waiting for Elasticsearch") from None
                time.sleep(0.2)
            continue
        if since is not None:
            log.warning("%s: Elasticsearch answers after %.0f s", what, time.monotonic() - since)
        HEALTH.set_ready("elasticsearch", True, "answers")
        return result
