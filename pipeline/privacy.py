"""Where the pseudonymisation key comes from (environment or a mounted secret file only)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from stimmung.config import ConfigError, Settings, read_secret
from stimmung.schemas.pseudonym import MIN_KEY_BYTES, Pseudonymizer


def pseudonymizer_from_settings(settings: Settings) -> Pseudonymizer:
    key = read_secret(settings.privacy.pseudonym_key, settings.privacy.pseudonym_key_file, "privacy.pseudonym_key")
    if key is None:
        raise ConfigError(
            "no pseudonymisation key: set STIMMUNG_PRIVACY__PSEUDONYM_KEY or "
            "STIMMUNG_PRIVACY__PSEUDONYM_KEY_FILE (a mounted secret); author handles are never "
            "indexed without one"
        )
    if len(key.encode("utf-8")) < MIN_KEY_BYTES:
        raise ConfigError(f"privacy.pseudonym_key: must be at least {MIN_KEY_BYTES} bytes")
    return Pseudonymizer(key)


def ensure_local_key_file(path: Path) -> Path:
    """For the local demo only: create a random key file (0600) once and reuse it."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path
