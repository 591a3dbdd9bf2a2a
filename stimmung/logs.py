"""Structured logging: one JSON object per line (or plain text for humans at a terminal).

The same dictConfig serves our CLI processes and the Faust worker (which takes a
``logging_config``), so every component logs in one shape. Structured context goes in
``extra={...}`` and becomes JSON keys.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class TextFormatter(logging.Formatter):
    """Plain text for terminals; the structured ``extra`` fields follow as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}
        if extras:
            line += " " + " ".join(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}"
                                   for k, v in extras.items())
        return line


# Libraries that are chatty at INFO about things operators do not act on.
_QUIET = ("kafka", "aiokafka", "elastic_transport", "urllib3", "faust.transport", "mode", "faust")


def quiet_level(level: str) -> int:
    """The level for chatty libraries: WARNING, or stricter when the whole process is."""
    return max(logging.WARNING, logging.getLevelName(level))


def logging_config(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    formatter: dict[str, Any]
    if fmt == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        }
    else:
        formatter = {"()": TextFormatter, "fmt": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    quiet = quiet_level(level)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"stimmung": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "stimmung", "stream": "ext://sys.stderr"},
        },
        "loggers": {
            **{name: {"level": logging.getLevelName(quiet)} for name in _QUIET},
            # Their per-node failure and per-retry warnings carry full tracebacks on every retry
            # (hundreds of lines a second during an outage, issue #20); the roles log one clear
            # line per state change ("Elasticsearch unavailable; waiting", "... back") instead.
            "elastic_transport.node_pool": {"level": "ERROR"},
            "elastic_transport.transport": {"level": "ERROR"},
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    logging.config.dictConfig(logging_config(level, fmt))
