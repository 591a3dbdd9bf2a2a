"""The stream roles: `stimmung worker`, `alerting`, `sink` and `privacy-worker` (start-up in stimmung.roles)."""

from __future__ import annotations

import logging

import click

from stimmung.commands.common import Context
from stimmung.roles import run_faust_role, run_role

log = logging.getLogger("stimmung")


@click.command("privacy-worker")
@click.pass_obj
def privacy_worker(obj: Context) -> None:
    """Erase the mentions of accounts that sources report as deleted or taken down."""
    from stimmung.pipeline.privacy_signals import PrivacySignalWorker

    s = obj.settings
    run_role(s, lambda: PrivacySignalWorker(s), [s.kafka.topics.privacy], create_topics=False)


@click.command("worker")
@click.pass_obj
def worker(obj: Context) -> None:
    """Run the Faust enrichment worker (raw -> enriched)."""
    from stimmung.pipeline.app import build_app
    from stimmung.pipeline.privacy import pseudonymizer_from_settings

    s = obj.settings
    pseudonymizer_from_settings(s)  # fail fast, before Kafka, when the key is missing
    if not s.brands:
        # Not an error (a worker may only enrich), but replaying tagged data through it strips the
        # brand tags: say so once, where the operator looks first.
        log.warning("no brands configured: mentions get no brand tags (set `brands` in the settings file%s)",
                    f" {s.source_file}" if s.source_file else "")
    run_faust_role(s, build_app, s.pipeline.app_id, s.kafka.topics.raw)


@click.command("alerting")
@click.pass_obj
def alerting(obj: Context) -> None:
    """Run complaint-spike alerting (enriched -> windowed counts -> detector -> alerts -> deliveries)."""
    from stimmung.pipeline.alerts.alerting import build_alerting_app

    s = obj.settings
    run_faust_role(s, build_alerting_app, f"{s.pipeline.app_id}-alerting", s.kafka.topics.enriched)


@click.command("sink")
@click.pass_obj
def sink(obj: Context) -> None:
    """Run the Elasticsearch sink (enriched -> index)."""
    from stimmung.pipeline.sink import ElasticsearchSink

    s = obj.settings
    run_role(s, lambda: ElasticsearchSink(s), [s.kafka.topics.enriched])
