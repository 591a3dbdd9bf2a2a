"""``connectors.mastodon``: instances, their timelines and tokens."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from stimmung.sections import Section


class MastodonInstance(Section):
    url: str = Field(description="Instance base URL, e.g. https://mastodon.social")
    timelines: list[str] = Field(min_length=1, description="'tag:<hashtag>', 'public' or 'local'")
    token: SecretStr | None = Field(None, description="Access token (read scope); needed for streaming and by some instances for timelines")
    token_file: Path | None = Field(None, description="The token from a mounted file (wins over token)")
    streaming: bool = Field(True, description="With a token: follow the streaming API between REST catch-ups")
    streaming_url: str | None = Field(None, description="Streaming server, if not the one the instance announces")

    @field_validator("timelines")
    @classmethod
    def _timelines(cls, values: list[str]) -> list[str]:
        for v in values:
            if not (v in ("public", "local") or (v.startswith("tag:") and len(v) > 4)):
                raise ValueError(f"{v!r}: use 'tag:<hashtag>', 'public' or 'local'")
        return values


class MastodonSettings(Section):
    """Mastodon instances, their timelines and tokens."""

    instances: list[MastodonInstance] = Field(default_factory=list, description="Instances to read")
    interval_s: float = Field(60.0, gt=0, description="Seconds between REST sweeps (without streaming)")
