"""Moving mentions from older template versions into the current one (`stimmung migrate-indices`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan, streaming_bulk
from pydantic import ValidationError

from stimmung.config import ElasticsearchSettings
from stimmung.pipeline.elastic.indices import IndexSetup, ensure_indices, ensure_period_index
from stimmung.pipeline.elastic.mentions import INDEX_ONLY_FIELDS, older_version_indices, to_document
from stimmung.schemas.mention import EnrichedMention

log = logging.getLogger(__name__)


@dataclass
class MigrationReport:
    indices: list[str]  # older-version indices found (and deleted once copied)
    copied: int = 0
    kept_newer: int = 0  # the current version already had the mention (a newer write): left as is
    failed: int = 0


def _migration_actions(client: Elasticsearch, setup: IndexSetup, old: str, report: MigrationReport):
    """Bulk "create" actions for the documents of one older-version index (unreadable ones counted)."""
    created_targets: set[str] = set()
    for hit in scan(client, index=old, query={"query": {"match_all": {}}}, size=500):
        source = {k: v for k, v in hit["_source"].items() if k not in INDEX_ONLY_FIELDS}
        try:
            mention = EnrichedMention.model_validate(source)
        except ValidationError as err:
            report.failed += 1
            log.error("cannot migrate a document", extra={"index": old, "id": hit["_id"], "error": str(err)[:300]})
            continue
        target = setup.layout.index_for(mention.created_at)
        if target not in created_targets:
            ensure_period_index(client, setup.layout, target, setup.ilm)
            created_targets.add(target)
        yield {"_op_type": "create", "_index": target, "_id": hit["_id"], "_source": to_document(mention)}


def migrate_older_versions(client: Elasticsearch, settings: ElasticsearchSettings, progress=None) -> MigrationReport:
    """Copy mentions from older template versions into the current one, then delete the old indices.

    After a mapping change the old-version indices stay readable through the alias; but a replay
    (or the demo run again) writes the same mentions into the new version, and the alias then
    shows them twice. Run this once every sink runs the new version: each old document is
    rebuilt by ``to_document`` (the new derived fields) and created in its period index of the
    current version; an id that is already there is a newer write and is kept. An old index is
    deleted only when every one of its documents is accounted for. Uses scroll + bulk only (no
    reindex API, no scripts: our test node has neither). ``progress(n)`` is called per document.
    """
    setup = ensure_indices(client, settings)
    layout = setup.layout
    report = MigrationReport(older_version_indices(client, layout))
    for old in report.indices:
        failed_before = report.failed
        actions = _migration_actions(client, setup, old, report)
        for ok, item in streaming_bulk(client, actions, chunk_size=500, raise_on_error=False, max_retries=5):
            result = item["create"]
            if ok:
                report.copied += 1
            elif result.get("status") == 409:
                report.kept_newer += 1
            else:
                report.failed += 1
                log.error("cannot migrate a document", extra={"index": old, "id": result.get("_id"),
                                                             "error": str(result.get("error"))[:300]})
            if progress:
                progress(1)
        if report.failed == failed_before:
            client.indices.delete(index=old)
            log.info("migrated and deleted an older-version index", extra={"index": old})
        else:
            log.error("kept an older-version index: some documents could not be migrated", extra={"index": old})
    client.indices.refresh(index=layout.alias)
    return report
