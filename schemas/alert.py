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
    kind: Literal["spike", "sla"] = Field("spike", description="A complaint spike, or a case that missed its SLA")
    alert_id: str = Field(description="Dedupe key: same spike episode (incident), same id")
    event_id: str = Field("", description="This event of the incident (alert id + event + window): the document id")
    event: Literal["fired", "escalated", "updated", "resolved"] = "fired"
    status: Literal["firing", "resolved"]
    severity: Literal["info", "warning", "critical"]
    series: str = Field("", description="The count series, e.g. 'brand=Nordbahn|topic=delivery|sentiment=negative'")
    brand: str
    topic: str | None = None
    sentiment: Sentiment | None = None
    window_start: AwareDatetime = Field(description="Start of the span tested (one window or a rolling sum)")
    window_end: AwareDatetime
    incident_started: AwareDatetime | None = None
    observed: int = Field(ge=0)
    expected: float = Field(ge=0)
    p_value: float = Field(ge=0, le=1, description="Chance of seeing >= observed if nothing changed")
    sentiment_mix: dict[Sentiment, int] = Field(default_factory=dict)
    platform_mix: dict[str, int] = Field(default_factory=dict)
    samples: list[AlertSample] = Field(default_factory=list)
    kibana_url: str | None = None
    case_id: str | None = Field(None, description="SLA alerts: the case")
    queue: str | None = Field(None, description="SLA alerts: the case's team queue")
    detail: str | None = Field(None, max_length=500, description="SLA alerts: what was missed")
    created_at: AwareDatetime = Field(default_factory=utcnow)
