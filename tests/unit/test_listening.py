"""Roles that serve HTTP say ready only once their port accepts (also when Kafka comes back
before the port is bound), and stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from aiohttp import web

from stimmung.connectors.webhook import serve
from stimmung.health import HEALTH


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_ready_is_set_only_after_the_port_accepts_and_sigterm_stops_the_receiver(monkeypatch):
    port = free_port()
    app = web.Application()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)
    # An app startup hook runs before the port is bound: the moment the old code said ready.
    port_open_when = {}
    app.on_startup.append(lambda app: _record(port_open_when, "startup", port))
    real_set_ready = HEALTH.set_ready

    def recording_set_ready(check: str, ok: bool, detail: str = "") -> None:
        if ok:
            port_open_when["ready"] = port_accepts(port)
        real_set_ready(check, ok, detail)

    monkeypatch.setattr(HEALTH, "set_ready", recording_set_ready)
    for check in ("kafka", "listening"):
        HEALTH.checks.pop(check, None)

    async def scenario() -> None:
        task = asyncio.create_task(serve(app, "127.0.0.1", port))
        for _ in range(100):
            if "ready" in port_open_when:
                break
            await asyncio.sleep(0.05)
        assert "ready" in port_open_when and not task.done()  # else SIGTERM would find no handler and end pytest
        os.kill(os.getpid(), signal.SIGTERM)  # the handler serve installed turns it into a graceful stop
        await asyncio.wait_for(task, timeout=10)

    try:
        asyncio.run(scenario())
        assert HEALTH.readiness()[1]["checks"]["listening"] == {"ok": False, "detail": "shutting down"}
    finally:
        for check in ("kafka", "listening"):
            HEALTH.checks.pop(check, None)
    assert port_open_when == {"startup": False, "ready": True}
    assert not port_accepts(port)


async def _record(into: dict, moment: str, port: int) -> None:
    into[moment] = await asyncio.to_thread(port_accepts, port)


def test_the_role_is_not_ready_when_kafka_comes_back_before_the_port_is_bound(monkeypatch, tmp_path):
    """Started while the broker is away, the role waits for Kafka in start_role, and that wait
    marks the check "kafka" true the moment the broker answers, before serve binds the port. The
    role must still say not ready then (seen in CI: /readyz 200, the push refused)."""
    from click.testing import CliRunner

    import stimmung.commands.sources as sources
    import stimmung.kafka
    from stimmung.cli import main

    seen = {}

    def start_role_whose_kafka_wait_just_ended(settings, create_topics=True):
        HEALTH.set_ready("kafka", True, "connected")  # what KafkaWait.recovered() does
        seen["after the kafka wait"] = HEALTH.readiness()

    async def serve_records(app, host, port):
        seen["serve called"] = True

    monkeypatch.setattr(sources, "start_role", start_role_whose_kafka_wait_just_ended)
    monkeypatch.setattr(stimmung.kafka, "make_producer", lambda *a, **k: type("P", (), {"close": lambda self: None})())
    monkeypatch.setattr("stimmung.connectors.webhook.receiver.serve", serve_records)
    for check in ("kafka", "listening"):
        HEALTH.checks.pop(check, None)
    try:
        result = CliRunner().invoke(main, ["webhook"], env={"STIMMUNG_CONNECTORS__WEBHOOK__GENERIC_SECRET": "s3cret"})
        assert result.exit_code == 0, result.output
        assert seen["serve called"]
        ready, detail = seen["after the kafka wait"]
        assert not ready and detail["checks"]["listening"]["ok"] is False
    finally:
        for check in ("kafka", "listening"):
            HEALTH.checks.pop(check, None)


def test_the_consent_api_is_not_ready_before_its_port_is_bound(monkeypatch):
    """Same gap in `stimmung consent serve`: its Kafka and Elasticsearch waits end before the
    API's port is bound (and aiohttp's startup hooks, where the API says it is up, run before
    the bind too)."""
    from click.testing import CliRunner

    import stimmung.commands.consent as consent
    import stimmung.listening
    from stimmung.cli import main

    seen = {}

    def start_role_whose_kafka_wait_just_ended(settings, create_topics=True):
        HEALTH.set_ready("kafka", True, "connected")
        seen["after the waits"] = HEALTH.readiness()

    async def serve_records(app, host, port, *args, **kwargs):
        seen["serve called"] = (host, port)

    monkeypatch.setattr(consent, "start_role", start_role_whose_kafka_wait_just_ended)
    monkeypatch.setattr(consent, "_consent_service", lambda obj, wait=False: object())
    monkeypatch.setattr("stimmung.pipeline.crm.consent_api.make_consent_app", lambda service, token: web.Application())
    monkeypatch.setattr(stimmung.listening, "serve_app", serve_records)
    for check in ("kafka", "listening"):
        HEALTH.checks.pop(check, None)
    try:
        result = CliRunner().invoke(main, ["consent", "serve"], env={"STIMMUNG_CRM__API__TOKEN": "a-token-of-16-chars-or-more"})
        assert result.exit_code == 0, result.output
        assert "serve called" in seen
        ready, detail = seen["after the waits"]
        assert not ready and detail["checks"]["listening"]["ok"] is False
    finally:
        for check in ("kafka", "listening"):
            HEALTH.checks.pop(check, None)
