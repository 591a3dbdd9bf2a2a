from stimmung.connectors.rss.source import RSSSource

__all__ = ["RSSSource"]
