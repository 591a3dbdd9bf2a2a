"""What every command module shares: the lazily loaded settings, one-line errors, the operator's name."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click

from stimmung.config import Settings, load_settings


class Context:
    def __init__(self, config: str | None, log_level: str | None, log_format: str | None):
        self.config = config
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            overrides = {}
            if self.log_level:
                overrides["log_level"] = self.log_level
            if self.log_format:
                overrides["log_format"] = self.log_format
            self._settings = load_settings(self.config, **overrides)
            from stimmung.logs import setup_logging

            setup_logging(self._settings.log_level, self._settings.log_format)
            if self._settings.log_level != "DEBUG":
                # One-shot commands report an unreachable broker in one line of their own; the
                # client's per-retry connection errors would bury it (roles turn it back on).
                for chatty in ("kafka", "elastic_transport"):
                    logging.getLogger(chatty).setLevel(logging.CRITICAL)
        return self._settings


def fail(message: str, code: int = 2) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def say(message: str) -> None:
    click.echo(message, err=True)


def who() -> str:
    """The operator, for audit records: ``cli:<user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in a container: still audited as the CLI
        return "cli"


def es_client(obj: Context):
    from stimmung.pipeline.elastic.client import make_client

    return make_client(obj.settings.elasticsearch)
