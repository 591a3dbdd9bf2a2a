"""Connector name -> source built from the settings (what `stimmung connect <name>` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from stimmung.config import ConfigError, Settings
from stimmung.connectors.base import Source
from stimmung.connectors.http import PoliteClient


def _rss(settings: Settings) -> Source:
    from stimmung.connectors.rss import RSSSource

    c = settings.connectors.rss
    if not c.feeds:
        raise ConfigError("connectors.rss.feeds: no feeds configured")
    return RSSSource(c.feeds, PoliteClient("rss", timeout_s=settings.connectors.timeout_s), interval_s=c.interval_s)


def _hackernews(settings: Settings) -> Source:
    from stimmung.connectors.hackernews import HackerNewsSource

    c = settings.connectors.hackernews
    queries = c.queries or [b.name for b in settings.brands]
    if not queries:
        raise ConfigError("connectors.hackernews.queries: no queries configured (and no brands to search for)")
    return HackerNewsSource(queries, PoliteClient("hackernews", timeout_s=settings.connectors.timeout_s),
                            base_url=c.base_url, tags=c.tags, hits_per_page=c.hits_per_page,
                            interval_s=c.interval_s, start_back_s=c.start_back_s)


def _mastodon(settings: Settings) -> Source:
    from stimmung.config import read_secret
    from stimmung.connectors.mastodon import Instance, MastodonSource

    c = settings.connectors.mastodon
    if not c.instances:
        raise ConfigError("connectors.mastodon.instances: no instances configured")
    instances = []
    for n, i in enumerate(c.instances):
        token = read_secret(i.token, i.token_file, f"connectors.mastodon.instances[{n}].token")
        instances.append(Instance(i.url, i.timelines, token, stream=i.streaming and token is not None,
                                  streaming_url=i.streaming_url))
    return MastodonSource(instances, PoliteClient("mastodon", timeout_s=settings.connectors.timeout_s),
                          interval_s=c.interval_s)


def _reddit(settings: Settings) -> Source:
    from stimmung.config import read_secret
    from stimmung.connectors.reddit import RedditSource
    from stimmung.connectors.reddit.client import RedditClient

    c = settings.connectors.reddit
    secret = read_secret(c.client_secret, c.client_secret_file, "connectors.reddit.client_secret")
    if not c.client_id or not secret:
        raise ConfigError("connectors.reddit: client_id and client_secret (env or file) are required")
    if not c.searches and not c.subreddits:
        raise ConfigError("connectors.reddit: configure searches and/or subreddits")
    http = PoliteClient("reddit", timeout_s=settings.connectors.timeout_s)
    return RedditSource(RedditClient(http, c.client_id, secret, c.auth_url, c.api_url), http,
                        searches=c.searches, subreddits=c.subreddits, interval_s=c.interval_s, max_pages=c.max_pages)


def _bluesky(settings: Settings) -> Source:
    from stimmung.connectors.bluesky import JetstreamSource
    from stimmung.connectors.bluesky.client import JetstreamClient

    c = settings.connectors.bluesky
    dictionary = None
    if c.zstd_dictionary is not None:
        try:
            dictionary = Path(c.zstd_dictionary).read_bytes()
        except OSError as err:
            raise ConfigError(f"connectors.bluesky.zstd_dictionary: cannot read {c.zstd_dictionary}: {err.strerror}") from None
    return JetstreamSource(JetstreamClient(c.url, c.legacy, tuple(c.collections), dictionary))


def _x(settings: Settings) -> Source:
    from stimmung.config import read_secret
    from stimmung.connectors.x import XStreamSource
    from stimmung.connectors.x.client import XStreamClient

    c = settings.connectors.x
    token = read_secret(c.bearer_token, c.bearer_token_file, "connectors.x.bearer_token")
    if not token:
        raise ConfigError("connectors.x: bearer_token (env or file) is required")
    rules = c.rules or {b.name: f'"{b.name}" -is:retweet' for b in settings.brands}
    if not rules:
        raise ConfigError("connectors.x.rules: no rules configured (and no brands to build them from)")
    http = PoliteClient("x", timeout_s=settings.connectors.timeout_s)
    return XStreamSource(XStreamClient(http, token, c.base_url, c.stall_s), rules, backfill_minutes=c.backfill_minutes)


CONNECTORS: dict[str, Callable[[Settings], Source]] = {"rss": _rss, "hackernews": _hackernews, "mastodon": _mastodon,
                                                       "reddit": _reddit, "bluesky": _bluesky, "x": _x}


def checkpoint_dir(settings: Settings) -> Path:
    return settings.connectors.checkpoint_dir or Path(settings.stack.state_dir).parent / "checkpoints"


def build(name: str, settings: Settings) -> Source:
    try:
        factory = CONNECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown connector {name!r}; available: {', '.join(sorted(CONNECTORS))}") from None
    return factory(settings)
