"""X (Twitter) API v2 filtered stream."""

from stimmung.connectors.x.source import XStreamSource

__all__ = ["XStreamSource"]
