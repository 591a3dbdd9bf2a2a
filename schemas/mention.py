"""Messages that carry one mention through the pipeline.

``RawMention`` is what a connector publishes (it may hold the raw author handle and the source's
payload). ``EnrichedMention`` is what the enricher publishes and the sink indexes: the author is
reduced to a keyed pseudonym, display name and raw payload are dropped, and the model outputs are
added. Nothing downstream of the enricher ever sees a handle.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, computed_field, field_validator, model_validator

from stimmung.schemas.ids import mention_id

SCHEMA_VERSION: Literal[1] = 1
_PLATFORM_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_TEXT_CHARS = 100_000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=False)


class Engagement(_Strict):
    likes: int = Field(0, ge=0)
    shares: int = Field(0, ge=0, description="Reposts, retweets, boosts")
    replies: int = Field(0, ge=0)
    views: int | None = Field(None, ge=0)


class Author(_Strict):
    handle: str = Field(min_length=1, max_length=512, description=(
        "The author's canonical key on the platform (schemas/identity.py): what the pseudonym is made of"))
    display_handle: str | None = Field(None, max_length=512, description=(
        "How the author is shown where the key is not their name (X username, Bluesky handle); "
        "raw topic only, never indexed"))
    display_name: str | None = Field(None, max_length=512)
    follower_count: int | None = Field(None, ge=0)


class MentionBase(_Strict):
    """Fields shared by raw and enriched mentions."""

    schema_version: Literal[1] = SCHEMA_VERSION
    platform: str = Field(description="Source platform, lower case, e.g. 'bluesky', 'mastodon', 'csv'")
    native_id: str = Field(min_length=1, max_length=512, description="The post's id on its platform")
    url: str | None = Field(None, max_length=4096)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    language_hint: str | None = Field(None, max_length=35, description="Language the source claims, BCP 47")
    created_at: AwareDatetime
    fetched_at: AwareDatetime = Field(default_factory=utcnow)
    reply_to_id: str | None = Field(None, max_length=512)
    thread_id: str | None = Field(None, max_length=512)
    engagement: Engagement = Field(default_factory=Engagement)

    @model_validator(mode="before")
    @classmethod
    def _check_given_id(cls, data: Any) -> Any:
        # mention_id is derived, never trusted: a serialised mention carries it, so accept it on
        # input only when it is the id we would derive ourselves.
        if isinstance(data, dict) and "mention_id" in data:
            data = dict(data)
            given = data.pop("mention_id")
            platform, native_id = data.get("platform"), data.get("native_id")
            if isinstance(platform, str) and isinstance(native_id, str) and platform.strip() and native_id.strip():
                if given != mention_id(platform, native_id):
                    raise ValueError("mention_id does not match (platform, native_id)")
        return data

    @field_validator("platform", mode="before")
    @classmethod
    def _platform(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if not _PLATFORM_RE.match(value):
                raise ValueError("platform must be 1-64 chars of a-z, 0-9, '_', '.', '-'")
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value

    @field_validator("native_id")
    @classmethod
    def _native_id(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("native_id is blank")
        return value

    @computed_field(description="Stable id: UUIDv5 of (platform, native_id); Kafka key and Elasticsearch _id")  # type: ignore[prop-decorator]
    @property
    def mention_id(self) -> str:
        return mention_id(self.platform, self.native_id)


class RawMention(MentionBase):
    """A mention as a connector fetched it."""

    author: Author | None = Field(None, description="None when the source does not name one (e.g. anonymous reviews)")
    raw: dict[str, Any] | None = Field(None, description="The source payload, for reprocessing; never indexed")


Sentiment = Literal["negative", "neutral", "positive"]


class SentimentResult(_Strict):
    label: Sentiment
    score: float = Field(ge=0, le=1, description="Probability of the label")
    probabilities: dict[Sentiment, float]


class TopicScore(_Strict):
    label: str
    score: float = Field(ge=0, le=1)


class ComplaintResult(_Strict):
    label: Literal["complaint", "no_complaint"]
    probability: float = Field(ge=0, le=1, description="Calibrated probability that the post is a complaint")


class BrandMatch(_Strict):
    brand: str
    query: str | None = None


class PseudonymousAuthor(_Strict):
    pseudonym: str = Field(description="Keyed HMAC of (platform, handle); never the handle itself")
    follower_count: int | None = Field(None, ge=0)
    contact_id: str | None = Field(None, max_length=256, description=(
        "CRM contact id: present only while the author's recorded consent for linking exists"))
    influence: float | None = Field(None, ge=0, le=100, description="Influence score 0-100 (docs/influence.md)")
    linked_url: bool | None = Field(None, description=(
        "True when the post's address names the author and is kept only because of that consent"))


class EnrichedMention(MentionBase):
    """A mention after enrichment: what Elasticsearch stores."""

    # The post's address when it names the author (Mastodon's /@handle/...): never serialised,
    # restored into ``url`` only while the author's consent allows linking (pipeline/app.py).
    _held_url: str | None = PrivateAttr(None)

    author: PseudonymousAuthor | None = None
    language: str = Field(description="ISO 639-1 code, or 'und' when undetermined")
    language_confidence: float = Field(ge=0, le=1)
    language_source: Literal["hint", "model", "none"]
    sentiment: SentimentResult | None = None
    topics: list[TopicScore] = Field(default_factory=list)
    complaint: ComplaintResult | None = Field(None, description="Trained complaint head (calibrated)")
    brand_sentiment: SentimentResult | None = Field(None, description=(
        "Sentiment toward the brand or company the post is about (trained head, calibrated; trained on German customer "
        "feedback, GermEval 2017), where `sentiment` is the author's overall tone (trained on tweets): news and "
        "service notices are mostly neutral toward the brand even when their tone is not"))
    relevance: float | None = Field(None, ge=0, le=1, description=(
        "Calibrated probability that the post is about the brand at all (a customer voice, not e.g. a news aside)"))
    aspects: list[TopicScore] = Field(default_factory=list, description=(
        "What the post is about (delivery, pricing_billing, ...): labels the trained aspect head decides, with probabilities"))
    intents: list[TopicScore] = Field(default_factory=list, description=(
        "What the author wants (question, praise, churn_threat, ...): labels the trained intent head decides"))
    brands: list[BrandMatch] = Field(default_factory=list)
    model_versions: dict[str, str] = Field(default_factory=dict)
    enriched_at: AwareDatetime = Field(default_factory=utcnow)

    def relevant_at(self, minimum: float | None) -> bool:
        """Whether the relevance head judged this mention about the brand with at least ``minimum``.
        No minimum, or no relevance (heads off): True, because nothing judged the mention off-topic,
        and a filter must not silently drop every mention of a deployment without the heads."""
        return minimum is None or self.relevance is None or self.relevance >= minimum
