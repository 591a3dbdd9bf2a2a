"""What every settings section shares: the strict base, the error type, secrets from env or files.

Apart from ``config.py`` so that each connector can declare its own section beside its code
(``connectors/<name>/settings.py``) without importing ``config.py``, which assembles them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr


class ConfigError(Exception):
    """Settings could not be loaded; the message names every bad field."""


class Section(BaseModel):
    """A settings section: unknown keys are errors, so `elasticsearch.ulr` is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


def read_secret(value: SecretStr | None, file: Path | None, name: str) -> str | None:
    """A secret given directly (env) or as a mounted file; the file wins when both are set."""
    if file is not None:
        try:
            content = Path(file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"{name}: cannot read secret file {file}: {err.strerror}") from None
        if not content:
            raise ConfigError(f"{name}: secret file {file} is empty")
        return content
    if value is not None:
        secret = value.get_secret_value().strip()
        return secret or None
    return None
