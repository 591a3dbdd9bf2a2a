"""The connector contract.

A connector is one folder with a thin ``client`` that speaks the source's wire format and a
``source`` that maps its payloads to ``RawMention``. The source implements ``Source``: an async
iterator of ``Fetched`` items, each either a mention or a rejection (with the reason), and each
carrying the cursor *after* that item. The runner (``connectors.runner``) publishes mentions to
Kafka, rejections to the dead-letter topic, and saves the cursor only once everything up to it
was acknowledged by Kafka.

Each source also declares its settings (``settings.py`` beside it, the ``connectors.<name>``
section), is built from them by ``from_settings`` and answers ``ping()``: the check behind
``stimmung connect NAME --check`` and the connector role's first readiness answer.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, AsyncIterator

from stimmung.schemas.mention import RawMention


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a source takes from the settings besides its own section."""

    timeout_s: float = 30.0
    brands: tuple[str, ...] = ()  # brand names: the default queries/rules of search sources


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input the source could not turn into a mention; it goes to the dead-letter topic."""

    reason: str
    error_type: str
    payload: bytes | str
    position: int | None = None  # line/row/sequence number, where the source has one


@dataclass(frozen=True, slots=True)
class PrivacySignal:
    """The source says an account is gone (deleted, taken down): its mentions must be erased."""

    platform: str
    handle: str
    status: str
    at: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    mention: RawMention | None = None
    rejected: Rejected | None = None
    privacy: PrivacySignal | None = None
    #: Resume position after this item (opaque, JSON-serialisable); None = not resumable here.
    cursor: Any = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.mention, self.rejected, self.privacy)) != 1:
            raise ValueError("Fetched holds exactly one of mention, rejected or privacy")


class Source(abc.ABC):
    #: Connector name, used for metrics labels, checkpoints and `stimmung connect <name>`.
    name: str = "source"

    @property
    def checkpoint_key(self) -> str:
        """Which checkpoint this source instance resumes from (per source and configuration)."""
        return self.name

    @classmethod
    def from_settings(cls, section: Any, context: SourceContext) -> "Source":
        """The source its ``connectors.<name>`` section describes; ``ConfigError`` names what is missing."""
        raise NotImplementedError(f"{cls.__name__} is not built from settings")

    async def ping(self) -> str:
        """Reach the source once, with the configured credentials, and say what answered.

        Raises ``SourceError`` when the source refuses (credentials, unknown endpoint: retrying
        will not help) and ``SourceUnavailable`` when it cannot be reached or fails (retry later).
        No retries and no rate-limit waits: a check answers now.
        """
        raise NotImplementedError(f"{self.name} has no check")

    @abc.abstractmethod
    def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        """Yield items from ``cursor`` on (None = from the source's configured start)."""

    #: Polling sources: seconds between sweeps when the runner follows the source (0 = a stream
    #: whose fetch never ends on its own).
    poll_interval_s: float = 0.0

    def sweep_cursor(self) -> Any | None:
        """Cursor after a whole sweep (e.g. updated ETags when no item was new); saved by the
        runner once everything before it is acknowledged. None = the last item's cursor."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once when the runner stops."""
