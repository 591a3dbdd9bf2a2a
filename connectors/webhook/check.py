"""`stimmung connect webhook --check`: is our receiver up, and does it accept what we sign?

The receiver is ours, so "credentials valid" means: a body signed with the configured secret is
accepted, and Meta's handshake with the configured verify token is answered. The signed bodies
hold no mentions (``[]``, a Meta payload without entries): nothing is published.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from stimmung.connectors.base import SourceContext
from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.connectors.probe import probe
from stimmung.connectors.webhook.settings import WebhookSettings
from stimmung.sections import ConfigError, read_secret

_ANY_ADDRESS = {"0.0.0.0", "::", ""}


class WebhookCheck:
    name = "webhook"

    def __init__(self, base_url: str, *, meta_app_secret: str | None = None, meta_verify_token: str | None = None,
                 generic_secret: str | None = None, timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.meta_app_secret, self.meta_verify_token, self.generic_secret = meta_app_secret, meta_verify_token, generic_secret
        self.http = PoliteClient("webhook", timeout_s=timeout_s)

    @classmethod
    def from_settings(cls, section: WebhookSettings, context: SourceContext) -> "WebhookCheck":
        found = {name: read_secret(getattr(section, name), getattr(section, name + "_file"), f"connectors.webhook.{name}")
                 for name in ("meta_app_secret", "meta_verify_token", "generic_secret")}
        if not found["meta_app_secret"] and not found["generic_secret"]:
            raise ConfigError("connectors.webhook: set meta_app_secret and/or generic_secret (env or *_file); "
                              "unsigned webhooks are never accepted")
        host = "127.0.0.1" if section.host in _ANY_ADDRESS else section.host
        host = f"[{host}]" if ":" in host else host
        return cls(f"http://{host}:{section.port}", timeout_s=context.timeout_s, **found)

    async def _signed(self, path: str, body: bytes, header: str, secret: str, name: str) -> None:
        signature = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        try:
            await probe(self.http, "POST", f"{self.base_url}{path}", content=body,
                        headers={header: signature, "Content-Type": "application/json"})
        except SourceError as err:
            if err.status == 401:
                raise SourceError(f"webhook: the receiver refused a body signed with our {name}: it runs with "
                                  "a different secret", 401) from None
            if err.status == 404:
                raise SourceError(f"webhook: the receiver at {self.base_url} has no {name} configured ({path} is off)",
                                  404) from None
            raise

    async def ping(self) -> str:
        await probe(self.http, "GET", f"{self.base_url}/healthz")
        checked = []
        if self.generic_secret:
            await self._signed("/webhooks/generic", b"[]", "X-Stimmung-Signature", self.generic_secret, "generic_secret")
            checked.append("generic signature")
        if self.meta_app_secret:
            await self._signed("/webhooks/meta", b'{"object": "page", "entry": []}', "X-Hub-Signature-256",
                               self.meta_app_secret, "meta_app_secret")
            checked.append("Meta signature")
        if self.meta_verify_token:
            challenge = secrets.token_hex(8)
            resp = await self.http.http.get(f"{self.base_url}/webhooks/meta", params={
                "hub.mode": "subscribe", "hub.verify_token": self.meta_verify_token, "hub.challenge": challenge})
            if resp.status_code != 200 or resp.text != challenge:
                raise SourceError("webhook: the receiver did not answer Meta's handshake with our meta_verify_token "
                                  f"(HTTP {resp.status_code}): it runs with a different token", resp.status_code)
            checked.append("Meta verify token")
        return f"receiver at {self.base_url} accepts: {', '.join(checked)}"

    async def close(self) -> None:
        await self.http.aclose()
