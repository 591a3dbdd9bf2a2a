"""Social CRM cases: what a team works on (index ``stimmung-cases``)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stimmung.schemas.mention import utcnow

CaseState = Literal["open", "in_progress", "done"]


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str
    at: AwareDatetime = Field(default_factory=utcnow)
    text: str = Field(max_length=5000)


class Note(BaseModel):
    """An internal note: seen by staff only, never sent to the customer."""

    model_config = ConfigDict(extra="forbid")
    by: str
    at: AwareDatetime = Field(default_factory=utcnow)
    text: str = Field(max_length=5000)


CaseAction = Literal["claimed", "noted", "replied", "closed", "reopened", "assigned", "moved"]


class CaseEvent(BaseModel):
    """One staff action on a case (the inbox's per-case history)."""

    model_config = ConfigDict(extra="forbid")
    at: AwareDatetime = Field(default_factory=utcnow)
    by: str
    action: CaseAction
    detail: str | None = Field(None, max_length=500)


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    case_id: str
    queue: str
    priority: Literal["P1", "P2", "P3", "P4"]
    route: str = Field(description="The routing rule that opened it")
    state: CaseState = "open"
    assignee: str | None = None
    brand: str | None = None
    topics: list[str] = Field(default_factory=list)
    sentiment: str | None = None
    language: str | None = None
    platform: str
    author_pseudonym: str | None = None
    contact_id: str | None = Field(None, description="Only while the author's consent for linking exists")
    influence: float | None = None
    thread_id: str | None = None
    title: str = Field(max_length=300, description="Excerpt of the first mention")
    url: str | None = None
    mention_ids: list[str] = Field(default_factory=list)
    mention_count: int = 0
    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)
    claimed_at: AwareDatetime | None = None
    first_response_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    first_response_due: AwareDatetime
    resolution_due: AwareDatetime
    sla_breached: list[Literal["first_response", "resolution"]] = Field(default_factory=list)
    first_response_s: float | None = None
    resolution_s: float | None = None
    replies: list[Reply] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list, description="Internal notes (the inbox)")
    history: list[CaseEvent] = Field(default_factory=list, description="Staff actions taken in the inbox, oldest first")
    observed: list[Literal["first_response", "resolution"]] = Field(
        default_factory=list, description="Durations already exported as Prometheus histograms")
