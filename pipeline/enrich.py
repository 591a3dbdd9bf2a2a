"""Turns a micro-batch of raw Kafka messages into enriched mentions and dead letters.

Pure and synchronous (no Kafka here), so the Faust agent can run it in a worker thread and the
unit tests can run it directly. The author handle is replaced by its keyed pseudonym here, the
last place a handle exists: nothing downstream (topic, sink, index) ever sees one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlsplit

from pydantic import ValidationError

from stimmung.brandquery import BrandTagger, Target
from stimmung.metrics import ENRICH_BATCH_SECONDS, ENRICH_BATCH_SIZE
from stimmung.models.base import Enricher, MentionText
from stimmung.schemas.deadletter import DeadLetter
from stimmung.schemas.mention import BrandMatch, EnrichedMention, PseudonymousAuthor, RawMention
from stimmung.schemas.pseudonym import Pseudonymizer


@dataclass(frozen=True, slots=True)
class InMessage:
    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None

    def dead_letter(self, stage: str, error_type: str, reason: str) -> DeadLetter:
        """This message as a dead letter: where it came from, why, and its original bytes."""
        return DeadLetter(
            stage=stage, reason=reason, error_type=error_type, source=self.topic, partition=self.partition,
            offset=self.offset, key=self.key.decode("utf-8", "replace") if self.key else None,
            payload=DeadLetter.encode_payload(self.value),
        )


def url_names_author(url: str | None, handle: str) -> bool:
    """Does the post's address name its author (the handle, its local part, or a profile handle)?

    Covers Mastodon-style ``/@anna/123`` and ``/@anna@host/123``, plain ``/anna/...`` and handles
    that are domains (Bluesky ``/profile/anna.bsky.social/post/...``). A Bluesky profile segment
    that is not a DID names a handle even when it is not this author's spelling of it; a DID
    (``did:plc:...``) is a stable, non-speaking id and stays.
    """
    if not url:
        return False
    local = handle.strip().lstrip("@").split("@")[0].lower()
    path = urlsplit(url).path.lower()
    segments = [seg for seg in path.split("/") if seg]
    for i, seg in enumerate(segments):
        if seg.startswith("did:"):
            continue  # the accepted form: an opaque account id, not a name
        if i > 0 and segments[i - 1] == "profile":
            return True
        if len(local) < 2:
            continue
        if seg in (local, "@" + local) or seg.startswith("@" + local + "@") or seg.startswith(local + "."):
            return True
    return False


class MentionEnrichment:
    def __init__(self, enricher: Enricher, pseudonymizer: Pseudonymizer, brands: BrandTagger | None = None):
        self.enricher = enricher
        self.pseudonymizer = pseudonymizer
        self.brands = brands

    def parse(self, messages: Sequence[InMessage]) -> tuple[list[RawMention], list[DeadLetter]]:
        mentions, letters = [], []
        for msg in messages:
            if not msg.value:
                letters.append(msg.dead_letter("enrich", "empty", "message has no value"))
                continue
            try:
                mentions.append(RawMention.model_validate_json(msg.value))
            except ValidationError as err:
                letters.append(msg.dead_letter("enrich", DeadLetter.kind(err), DeadLetter.describe(err)))
        return mentions, letters

    def process(self, messages: Sequence[InMessage]) -> tuple[list[EnrichedMention], list[DeadLetter]]:
        raws, letters = self.parse(messages)
        if not raws:
            return [], letters
        started = time.perf_counter()
        # Exact duplicates in one batch (re-deliveries) are enriched once and emitted once.
        unique: dict[str, RawMention] = {}
        for raw in raws:
            unique[raw.mention_id] = raw
        batch = list(unique.values())
        annotations = self.enricher.enrich(
            [MentionText(text=r.text, language_hint=r.language_hint, platform=r.platform) for r in batch]
        )
        ENRICH_BATCH_SIZE.observe(len(batch))
        ENRICH_BATCH_SECONDS.observe(time.perf_counter() - started)
        versions = self.enricher.model_versions
        enriched = []
        for raw, ann in zip(batch, annotations, strict=True):
            author = None
            if raw.author is not None:
                author = PseudonymousAuthor(
                    pseudonym=self.pseudonymizer.pseudonym(raw.platform, raw.author.handle),
                    follower_count=raw.author.follower_count,
                )
            brands = ann.brands
            if self.brands:
                # Brand queries see the handle (author:) here, before it is pseudonymised.
                target = Target.of(raw.text, ann.language, raw.url, raw.author.handle if raw.author else None,
                                   raw.platform, raw.author.display_handle if raw.author else None)
                brands = [BrandMatch(brand=name, query=query) for name, query in self.brands.tag(target)]
            base = raw.model_dump(exclude={"author", "raw", "mention_id"})
            held_url = None
            if raw.author is not None and any(url_names_author(raw.url, name) for name in
                                              (raw.author.handle, raw.author.display_handle) if name):
                # e.g. https://mastodon.social/@anna/1234: the address would leak the handle.
                # Held back; the app restores it only while the author's consent allows linking.
                held_url, base["url"] = base["url"], None
            enriched.append(
                EnrichedMention(
                    **base,
                    author=author,
                    language=ann.language,
                    language_confidence=round(ann.language_confidence, 4),
                    language_source=ann.language_source,
                    sentiment=ann.sentiment,
                    topics=ann.topics,
                    complaint=ann.complaint,
                    brand_sentiment=ann.brand_sentiment,
                    relevance=ann.relevance,
                    aspects=ann.aspects,
                    intents=ann.intents,
                    brands=brands,
                    model_versions=versions,
                )
            )
            enriched[-1]._held_url = held_url
        return enriched, letters


def dead_letter_bytes(letter: DeadLetter) -> bytes:
    return letter.model_dump_json().encode("utf-8")


def enriched_bytes(mention: EnrichedMention) -> bytes:
    return mention.model_dump_json().encode("utf-8")


__all__ = ["InMessage", "MentionEnrichment", "dead_letter_bytes", "enriched_bytes"]
