from stimmung.connectors.mastodon.source import Instance, MastodonSource

__all__ = ["Instance", "MastodonSource"]
