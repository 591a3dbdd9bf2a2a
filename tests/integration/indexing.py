"""Helpers for the analyst-tool tests: put enriched mentions into the real index the way the sink does, and
run the CLI in-process against a settings file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml
from click.testing import CliRunner, Result
from elasticsearch import Elasticsearch, helpers

from stimmung.cli import main
from stimmung.config import Settings
from stimmung.pipeline.elastic.indices import ensure_indices, ensure_period_index
from stimmung.pipeline.elastic.mentions import to_document
from stimmung.schemas import EnrichedMention
from stimmung.schemas.mention import BrandMatch, SentimentResult, TopicScore


def enriched(native_id: str, text: str, created_at: datetime, *, language: str = "de", sentiment: str = "negative",
             topics: tuple[str, ...] = (), brands: dict[str, str] | None = None) -> EnrichedMention:
    probabilities = {label: (0.8 if label == sentiment else 0.1) for label in ("negative", "neutral", "positive")}
    return EnrichedMention(platform="csv", native_id=native_id, text=text, created_at=created_at, language=language,
                           language_confidence=0.99, language_source="model",
                           sentiment=SentimentResult(label=sentiment, score=0.8, probabilities=probabilities),
                           topics=[TopicScore(label=t, score=0.5) for t in topics],
                           brands=[BrandMatch(brand=b, query=q) for b, q in (brands or {}).items()])


def index_mentions(settings: Settings, mentions: list[EnrichedMention]) -> Elasticsearch:
    client = Elasticsearch(settings.elasticsearch.url)
    setup = ensure_indices(client, settings.elasticsearch)
    for target in {setup.layout.index_for(m.created_at) for m in mentions}:
        ensure_period_index(client, setup.layout, target, setup.ilm)
    helpers.bulk(client, ({"_index": setup.layout.index_for(m.created_at), "_id": m.mention_id, "_source": to_document(m)}
                          for m in mentions), chunk_size=1000)
    client.indices.refresh(index=settings.elasticsearch.mentions_index)
    return client


def settings_file(config: dict, path: Path, **extra) -> Path:
    path.write_text(yaml.safe_dump({**config, **extra}, sort_keys=False))
    return path


def cli(config_file: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(config_file), *args], env=env, catch_exceptions=False)
