"""The erased pseudonyms as a view for consumers that must never index or route them again.

Kept apart from ``erasure.py`` (which carries out erasure requests, consent included) so the sink
and the case manager can read the list without depending on the CRM code.
"""

from __future__ import annotations

import time
from typing import Callable

from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan


class ErasureList:
    """The pseudonyms the sink must never index (re-read from Elasticsearch every few seconds)."""

    def __init__(self, client: Elasticsearch, index: str, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.client, self.index, self.refresh_s, self.clock = client, index, refresh_s, clock
        self._pseudonyms: frozenset[str] = frozenset()
        self._loaded_at: float | None = None

    def load(self) -> None:
        hits = scan(self.client, index=self.index, query={"query": {"match_all": {}}, "_source": ["pseudonym"]},
                    size=1000, ignore_unavailable=True)
        self._pseudonyms = frozenset(h["_source"]["pseudonym"] for h in hits)
        self._loaded_at = self.clock()

    def current(self) -> frozenset[str]:
        """The erased pseudonyms, re-read when the last read is older than ``refresh_s``.

        If Elasticsearch cannot be asked, the caller's bulk request would fail too: the error
        propagates and the batch is retried, never indexed against a stale list past its age.
        """
        if self._loaded_at is None or self.clock() - self._loaded_at >= self.refresh_s:
            self.load()
        return self._pseudonyms
