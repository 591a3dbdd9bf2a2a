"""Every connector by name: its settings section and what runs it (`stimmung connect NAME`).

Adding a connector means its own folder (``settings.py`` with its section; a source with
``from_settings`` and ``ping``) and one entry in ``CONNECTORS`` below (with the import of its
settings class). ``config.py`` builds the ``connectors`` settings section from this table, so the
new section is configurable (YAML, ``STIMMUNG_CONNECTORS__<NAME>__...``) without touching it.

This module imports only the connectors' settings classes, never ``stimmung.config`` (which
imports it) nor the sources themselves: those load when a connector runs or is checked, so
reading the settings does not import HTTP, WebSocket or Kafka clients.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stimmung.connectors.base import Source, SourceContext
from stimmung.connectors.bluesky.settings import BlueskySettings
from stimmung.connectors.hackernews.settings import HackerNewsSettings
from stimmung.connectors.mastodon.settings import MastodonSettings
from stimmung.connectors.reddit.settings import RedditSettings
from stimmung.connectors.rss.settings import RSSSettings
from stimmung.connectors.webhook.settings import WebhookSettings
from stimmung.connectors.x.settings import XSettings
from stimmung.sections import ConfigError, Section

if TYPE_CHECKING:
    from stimmung.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connector:
    settings: type[Section]
    #: "module:Class" built by ``Class.from_settings(section, context)``; it answers ``ping()`` and,
    #: if it is a ``Source``, is what `stimmung connect NAME` runs.
    runs: str

    def load(self) -> Any:
        module, _, name = self.runs.partition(":")
        return getattr(importlib.import_module(module), name)


CONNECTORS: dict[str, Connector] = {
    "rss": Connector(RSSSettings, "stimmung.connectors.rss.source:RSSSource"),
    "hackernews": Connector(HackerNewsSettings, "stimmung.connectors.hackernews.source:HackerNewsSource"),
    "mastodon": Connector(MastodonSettings, "stimmung.connectors.mastodon.source:MastodonSource"),
    "reddit": Connector(RedditSettings, "stimmung.connectors.reddit.source:RedditSource"),
    "bluesky": Connector(BlueskySettings, "stimmung.connectors.bluesky.source:JetstreamSource"),
    "x": Connector(XSettings, "stimmung.connectors.x.source:XStreamSource"),
    # The receiver runs as `stimmung webhook`; `connect webhook --check` checks a running one.
    "webhook": Connector(WebhookSettings, "stimmung.connectors.webhook.check:WebhookCheck"),
}


def checkpoint_dir(settings: Settings) -> Path:
    return settings.connectors.checkpoint_dir or Path(settings.stack.state_dir).parent / "checkpoints"


def _make(name: str, settings: Settings) -> Any:
    try:
        connector = CONNECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown connector {name!r}; available: {', '.join(sorted(CONNECTORS))}") from None
    context = SourceContext(timeout_s=settings.connectors.timeout_s, brands=tuple(b.name for b in settings.brands))
    return connector.load().from_settings(getattr(settings.connectors, name), context)


def build(name: str, settings: Settings) -> Source:
    """The source `stimmung connect NAME` runs; ``ConfigError`` if its settings are incomplete."""
    made = _make(name, settings)
    if not isinstance(made, Source):
        raise ConfigError(f"{name} is not a source to run with `connect`: run `stimmung {name}`; "
                          f"`stimmung connect {name} --check` checks it")
    return made


async def check(name: str, settings: Settings) -> str:
    """Reach the connector's source once with the configured credentials: what answered, or
    ``ConfigError`` (settings incomplete), ``SourceError`` (refused), ``SourceUnavailable``."""
    made = _make(name, settings)
    try:
        return await made.ping()
    finally:
        await made.close()


async def ready_after_ping(source: Source) -> None:
    """The connector role's first readiness answer, before its first sweep ends (a stream's never
    does): ready if the source answers; not ready, with the reason, while it cannot be reached
    (the runner retries, and marks it ready after a sweep). A refusal is raised: credentials or
    URLs that are wrong will not heal by waiting."""
    from stimmung.connectors.http import SourceUnavailable
    from stimmung.health import HEALTH

    try:
        detail = await source.ping()
    except SourceUnavailable as err:
        HEALTH.set_ready("source", False, str(err)[:200])
        log.warning("source not reachable at start", extra={"connector": source.name, "error": str(err)[:300]})
        return
    HEALTH.set_ready("source", True, detail[:200])
