"""OpenID Connect sign-in: authorization code flow with PKCE (S256), through Authlib.

Authlib reads the provider's discovery document, keeps state, nonce and the PKCE verifier in the
(signed) session between the redirect and the callback, exchanges the code and validates the ID
token (signature against the provider's keys, issuer, audience, expiry, nonce). Rights come from
the roles claim (``team:agent``, ``team:lead``, ``admin``) or, failing that, from a local account
of the same user name; a person with neither is refused.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from stimmung.config import ConfigError, Settings, read_secret

log = logging.getLogger(__name__)


def client(settings: Settings) -> Any:
    """The Authlib client, or None when OIDC is not configured."""
    oidc = settings.inbox.oidc
    if not oidc.issuer:
        return None
    if not oidc.client_id:
        raise ConfigError("inbox.oidc.client_id: required with inbox.oidc.issuer")
    from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    return oauth.register(
        name="idp",
        client_id=oidc.client_id,
        client_secret=read_secret(oidc.client_secret, oidc.client_secret_file, "inbox.oidc.client_secret"),
        server_metadata_url=oidc.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": oidc.scopes, "code_challenge_method": "S256"},
    )


def _redirect_uri(request: Request) -> str:
    base = request.app.state.inbox.settings.inbox.public_url
    return (base.rstrip("/") if base else str(request.base_url).rstrip("/")) + "/auth/oidc/callback"


async def start(request: Request) -> Response:
    inbox = request.app.state.inbox
    if inbox.oidc is None:
        return Response("single sign-on is not configured", 404)
    return await inbox.oidc.authorize_redirect(request, _redirect_uri(request))


async def callback(request: Request) -> Response:
    from authlib.integrations.base_client.errors import OAuthError
    from joserfc.errors import JoseError

    from stimmung.inbox.web import INBOX_SIGNINS, client_of, start_session

    inbox = request.app.state.inbox
    if inbox.oidc is None:
        return Response("single sign-on is not configured", 404)
    try:
        token = await inbox.oidc.authorize_access_token(request)
    except OAuthError as err:
        INBOX_SIGNINS.labels(via="oidc", outcome="failed").inc()
        log.warning("OIDC sign-in failed", extra={"error": err.error})
        return inbox.render(request, "login.html", {"username": "", "error": f"Single sign-on failed: {err.error}"}, 401)
    except (JoseError, ValueError, KeyError) as err:  # an ID token that fails validation (claims, signature)
        INBOX_SIGNINS.labels(via="oidc", outcome="failed").inc()
        log.warning("OIDC sign-in refused: invalid ID token", extra={"error": type(err).__name__})
        return inbox.render(request, "login.html", {"username": "", "error": "Single sign-on failed: invalid ID token"},
                            401)
    claims = dict(token.get("userinfo") or {})
    s = inbox.settings.inbox.oidc
    user = inbox.directory.from_claims(claims, s.username_claim, s.roles_claim)
    who = str(claims.get(s.username_claim) or claims.get("sub") or "-")
    if user is None:
        INBOX_SIGNINS.labels(via="oidc", outcome="no-rights").inc()
        await run_in_threadpool(inbox.store.audit, who, "sign-in", "no-rights", via="oidc", client=client_of(request))
        return inbox.render(request, "login.html", {"username": "", "error":
                            f"{who} signed in, but belongs to no team of the inbox; ask an admin."}, 403)
    start_session(request, user)
    INBOX_SIGNINS.labels(via="oidc", outcome="ok").inc()
    await run_in_threadpool(inbox.store.audit, user.username, "sign-in", "ok", via="oidc", client=client_of(request))
    return RedirectResponse("/", 303)


def routes() -> list[Route]:
    return [Route("/auth/oidc/start", start), Route("/auth/oidc/callback", callback)]
