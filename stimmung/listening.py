"""Serving an aiohttp app for a role whose readiness must wait for its port (the webhook
receiver, the consent API).

The readiness check ``listening`` is registered false before the role waits for Kafka or
Elasticsearch, and turns true only once the listening socket is bound. Set any earlier, /readyz
says 200 while a request to the port is refused, and a load balancer routes into that gap: the
dependency waits mark their own checks true the moment the dependency answers, and aiohttp runs
an app's startup hooks before it binds.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Callable

from aiohttp import web

from stimmung.health import HEALTH

LISTENING = "listening"


def not_listening_yet(what: str = "requests") -> None:
    """Call first, before any wait that could make the role look ready."""
    HEALTH.set_ready(LISTENING, False, f"not accepting {what} yet")


async def serve_app(app: web.Application, host: str, port: int, what: str = "requests",
                    on_bound: Callable[[], None] | None = None) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then close it gracefully: not ready while the
    requests in flight finish; a second signal during that drain ends the process the default way."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        if on_bound is not None:
            on_bound()
        HEALTH.set_ready(LISTENING, True, f"accepting {what} on {host}:{port}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        HEALTH.set_ready(LISTENING, False, "shutting down")
    finally:
        await runner.cleanup()
