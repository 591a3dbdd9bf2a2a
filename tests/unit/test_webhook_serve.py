"""The webhook receiver says ready only once its port accepts pushes, and stops on SIGTERM."""

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
    HEALTH.checks.pop("kafka", None)

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
        assert HEALTH.readiness()[1]["checks"]["kafka"] == {"ok": False, "detail": "shutting down"}
    finally:
        HEALTH.checks.pop("kafka", None)
    assert port_open_when == {"startup": False, "ready": True}
    assert not port_accepts(port)


async def _record(into: dict, moment: str, port: int) -> None:
    into[moment] = await asyncio.to_thread(port_accepts, port)
