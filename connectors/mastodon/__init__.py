from stimmung.connectors.mastodon.source import MastodonSource

__all__ = ["MastodonSource"]
