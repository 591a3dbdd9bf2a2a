"""The enrichment interface: what the pipeline asks of every model.

An ``Annotator`` looks at a micro-batch of mention texts and fills in its part of each
``Annotations`` record (language, sentiment, topics, brands). Annotators are plain synchronous,
CPU-bound objects: the pipeline calls them off the Faust event loop, in a worker thread, so a
slow model never stalls heartbeats or offset commits. Sentiment and topic models (see the models
issue) plug in behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from stimmung.schemas.mention import BrandMatch, ComplaintResult, SentimentResult, TopicScore


@dataclass(frozen=True, slots=True)
class MentionText:
    """The part of a mention a model may look at (no author identity)."""

    text: str
    language_hint: str | None = None
    platform: str = ""


@dataclass(slots=True)
class Annotations:
    language: str = "und"
    language_confidence: float = 0.0
    language_source: str = "none"
    sentiment: SentimentResult | None = None
    topics: list[TopicScore] = field(default_factory=list)
    complaint: ComplaintResult | None = None
    brand_sentiment: SentimentResult | None = None
    relevance: float | None = None
    aspects: list[TopicScore] = field(default_factory=list)
    intents: list[TopicScore] = field(default_factory=list)
    brands: list[BrandMatch] = field(default_factory=list)


@runtime_checkable
class Annotator(Protocol):
    #: Short name, used as the key in ``EnrichedMention.model_versions`` and in metrics.
    name: str
    #: Version string of the model/data behind it (changes when outputs may change).
    version: str

    def annotate(self, items: Sequence[MentionText], out: Sequence[Annotations]) -> None:
        """Fill this annotator's fields of ``out[i]`` for ``items[i]``; must not reorder."""


class Enricher:
    """Runs a fixed chain of annotators over a batch (language first: later ones may use it)."""

    def __init__(self, annotators: Sequence[Annotator]):
        if not annotators:
            raise ValueError("an Enricher needs at least one annotator")
        self.annotators = list(annotators)

    @property
    def model_versions(self) -> dict[str, str]:
        versions: dict[str, str] = {}
        for a in self.annotators:
            # An annotator serving several outputs (one encoder pass) names each one's version.
            versions.update(getattr(a, "versions", None) or {a.name: a.version})
        return versions

    def enrich(self, items: Sequence[MentionText]) -> list[Annotations]:
        out = [Annotations() for _ in items]
        for annotator in self.annotators:
            annotator.annotate(items, out)
        return out
