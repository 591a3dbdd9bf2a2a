from stimmung.connectors.reddit.source import RedditSource

__all__ = ["RedditSource"]
