"""The consent endpoint for CRM systems (``stimmung consent serve``).

    POST /v1/consent/grant     {"platform", "handle", "contact_id", "purposes": [...], "evidence"?}
    POST /v1/consent/withdraw  {"platform", "handle", "purposes"?: [...], "evidence"?}
    GET  /v1/consent?platform=&handle=

Every call needs ``Authorization: Bearer <crm.api.token>`` (compared in constant time); without
it: 401, and nothing is read or written. Answers carry the pseudonym and the purposes, never
the handle. Handles arrive only in request bodies/queries and are pseudonymised at once.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from stimmung.health import HEALTH, beat_forever
from stimmung.pipeline.crm.consent import ConsentService
from stimmung.schemas.consent import Purpose

log = logging.getLogger(__name__)


class GrantRequest(BaseModel):
    platform: str = Field(min_length=1, max_length=64)
    handle: str = Field(min_length=1, max_length=512)
    contact_id: str = Field(min_length=1, max_length=256)
    purposes: list[Purpose] = Field(min_length=1)
    evidence: str | None = Field(None, max_length=1000)


class WithdrawRequest(BaseModel):
    platform: str = Field(min_length=1, max_length=64)
    handle: str = Field(min_length=1, max_length=512)
    purposes: list[Purpose] | None = None
    evidence: str | None = Field(None, max_length=1000)


def make_consent_app(service: ConsentService, token: str, source: str = "api") -> web.Application:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def authenticate(request: web.Request, handler):
        if request.path == "/healthz":
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            log.warning("consent API: unauthenticated call refused", extra={"path": request.path})
            return web.json_response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def body(request: web.Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(await request.json())
        except (ValueError, ValidationError) as err:
            raise web.HTTPBadRequest(text=json.dumps({"error": str(err)[:500]}), content_type="application/json") from None

    async def grant(request: web.Request) -> web.Response:
        req = await body(request, GrantRequest)
        record = await asyncio.to_thread(service.grant, req.platform, req.handle, req.contact_id, list(req.purposes),
                                         source, req.evidence)
        return web.json_response(record.model_dump(mode="json"))

    async def withdraw(request: web.Request) -> web.Response:
        req = await body(request, WithdrawRequest)
        record, unlinked = await asyncio.to_thread(service.withdraw, req.platform, req.handle, source,
                                                   list(req.purposes) if req.purposes else None, req.evidence)
        if record is None:
            return web.json_response({"error": "no consent recorded for this author"}, status=404)
        return web.json_response({**record.model_dump(mode="json"), "unlinked_documents": unlinked})

    async def show(request: web.Request) -> web.Response:
        platform, handle = request.query.get("platform"), request.query.get("handle")
        if not platform or not handle:
            return web.json_response({"error": "platform and handle are required"}, status=400)
        pseudonym = service.pseudonym(platform, handle)
        record = await asyncio.to_thread(service.current, pseudonym)
        if record is None:
            return web.json_response({"pseudonym": pseudonym, "status": "none"}, status=404)
        return web.json_response(record.model_dump(mode="json"))

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def heartbeat(app: web.Application):
        # liveness/readiness on the metrics port (stimmung.health), like every role
        task = asyncio.create_task(beat_forever("consent-api"))
        HEALTH.set_ready("consent-api", True, "Kafka and Elasticsearch reached at start")
        yield
        task.cancel()

    app = web.Application(middlewares=[authenticate], client_max_size=64 * 1024)
    app.cleanup_ctx.append(heartbeat)
    app.router.add_post("/v1/consent/grant", grant)
    app.router.add_post("/v1/consent/withdraw", withdraw)
    app.router.add_get("/v1/consent", show)
    app.router.add_get("/healthz", health)
    return app
