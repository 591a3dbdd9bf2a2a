"""Analysts' corrections of mentions (`stimmung correct`) and their export as training examples.

Corrections live in an index of their own (``elasticsearch.corrections_index``), never in the
mentions: the mentions mapping belongs to the pipeline, a replay must not wipe an analyst's
work, and the two join by mention id. One document per mention and corrected field
(``<mention id>:sentiment``, ``<mention id>:topic:<label>``, ``:relevant``, ``:note``): the latest
correction wins, and the document keeps who set each earlier value and when (``history``), so the
index answers "who changed what" without a second audit index. Writes are conditional on the
document's ``_seq_no``/``_primary_term`` (two analysts at once: the second retries on the first's
version and both end up in the history). ``--complaint yes|no`` is the topic label ``complaint``.

The export writes JSON Lines in the labelled format the models' evaluation and training read
(``models/datasets.read_topic_jsonl``: ``id``, ``lang``, ``text``, ``topics``, optional
``sentiment``), with the text taken from the indexed mention at export time: a mention erased or
expired since is not exported, so corrections never carry personal text of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Iterator, Sequence

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from stimmung.config import ElasticsearchSettings
from stimmung.pipeline.elastic.indices import _ensure_plain_index

SENTIMENTS = ("negative", "neutral", "positive")


class CorrectionError(ValueError):
    pass


def corrections_mapping() -> dict[str, Any]:
    keyword, date_ = {"type": "keyword"}, {"type": "date"}
    return {"dynamic": "strict", "properties": {
        "schema_version": {"type": "short"}, "@timestamp": date_, "mention_id": keyword, "field": keyword,
        "label": keyword, "value": keyword, "model_value": keyword, "corrected_by": keyword, "note": {"type": "text"},
        "revision": {"type": "integer"}, "mention_created_at": date_, "mention_language": keyword,
        "mention_platform": keyword, "mention_brands": keyword,
        # the mention's author, so an erasure takes the corrections (and their notes) along
        "author_pseudonym": keyword,
        # earlier values, for the audit trail only (not searched)
        "history": {"type": "object", "enabled": False}}}


def ensure_corrections_index(client: Elasticsearch, settings: ElasticsearchSettings) -> None:
    _ensure_plain_index(client, settings.corrections_index, corrections_mapping(), settings.replicas)


@dataclass(frozen=True)
class Change:
    field: str  # sentiment | topic | relevant | note
    value: str  # negative/neutral/positive, "true"/"false", or the note
    label: str | None = None  # the topic label

    @property
    def key(self) -> str:
        return f"{self.field}:{self.label}" if self.label else self.field


def find_mention(client: Elasticsearch, mentions_index: str, mention_id: str) -> dict[str, Any]:
    hits = client.search(index=mentions_index, ignore_unavailable=True, size=1, query={"ids": {"values": [mention_id]}},
                         source_includes=["mention_id", "created_at", "language", "platform", "brand_names", "sentiment.label",
                                  "topic_labels", "author.pseudonym"])["hits"]["hits"]
    if not hits:
        raise CorrectionError(f"no indexed mention {mention_id!r} (the id is the mention_id `stimmung search --json` shows)")
    return hits[0]["_source"]


def _model_value(mention: dict[str, Any], change: Change) -> str | None:
    if change.field == "sentiment":
        return (mention.get("sentiment") or {}).get("label")
    if change.field == "topic":
        return "true" if change.label in (mention.get("topic_labels") or []) else "false"
    return None


def correct(client: Elasticsearch, settings: ElasticsearchSettings, mention_id: str, changes: Sequence[Change],
            by: str, note: str | None = None, now: datetime | None = None, attempts: int = 5) -> list[dict[str, Any]]:
    """Store ``changes`` for an indexed mention; returns the stored documents."""
    if not by.strip():
        raise CorrectionError("--as: say who corrects (a name or staff id)")
    mention = find_mention(client, settings.mentions_index, mention_id)
    ensure_corrections_index(client, settings)
    at = (now or datetime.now(timezone.utc)).isoformat()
    stored = []
    for change in changes:
        doc_id = f"{mention_id}:{change.key}"
        for _ in range(attempts):
            try:
                current = client.get(index=settings.corrections_index, id=doc_id)
            except NotFoundError:
                current = None
            doc = {"schema_version": 1, "@timestamp": at, "mention_id": mention_id, "field": change.field,
                   "label": change.label, "value": change.value if change.field != "note" else None,
                   "model_value": _model_value(mention, change), "corrected_by": by,
                   "note": change.value if change.field == "note" else note,
                   "mention_created_at": mention.get("created_at"), "mention_language": mention.get("language"),
                   "mention_platform": mention.get("platform"), "mention_brands": mention.get("brand_names") or [],
                   "author_pseudonym": (mention.get("author") or {}).get("pseudonym"),
                   "revision": 1, "history": []}
            try:
                if current is None:
                    client.index(index=settings.corrections_index, id=doc_id, document=doc, op_type="create",
                                 refresh="wait_for")
                else:
                    old = current["_source"]
                    doc["revision"] = int(old.get("revision", 1)) + 1
                    doc["history"] = [*(old.get("history") or []),
                                      {k: old.get(k) for k in ("@timestamp", "value", "corrected_by", "note", "revision")}]
                    client.index(index=settings.corrections_index, id=doc_id, document=doc, refresh="wait_for",
                                 if_seq_no=current["_seq_no"], if_primary_term=current["_primary_term"])
            except ApiError as err:
                if err.meta.status == 409:
                    continue  # someone corrected the same field just now: build on their version
                raise
            stored.append(doc)
            break
        else:
            raise CorrectionError(f"{doc_id}: kept conflicting with concurrent corrections; try again")
    return stored


def _all_corrections(client: Elasticsearch, index: str, page: int = 1000) -> Iterator[dict[str, Any]]:
    after = None
    while True:
        kwargs: dict[str, Any] = dict(index=index, size=page, sort=[{"mention_id": "asc"}, {"field": "asc"}, {"label": "asc"}],
                                      query={"match_all": {}}, ignore_unavailable=True)
        if after:
            kwargs["search_after"] = after
        hits = client.search(**kwargs)["hits"]["hits"]
        yield from (h["_source"] for h in hits)
        if len(hits) < page:
            return
        after = hits[-1]["sort"]


@dataclass
class ExportReport:
    examples: int = 0
    corrections: int = 0
    missing_mentions: list[str] = field(default_factory=list)  # erased or expired since
    notes_only: int = 0  # mentions with a note but no label: no training signal


def example_for(mention: dict[str, Any], corrections: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """A labelled example: the model's topics with the analyst's corrections applied; sentiment and
    relevance only where an analyst set them. None when the corrections hold no label (notes only)."""
    topics = set(mention.get("topic_labels") or [])
    example: dict[str, Any] = {"id": mention.get("mention_id"), "lang": mention.get("language") or "",
                               "text": mention.get("text") or ""}
    corrected, by = [], set()
    for c in corrections:
        if c["field"] == "note":
            continue
        corrected.append(f"topic:{c['label']}" if c["field"] == "topic" else c["field"])
        by.add(c["corrected_by"])
        if c["field"] == "sentiment":
            example["sentiment"] = c["value"]
        elif c["field"] == "relevant":
            example["relevant"] = c["value"] == "true"
        elif c["field"] == "topic":
            (topics.add if c["value"] == "true" else topics.discard)(c["label"])
    if not corrected:
        return None
    example["topics"] = sorted(topics)
    example.update(source="analyst-correction", corrected=sorted(corrected), corrected_by=sorted(by))
    return example


def export_examples(client: Elasticsearch, settings: ElasticsearchSettings, out: IO[str], batch: int = 500) -> ExportReport:
    """Write one JSON line per corrected mention (see the module docstring for the format)."""
    import json

    report = ExportReport()
    if not client.indices.exists(index=settings.corrections_index):
        return report
    grouped: dict[str, list[dict[str, Any]]] = {}

    def flush() -> None:
        ids = list(grouped)
        hits = client.search(index=settings.mentions_index, ignore_unavailable=True, size=len(ids),
                             query={"ids": {"values": ids}},
                             source_includes=["mention_id", "text", "language", "topic_labels"])["hits"]["hits"]
        found = {h["_id"]: h["_source"] for h in hits}
        for mention_id, corrections in grouped.items():
            if mention_id not in found:
                report.missing_mentions.append(mention_id)
                continue
            example = example_for(found[mention_id], corrections)
            if example is None:
                report.notes_only += 1
                continue
            out.write(json.dumps(example, ensure_ascii=False) + "\n")
            report.examples += 1
        grouped.clear()

    for correction in _all_corrections(client, settings.corrections_index):
        report.corrections += 1
        if correction["mention_id"] not in grouped and len(grouped) >= batch:
            flush()
        grouped.setdefault(correction["mention_id"], []).append(correction)
    if grouped:
        flush()
    return report
