"""Getting mentions in: `stimmung import` (a file), `stimmung connect NAME` (a source), `stimmung webhook`."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click

from stimmung.commands.common import Context, fail
from stimmung.roles import start_role

log = logging.getLogger("stimmung")


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "tsv", "jsonl"]), default=None,
              help="Default: from the file name (.csv, .tsv, .jsonl/.ndjson, optionally .gz).")
@click.option("--platform", default=None, help="Platform for rows without a platform column.")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN",
              help="Column mapping override, e.g. --map text=message --map author_handle=user.screen_name")
@click.option("--resume/--no-resume", default=True, help="Continue an interrupted import of the same file.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append rejected rows (JSON Lines, with reasons) to this file.")
@click.option("--delimiter", default=None, help="CSV field delimiter (default: from the header: , ; tab |).")
@click.option("--encoding", default=None, help="Text encoding of the file (default utf-8; e.g. cp1252, latin-1).")
@click.pass_obj
def import_file(obj: Context, path: Path, fmt: str | None, platform: str | None, maps: tuple[str, ...],
                resume: bool, rejects: Path | None, delimiter: str | None, encoding: str | None) -> None:
    """Import a CSV/TSV/JSONL export and publish its rows as raw mentions."""
    from stimmung.connectors.fileimport import ImportFileError
    from stimmung.connectors.fileimport.job import run_import

    mapping = {}
    for item in maps:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            fail(f"--map expects FIELD=COLUMN, got {item!r}")
        mapping[field.strip()] = column.strip()
    try:
        if delimiter is not None:
            delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
            if len(delimiter) != 1:
                fail(f"--delimiter takes one character, got {delimiter!r}")
        report = run_import(obj.settings, path, fmt, platform, mapping, resume, rejects,
                            delimiter=delimiter, encoding=encoding)
    except ImportFileError as err:
        fail(str(err))
    click.echo(f"published {report.published} mention(s), rejected {report.rejected} row(s) "
               f"in {report.seconds:.1f}s")
    for letter in report.rejections[:20]:
        click.echo(f"  row {letter.offset}: {letter.error_type}: {letter.reason}")
    if report.rejected > 20:
        click.echo(f"  ... {report.rejected - 20} more (all on topic {obj.settings.kafka.topics.deadletter})")
    if report.rejected:
        click.echo(f"rejected rows are on the dead-letter topic {obj.settings.kafka.topics.deadletter}"
                   + (f" and in {rejects}" if rejects else ""))
    # A script must notice an import that imported nothing.
    if report.published == 0 and report.rejected:
        fail(f"every row was rejected ({report.rejected}): check the mapping (--map) and the file", code=1)
    if report.published == 0 and not report.rejected:
        if resume and report.last_cursor is not None:
            click.echo("nothing new: the checkpoint says this file was imported with these settings already "
                       "(--no-resume imports it again)")
        else:
            fail("the file has no data rows", code=1)


@click.command("connect")
@click.argument("name")
@click.option("--once", is_flag=True, help="One sweep, then exit (default: follow the source until stopped).")
@click.option("--no-resume", is_flag=True, help="Ignore the saved checkpoint (start from the configured start).")
@click.option("--check", is_flag=True, help="Only check the source (webhook: the running receiver): reachable and "
              "credentials accepted. Exit 0 if so, 1 with the reason if not, 2 if the settings are incomplete.")
@click.pass_obj
def connect(obj: Context, name: str, once: bool, no_resume: bool, check: bool) -> None:
    """Run one connector (rss, hackernews, mastodon, reddit, bluesky, x): fetch mentions, publish them to the raw topic."""
    if check:
        from stimmung.connectors.http import SourceError
        from stimmung.connectors.registry import check as check_source

        try:
            click.echo(f"{name}: ok: {asyncio.run(check_source(name, obj.settings))}")
        except SourceError as err:
            fail(f"check failed: {err}", code=1)
        return
    import signal as signals

    from stimmung.brandquery import BrandTagger
    from stimmung.connectors.checkpoints import CheckpointStore
    from stimmung.connectors.http import SourceError
    from stimmung.connectors.registry import build, checkpoint_dir, ready_after_ping
    from stimmung.connectors.runner import RunReport, SourceRunner
    from stimmung.kafka import DeadLetters, make_producer

    s = obj.settings
    source = build(name, s)
    start_role(s)
    producer = make_producer(s.kafka)
    brands = BrandTagger.from_settings(s) if s.connectors.filter_by_brands else None
    runner = SourceRunner(source, producer, s.kafka.topics.raw, DeadLetters(producer, s.kafka.topics.deadletter),
                          CheckpointStore(checkpoint_dir(s)), brands=brands, privacy_topic=s.kafka.topics.privacy,
                          on_progress=lambda r: log.info("progress", extra={"connector": name, "published": r.published,
                                                                           "rejected": r.rejected}))

    async def main_() -> RunReport:
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        if not once:  # a long-running role: /readyz answers from the first ping, not the first sweep's end
            await ready_after_ping(source)
        return await runner.run(resume=not no_resume, follow=not once)

    try:
        report = asyncio.run(main_())
    except SourceError as err:
        fail(str(err), code=1)
    finally:
        producer.close()
    click.echo(json.dumps({"connector": name, "published": report.published, "rejected": report.rejected,
                           "seconds": round(report.seconds, 1), "errors": report.errors}))
    if once and report.errors:  # cron must tell a sweep that could not fetch from one that found nothing new
        fail(f"{name}: {len(report.errors)} source error(s) in this sweep: " + "; ".join(report.errors[:3]), code=1)


@click.command("webhook")
@click.pass_obj
def webhook(obj: Context) -> None:
    """Run the webhook receiver (Meta-style and generic signed JSON pushes -> raw topic)."""
    from stimmung.config import read_secret
    from stimmung.connectors.webhook import WebhookReceiver, make_app, serve
    from stimmung.kafka import DeadLetters, make_producer
    from stimmung.listening import not_listening_yet

    s = obj.settings
    w = s.connectors.webhook
    secrets = {name: read_secret(getattr(w, name), getattr(w, name + "_file"), f"connectors.webhook.{name}")
               for name in ("meta_app_secret", "meta_verify_token", "generic_secret")}
    if not secrets["meta_app_secret"] and not secrets["generic_secret"]:
        fail("connectors.webhook: set meta_app_secret and/or generic_secret (env or *_file); "
             "unsigned webhooks are never accepted")
    not_listening_yet("pushes")  # before the Kafka wait in start_role can say ready
    start_role(s)
    # bounded waits: a push during a broker outage is answered 503 in seconds (receiver.SEND_TIMEOUT_S)
    producer = make_producer(s.kafka, max_block_ms=10_000, request_timeout_ms=10_000, delivery_timeout_ms=15_000)
    receiver = WebhookReceiver(producer, s.kafka.topics.raw, DeadLetters(producer, s.kafka.topics.deadletter), **secrets)
    log.info("webhook receiver listening", extra={"host": w.host, "port": w.port})
    try:
        asyncio.run(serve(make_app(receiver, w.max_body_bytes), w.host, w.port))
    finally:
        producer.close()
