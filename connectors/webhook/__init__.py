"""Push platforms: Meta-style and generic signed webhooks.

Its classes load on first use: ``config.py`` imports ``settings.py`` from here (through the
registry), and that must not drag in this connector's clients (nor, for the webhook, Kafka).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stimmung.connectors.webhook.receiver import WebhookReceiver, make_app, serve

_LAZY = {name: "stimmung.connectors.webhook.receiver" for name in ("WebhookReceiver", "make_app", "serve")}
__all__ = ["WebhookReceiver", "make_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
