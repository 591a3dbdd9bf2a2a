"""Alerts: complaint spikes, sentiment shifts, SLA breaches (produced by the alerting and case
components, indexed for the alert timeline). Spike and shift alerts carry their evidence: distinct
authors and texts behind the count, top terms, samples, the expected band."""

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
    kind: Literal["spike", "sentiment_shift", "sla"] = Field("spike", description=(
        "A complaint spike, a jump in a brand's negative share at flat volume, or a case that missed its SLA"))
    alert_id: str = Field(description="Dedupe key: same spike episode (incident), same id")
    event_id: str = Field("", description="This event of the incident (alert id + event + window): the document id")
    event: Literal["fired", "escalated", "updated", "resolved"] = "fired"
    status: Literal["firing", "resolved"]
    severity: Literal["info", "warning", "critical"]
    series: str = Field("", description="The count series, e.g. 'brand=Nordbahn|topic=delivery|sentiment=negative'")
    brand: str
    topic: str | None = None
    sentiment: Sentiment | None = None
    min_relevance: float | None = Field(None, ge=0, le=1, description=(
        "Spikes of a series family that counts only posts judged relevant at least this much"))
    window_start: AwareDatetime = Field(description="Start of the span tested (one window or a rolling sum)")
    window_end: AwareDatetime
    incident_started: AwareDatetime | None = None
    observed: int = Field(ge=0)
    expected: float = Field(ge=0)
    p_value: float = Field(ge=0, le=1, description="Chance of seeing >= observed if nothing changed")
    expected_lower: float | None = Field(None, ge=0, description="Spikes: lower end of the expected band over the span")
    expected_upper: float | None = Field(None, ge=0, description="Spikes: above this the span alerts")
    score: float | None = Field(None, description="Spikes: surprise in units of the series' typical daily peak")
    threshold: float | None = Field(None, description="Spikes: the score the series' alert budget allows")
    distinct_authors: int | None = Field(None, ge=0, description="Distinct authors (pseudonyms) behind the count")
    distinct_texts: int | None = Field(None, ge=0, description="Distinct texts (copies and retweets are one)")
    top_terms: list[str] = Field(default_factory=list, description="Most frequent terms in the span's mentions")
    negative_share: float | None = Field(None, ge=0, le=1, description="Sentiment shifts: negative share since the shift began")
    baseline_share: float | None = Field(None, ge=0, le=1, description="Sentiment shifts: the brand's usual negative share")
    sentiment_mix: dict[Sentiment, int] = Field(default_factory=dict)
    platform_mix: dict[str, int] = Field(default_factory=dict)
    samples: list[AlertSample] = Field(default_factory=list)
    kibana_url: str | None = None
    case_id: str | None = Field(None, description="SLA alerts: the case")
    queue: str | None = Field(None, description="SLA alerts: the case's team queue")
    detail: str | None = Field(None, max_length=500, description="SLA alerts: what was missed")
    created_at: AwareDatetime = Field(default_factory=utcnow)
