"""``connectors.reddit``: an OAuth app's credentials, searches and subreddits."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from stimmung.sections import Section


class RedditSettings(Section):
    """Reddit's OAuth API: an app's credentials, searches and subreddits."""

    client_id: str | None = Field(None, description="A 'script' or 'web' app's id (reddit.com/prefs/apps)")
    client_secret: SecretStr | None = Field(None, description="The app's secret")
    client_secret_file: Path | None = Field(None, description="The app's secret from a mounted file (wins over client_secret)")
    searches: list[str] = Field(default_factory=list, description="Site-wide post searches (newest first)")
    subreddits: list[str] = Field(default_factory=list, description="Subreddits whose new comments are read")
    interval_s: float = Field(120.0, gt=0, description="Seconds between sweeps")
    max_pages: int = Field(10, ge=1, le=10, description="Listing pages of 100 per sweep (Reddit serves at most 1,000)")
    auth_url: str = Field("https://www.reddit.com", description="Where the app-only token is obtained")
    api_url: str = Field("https://oauth.reddit.com", description="OAuth API base URL")
