"""The Elasticsearch client and what the node can do (language analyzers, asciifolding, ILM).

Every index's mapping asks for analyzers the node may lack (a bare node without the
analysis-common module): the probes here say which exist, and the mappings fall back to
``standard`` with a warning instead of failing to create the index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from stimmung.config import ElasticsearchSettings, read_secret

log = logging.getLogger(__name__)

# language -> (the mention's full-text sub-field, the analyzer it wants)
LANGUAGE_FIELDS = {"de": ("text_de", "german"), "en": ("text_en", "english")}


def make_client(settings: ElasticsearchSettings) -> Elasticsearch:
    kwargs: dict[str, Any] = {"request_timeout": settings.request_timeout_s}
    api_key = read_secret(settings.api_key, settings.api_key_file, "elasticsearch.api_key")
    password = read_secret(settings.password, settings.password_file, "elasticsearch.password")
    if api_key:
        kwargs["api_key"] = api_key
    elif settings.username and password:
        kwargs["basic_auth"] = (settings.username, password)
    if settings.ca_certs:
        kwargs["ca_certs"] = str(settings.ca_certs)
    return Elasticsearch(settings.url, **kwargs)


@dataclass(frozen=True)
class Capabilities:
    analyzers: frozenset[str]
    filters: frozenset[str] = frozenset()

    def analyzer_for(self, wanted: str) -> str:
        return wanted if wanted in self.analyzers else "standard"

    @property
    def folding(self) -> bool:
        return "asciifolding" in self.filters


FOLDED_ANALYZER = "stimmung_folded"


def detect_capabilities(client: Elasticsearch, analyzers: list[str] | None = None) -> Capabilities:
    """Ask the node which language analyzers and the asciifolding filter exist (400 = missing)."""
    available = set()
    for analyzer in analyzers or [a for _, a in LANGUAGE_FIELDS.values()]:
        try:
            client.indices.analyze(analyzer=analyzer, text="probe")
            available.add(analyzer)
        except ApiError as err:
            if err.status_code != 400:
                raise
            log.warning(
                "Elasticsearch has no %s analyzer (analysis-common module missing?): %s full-text "
                "search falls back to the standard analyzer, so inflected forms will not match",
                analyzer, analyzer.capitalize(),
                extra={"analyzer": analyzer, "fallback": "standard"},
            )
    filters = set()
    try:
        client.indices.analyze(tokenizer="standard", filter=["lowercase", "asciifolding"], text="Café")
        filters.add("asciifolding")
    except ApiError as err:
        if err.status_code != 400:
            raise
        log.warning("Elasticsearch has no asciifolding filter: text.folded is not accent-insensitive "
                    "(brand queries for 'cafe' will not find 'café')", extra={"filter": "asciifolding"})
    return Capabilities(frozenset(available), frozenset(filters))


def index_analysis(caps: Capabilities) -> dict[str, Any]:
    if not caps.folding:
        return {}
    return {"analysis": {"analyzer": {FOLDED_ANALYZER: {
        "type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]}}}}


def has_ilm(client: Elasticsearch) -> bool:
    try:
        client.ilm.get_status()
        return True
    except ApiError as err:
        if err.status_code in (400, 404, 405, 410):
            return False
        raise


def missing_api(err: ApiError) -> bool:
    """The node lacks the API (no reindex module: no handler for _delete_by_query / _update_by_query)."""
    text = str(err).lower()
    return err.status_code in (400, 404, 405, 410) and ("no handler" in text or "incorrect http method" in text)
