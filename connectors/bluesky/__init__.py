from stimmung.connectors.bluesky.source import JetstreamSource

__all__ = ["JetstreamSource"]
