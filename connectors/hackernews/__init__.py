from stimmung.connectors.hackernews.source import HackerNewsSource

__all__ = ["HackerNewsSource"]
