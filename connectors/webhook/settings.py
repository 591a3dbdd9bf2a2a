"""``connectors.webhook``: where the receiver listens and the secrets senders sign with."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from stimmung.sections import Section


class WebhookSettings(Section):
    """The webhook receiver (`stimmung webhook`): address, body limit, signing secrets."""

    host: str = Field("0.0.0.0", description="Listen address of `stimmung webhook`")
    port: int = Field(8080, ge=1, le=65535, description="Listen port of `stimmung webhook`")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Larger bodies get 413")
    meta_app_secret: SecretStr | None = Field(None, description="Meta app secret: checks X-Hub-Signature-256")
    meta_app_secret_file: Path | None = Field(None, description="The Meta app secret from a mounted file")
    meta_verify_token: SecretStr | None = Field(None, description="Token Meta's subscription handshake must present")
    meta_verify_token_file: Path | None = Field(None, description="The verify token from a mounted file")
    generic_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of the generic endpoint (X-Stimmung-Signature)")
    generic_secret_file: Path | None = Field(None, description="The generic secret from a mounted file")
