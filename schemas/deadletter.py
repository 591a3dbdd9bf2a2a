"""Dead letters: anything a stage could not process, with the reason, so nothing is lost."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stimmung.schemas.mention import utcnow

Stage = Literal["connector", "enrich", "sink", "alerting"]


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    stage: Stage
    reason: str = Field(description="Human-readable reason, e.g. the validation or Elasticsearch error")
    error_type: str = Field(description="Machine-readable class, e.g. 'validation', 'json', 'mapper_parsing_exception'")
    source: str = Field(description="Topic, file or connector the input came from")
    partition: int | None = None
    offset: int | None = Field(None, description="Kafka offset, or line/row number for files")
    key: str | None = None
    payload: str = Field(description="The original bytes: UTF-8 text, or 'base64:'-prefixed when not text")
    failed_at: AwareDatetime = Field(default_factory=utcnow)

    @staticmethod
    def describe(err) -> str:
        """A pydantic ValidationError as one line naming each bad field (never echoing input values)."""
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in err.errors())

    @staticmethod
    def kind(err) -> str:
        """'json' when the bytes were not JSON at all, else 'validation'."""
        return "json" if any(e["type"] == "json_invalid" for e in err.errors()) else "validation"

    @staticmethod
    def encode_payload(data: bytes | str | None) -> str:
        if data is None:
            return ""
        if isinstance(data, str):
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(data).decode("ascii")
