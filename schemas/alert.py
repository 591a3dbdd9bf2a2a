"""Complaint-spike alerts (produced by the alerting component, indexed for the alert timeline)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stimmung.schemas.mention import Sentiment, utcnow


class AlertSample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mention_id: str
    excerpt: str = Field(max_length=500)
    platform: str
    url: str | None = None


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    alert_id: str = Field(description="Dedupe key: same spike episode, same id")
    status: Literal["firing", "resolved"]
    severity: Literal["info", "warning", "critical"]
    brand: str
    topic: str | None = None
    window_start: AwareDatetime
    window_end: AwareDatetime
    observed: int = Field(ge=0)
    expected: float = Field(ge=0)
    p_value: float = Field(ge=0, le=1, description="Chance of seeing >= observed if nothing changed")
    sentiment_mix: dict[Sentiment, int] = Field(default_factory=dict)
    samples: list[AlertSample] = Field(default_factory=list)
    kibana_url: str | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)
