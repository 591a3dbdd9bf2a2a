"""Pydantic models of every message and document Stimmung produces."""

from stimmung.schemas.alert import Alert, AlertSample
from stimmung.schemas.case import Case, Reply
from stimmung.schemas.consent import ConsentAudit, ConsentRecord
from stimmung.schemas.deadletter import DeadLetter
from stimmung.schemas.erasure import ErasureRecord
from stimmung.schemas.ids import mention_id
from stimmung.schemas.mention import (
    Author,
    BrandMatch,
    Engagement,
    EnrichedMention,
    PseudonymousAuthor,
    RawMention,
    SentimentResult,
    TopicScore,
)

# Every model whose JSON Schema is exported to schemas/json/ (file name -> model).
EXPORTED = {
    "raw_mention": RawMention,
    "enriched_mention": EnrichedMention,
    "alert": Alert,
    "dead_letter": DeadLetter,
    "erasure_record": ErasureRecord,
    "consent_record": ConsentRecord,
    "consent_audit": ConsentAudit,
    "case": Case,
}

__all__ = [
    "Alert", "AlertSample", "Author", "BrandMatch", "Case", "Reply", "ConsentAudit", "ConsentRecord", "DeadLetter", "EXPORTED", "ErasureRecord", "EnrichedMention",
    "Engagement", "PseudonymousAuthor", "RawMention", "SentimentResult", "TopicScore", "mention_id",
]
