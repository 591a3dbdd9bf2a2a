"""Erasure records: an author whose mentions were removed on request, and must stay removed."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stimmung.schemas.mention import utcnow


class ErasureRecord(BaseModel):
    """Kept in Elasticsearch (``_id`` = pseudonym). Holds the pseudonym only, never the handle:
    the record must not itself become the personal data it protects."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    pseudonym: str = Field(pattern=r"^psn_[0-9a-f]{32}$")
    platform: str
    erased_at: AwareDatetime = Field(default_factory=utcnow)
    reason: str = Field("data-subject-request", max_length=200)
    requested_by: str | None = Field(None, max_length=200, description="Operator or system that asked (no personal data)")
    deleted: int = Field(0, ge=0, description="Mention documents removed")
