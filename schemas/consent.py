"""Consent to link an author's posts to a CRM contact (social CRM).

The record is keyed by the author's pseudonym, never by the handle: the consent topic and the
index hold no handle. ``purposes`` are the ones currently granted; a withdrawal publishes the
remaining ones (empty when all are withdrawn). Linking happens only for the configured linking
purpose (``crm.linking_purpose``, default ``service``)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stimmung.schemas.mention import utcnow

Purpose = Literal["service", "profiling", "marketing"]


class ConsentRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    pseudonym: str = Field(description="The author's pseudonym (key); the handle is never stored")
    platform: str
    contact_id: str = Field(min_length=1, max_length=256, description="The CRM's contact id")
    purposes: list[Purpose] = Field(default_factory=list, description="Purposes currently granted")
    status: Literal["granted", "withdrawn"]
    at: AwareDatetime = Field(default_factory=utcnow)
    source: str = Field(min_length=1, max_length=200, description="Who recorded it: 'cli:<user>', 'api:<crm>'")
    evidence: str | None = Field(None, max_length=1000, description="Where the consent is documented (form id, ticket)")

    def allows(self, purpose: str) -> bool:
        return self.status == "granted" and purpose in self.purposes


class ConsentAudit(BaseModel):
    """One line of the audit trail (index ``stimmung-consent-audit``)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    action: Literal["grant", "withdraw", "erase", "migrate"]
    pseudonym: str
    platform: str
    contact_id: str | None = None
    purposes: list[str] = Field(default_factory=list)
    at: AwareDatetime = Field(default_factory=utcnow)
    source: str
    evidence: str | None = None
    unlinked_documents: int = 0
