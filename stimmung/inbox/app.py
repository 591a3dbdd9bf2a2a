"""The inbox's Starlette app: sessions, sign-in, CSRF, security headers, probes.

The pages themselves (queues, case detail, actions, export, lead view, live events) are in
``pages``. Sessions are signed cookies (``inbox.session_secret``), HttpOnly, SameSite=Lax and
Secure unless ``inbox.cookie_secure`` is off; every POST needs the session's CSRF token. The
session holds who signed in and how; local accounts' rights are read from the settings on every
request, so a removed account or team is gone at the next click.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from elasticsearch import Elasticsearch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from stimmung.config import ConfigError, Settings, read_secret
from stimmung.health import HEALTH, beat_forever
from stimmung.inbox.accounts import Directory
from stimmung.inbox.present import duration, enrichment_value
from stimmung.inbox.store import InboxStore
from stimmung.inbox.web import INBOX_SIGNINS, Inbox, client_of, csrf_ok, start_session

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
MAX_FAILURES, LOCKOUT_S = 5, 300.0


# --- sign-in ----------------------------------------------------------------------------------------
async def login_page(request: Request) -> Response:
    inbox: Inbox = request.app.state.inbox
    if inbox.user(request):
        return RedirectResponse("/", 303)
    return inbox.render(request, "login.html", {"username": ""})


async def login(request: Request) -> Response:
    inbox: Inbox = request.app.state.inbox
    form = await request.form()
    username = str(form.get("username") or "").strip()[:128]
    if not csrf_ok(request, form):
        return inbox.render(request, "login.html", {"username": username,
                                                    "error": "The form expired; please sign in again."}, 400)
    count, last = inbox.failures.get(username, (0, 0.0))
    if count >= MAX_FAILURES and time.monotonic() - last < LOCKOUT_S:
        INBOX_SIGNINS.labels(via="local", outcome="locked").inc()
        await run_in_threadpool(inbox.store.audit, username or "-", "sign-in", "locked", client=client_of(request))
        return inbox.render(request, "login.html", {"username": username, "error":
                            "Too many failed attempts; wait five minutes and try again."}, 429)
    user = await run_in_threadpool(inbox.directory.authenticate, username, str(form.get("password") or ""))
    if user is None:
        inbox.failures[username] = (count + 1, time.monotonic())
        INBOX_SIGNINS.labels(via="local", outcome="failed").inc()
        await run_in_threadpool(inbox.store.audit, username or "-", "sign-in", "failed", client=client_of(request))
        return inbox.render(request, "login.html", {"username": username,
                                                    "error": "Unknown user name or wrong password."}, 401)
    inbox.failures.pop(username, None)
    start_session(request, user)
    INBOX_SIGNINS.labels(via="local", outcome="ok").inc()
    await run_in_threadpool(inbox.store.audit, user.username, "sign-in", "ok", client=client_of(request))
    return RedirectResponse("/", 303)


async def logout(request: Request) -> Response:
    inbox: Inbox = request.app.state.inbox
    form = await request.form()
    user = inbox.user(request)
    if not csrf_ok(request, form):
        return Response("CSRF token missing or wrong", 403)
    if user:
        await run_in_threadpool(inbox.store.audit, user.username, "sign-out", "ok", via=user.via,
                                client=client_of(request))
    request.session.clear()
    return RedirectResponse("/login", 303)


# --- probes -----------------------------------------------------------------------------------------
async def healthz(request: Request) -> Response:
    ok, body = HEALTH.liveness()
    return JSONResponse({"ok": ok, **body}, 200 if ok else 503)


async def readyz(request: Request) -> Response:
    inbox: Inbox = request.app.state.inbox
    up = await run_in_threadpool(inbox.store.ping)
    HEALTH.set_ready("inbox-elasticsearch", up, "" if up else "Elasticsearch does not answer")
    ok, body = HEALTH.readiness()
    return JSONResponse({"ok": ok, **body}, 200 if ok else 503)


# --- the app ----------------------------------------------------------------------------------------
class SecurityHeaders:
    """Adds the security headers to every HTTP answer (pure ASGI: streaming answers stay streams)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def session_secret(settings: Settings) -> str:
    secret = read_secret(settings.inbox.session_secret, settings.inbox.session_secret_file, "inbox.session_secret")
    if not secret or len(secret) < 32:
        raise ConfigError("inbox.session_secret: set a key of at least 32 characters (env or *_file); "
                          "it signs the session cookies")
    return secret


def make_app(settings: Settings, client: Elasticsearch) -> Starlette:
    from stimmung.inbox import oidc, pages

    directory = Directory(settings)
    if not directory.teams:
        raise ConfigError("the inbox has no teams: configure crm.routes (their queues) or inbox.teams")
    store = InboxStore(client, settings)
    store.ensure_audit_index()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["duration"] = duration
    templates.env.globals["enrichment_value"] = enrichment_value
    inbox = Inbox(settings, directory, store, templates, {})
    inbox.oidc = oidc.client(settings)
    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *oidc.routes(),
        *pages.routes(),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie="stimmung_inbox",
                   max_age=settings.inbox.session_max_age_s, same_site="lax", https_only=settings.inbox.cookie_secure),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        beating = asyncio.create_task(beat_forever("inbox"))  # liveness: the event loop is not blocked
        yield
        beating.cancel()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.inbox = inbox
    HEALTH.set_ready("inbox-elasticsearch", store.ping(), "")
    return app
