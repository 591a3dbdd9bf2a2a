"""``connectors.x``: the filtered stream's token and rules."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from stimmung.sections import Section


class XSettings(Section):
    """X's filtered stream: bearer token and rules."""

    bearer_token: SecretStr | None = Field(None, description="App-only bearer token of an X developer app")
    bearer_token_file: Path | None = Field(None, description="The bearer token from a mounted file (wins over bearer_token)")
    rules: dict[str, str] = Field(default_factory=dict, description=(
        "Filtered-stream rules, tag -> rule in X's own syntax; default: one rule per brand, "
        "'\"<brand>\" -is:retweet'"))
    backfill_minutes: int = Field(0, ge=0, le=5, description="Recover up to 5 minutes after a disconnect (Pro tier and up)")
    stall_s: float = Field(90.0, gt=0, description="Reconnect after this long without data or keep-alive")
    base_url: str = Field("https://api.x.com", description="X API base URL")
