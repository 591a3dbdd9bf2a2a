"""One file import end to end (`stimmung import`, the demo): source -> runner -> raw topic, with progress."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tqdm import tqdm

from stimmung.config import Settings, merge_overrides
from stimmung.connectors.checkpoints import CheckpointStore
from stimmung.connectors.fileimport.source import FileImportSource
from stimmung.connectors.registry import checkpoint_dir
from stimmung.connectors.runner import RunReport, SourceRunner
from stimmung.kafka import DeadLetters, ensure_topics, make_producer


def run_import(settings: Settings, path: Path, fmt: str | None, platform: str | None,
               mapping: dict[str, str], resume: bool, rejects: Path | None, show_progress: bool = True,
               delimiter: str | None = None, encoding: str | None = None) -> RunReport:
    """Import one file (shared by `stimmung import` and the demo). Returns the RunReport."""
    columns = {**settings.importer.columns, **mapping}
    if mapping:  # validate the merged mapping through the settings model: clear field errors
        settings = merge_overrides(settings, {"importer": {"columns": columns}})
    configured = settings.importer.csv_delimiter
    source = FileImportSource(path, columns, platform or settings.importer.platform, fmt,  # type: ignore[arg-type]
                              delimiter or (configured if configured != "," else None),
                              encoding or "utf-8-sig", explicit=frozenset(mapping))
    source.check_header()  # before Kafka: a wrong mapping or delimiter is reported at once
    ensure_topics(settings.kafka, timeout_s=30)  # a one-shot command: fail clearly, not wait forever
    producer = make_producer(settings.kafka)
    bar = tqdm(desc=f"import {path.name}", unit=" rows", disable=not show_progress, file=sys.stderr)
    seen = [0]

    def progress(report: RunReport) -> None:
        done = report.published + report.rejected
        bar.update(done - seen[0])
        seen[0] = done
        bar.set_postfix(published=report.published, rejected=report.rejected)

    try:
        runner = SourceRunner(
            source, producer, settings.kafka.topics.raw, DeadLetters(producer, settings.kafka.topics.deadletter),
            CheckpointStore(checkpoint_dir(settings)), on_progress=progress,
        )
        report = asyncio.run(runner.run(resume=resume))
    finally:
        bar.close()
        producer.close()
    if rejects is not None:  # appended: a killed and resumed import keeps every run's rejections
        with open(rejects, "a", encoding="utf-8") as fh:
            for letter in report.rejections:
                fh.write(letter.model_dump_json() + "\n")
    return report
