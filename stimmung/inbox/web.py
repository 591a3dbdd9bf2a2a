"""What the inbox's pages share: the app state, sessions, CSRF, flash messages, metrics.

Apart from ``app`` (which assembles routes and middleware) so ``pages`` and ``oidc`` can use it
without importing the app module back.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from stimmung.config import Settings
from stimmung.inbox.accounts import Directory, User
from stimmung.inbox.store import InboxStore

INBOX_ACTIONS = Counter("stimmung_inbox_actions_total", "Inbox actions by outcome (done, refused, conflict, error)",
                        ["action", "outcome"])
INBOX_SIGNINS = Counter("stimmung_inbox_signins_total", "Inbox sign-ins by method and outcome", ["via", "outcome"])
INBOX_PAGE_SECONDS = Histogram("stimmung_inbox_page_seconds", "Time to answer an inbox page", ["page"],
                               buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5, 5))


@dataclass
class Inbox:
    """What every page needs, kept in ``app.state.inbox``."""

    settings: Settings
    directory: Directory
    store: InboxStore
    templates: Jinja2Templates
    failures: dict[str, tuple[int, float]]  # username -> (failed attempts, last failure) for throttling
    oidc: Any = None  # the Authlib client when inbox.oidc is configured

    def user(self, request: Request) -> User | None:
        data = request.session.get("user")
        if not data:
            return None
        if data.get("via") == "local":
            return self.directory.user(data["username"])  # current rights, or None when removed
        return User.from_session(data)

    def render(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        user = self.user(request)
        base = {"user": user, "csrf": csrf_token(request), "flash": request.session.pop("flash", []),
                "queues": user.queues(self.directory.teams) if user else [],
                "leads": user.leads(self.directory.teams) if user else [], "oidc_label": self.settings.inbox.oidc.label
                if self.oidc else None}
        return self.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, form: Any) -> bool:
    expected = request.session.get("csrf")
    given = form.get("csrf") or request.headers.get("X-CSRF-Token") or ""
    return bool(expected) and hmac.compare_digest(str(given).encode(), str(expected).encode())


def flash(request: Request, message: str, kind: str = "info") -> None:
    request.session.setdefault("flash", []).append({"kind": kind, "text": message})


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def start_session(request: Request, user: User) -> None:
    """A new session for a signed-in user: the old one (and its CSRF token) is dropped, so a
    session id planted before sign-in is worth nothing after it."""
    request.session.clear()
    request.session["user"] = user.to_session()
    request.session["csrf"] = secrets.token_urlsafe(32)
