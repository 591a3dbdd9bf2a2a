"""The main job on the embedded default: start the local stack, import the bundled sample,
run the enrichment worker and the sink until every good row is searchable, print a summary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from stimmung.config import Settings

SAMPLE = "sample_mentions.jsonl"


def sample_path() -> Path:
    return Path(str(resources.files("stimmung").joinpath("data", SAMPLE)))


def _spawn(role: list[str], env: dict[str, str], log_path: Path, config_file: str | None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "stimmung.cli"]
    if config_file:
        argv += ["--config", config_file]
    argv += role
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(settings: Settings, path: Path | None, timeout: float, keep_stack: bool,
             config_file: str | None, say: Callable[[str], None], start_inbox: bool = True) -> int:
    from tqdm import tqdm

    from stimmung.connectors.fileimport.job import run_import
    from stimmung.demo_settings import establish, write_settings_file
    from stimmung.localstack import LocalStack
    from stimmung.pipeline.elastic.client import make_client

    started = time.monotonic()
    path = path or sample_path()
    start_inbox = start_inbox and keep_stack
    stack = LocalStack(settings.stack, report=say)
    say("1/5 starting the local stack (Kafka + Elasticsearch)")
    stack.up()

    done_by_demo = establish(settings, Path(settings.stack.state_dir).parent / "demo-pseudonym.key", start_inbox)
    for note in done_by_demo.notes:
        say(f"    {note}")
    settings_file = write_settings_file(done_by_demo.file_values)
    say(f"    settings written to {settings_file} (later commands read it when neither --config nor "
        "STIMMUNG_CONFIG is given)")
    if config_file:
        say(f"    note: with --config {config_file}, later commands see the demo's key and brands only without "
            "that flag, or after you copy them over")
    env = {**os.environ, **done_by_demo.env}
    settings = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"bootstrap_servers": env["STIMMUNG_KAFKA__BOOTSTRAP_SERVERS"]}),
        "elasticsearch": settings.elasticsearch.model_copy(update={"url": env["STIMMUNG_ELASTICSEARCH__URL"]}),
    })

    logs = Path(settings.stack.state_dir) / "demo-logs"
    say(f"2/5 starting the enrichment worker, the sink and the case manager (logs in {logs})")
    import_started = datetime.now(timezone.utc) - timedelta(seconds=1)
    roles = ("worker", "sink", "cases")
    procs = [_spawn(["worker"], env, logs / "worker.log", config_file),
             _spawn(["sink"], env, logs / "sink.log", config_file),
             _spawn(["cases", "run"], env, logs / "cases.log", config_file)]
    try:
        say(f"3/5 importing {path}")
        report = run_import(settings, path, None, None, {}, resume=False, rejects=None)
        expected_ids = [m.mention_id for m in _good_mentions(path, settings)]
        say(f"    published {report.published}, rejected {report.rejected} (sent to the dead-letter topic)")
        say("4/5 waiting until every published mention is enriched and searchable")
        es = make_client(settings.elasticsearch)
        index = settings.elasticsearch.mentions_index
        deadline = time.monotonic() + timeout
        bar = tqdm(total=len(expected_ids), desc="indexed", unit=" mentions", file=sys.stderr)
        done = 0
        while True:
            failed = _exited(procs, roles, logs, say)
            if failed:
                return 1
            done = _count_fresh(es, index, expected_ids, import_started)
            bar.update(done - bar.n)
            if done >= len(expected_ids) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        bar.close()
        if done < len(expected_ids):
            say(f"error: only {done}/{len(expected_ids)} mentions indexed within {timeout:.0f}s; "
                f"see {logs}")
            return 1
        say("5/5 routing the mentions into case queues")
        routed = _wait_routed(settings, procs, roles, logs, min(120.0, max(30.0, deadline - time.monotonic())), say)
        _summary(es, index, expected_ids, report, time.monotonic() - started, settings, say, routed)
    finally:
        for proc in procs:
            _stop(proc)
        if not keep_stack:
            for line in stack.down():
                say(line)
    if start_inbox:
        return _start_inbox(settings, env, config_file, done_by_demo, say)
    return 0


def _exited(procs: list[subprocess.Popen], roles: tuple[str, ...], logs: Path, say: Callable[[str], None]) -> bool:
    for proc, role in zip(procs, roles):
        if proc.poll() is not None:
            say(f"error: the {role} exited with code {proc.returncode}; see {logs / (role + '.log')}")
            return True
    return False


def _wait_routed(settings: Settings, procs, roles, logs: Path, timeout: float,
                 say: Callable[[str], None]) -> dict[str, int] | None:
    """Until the case manager has read the whole enriched topic (bounded); cases per queue."""
    from stimmung.lag import measure_lag
    from stimmung.pipeline.elastic.client import make_client

    group, topic = f"{settings.pipeline.app_id}-cases", settings.kafka.topics.enriched
    deadline = time.monotonic() + timeout
    lag: int | None = None
    while time.monotonic() < deadline:
        if _exited(procs, roles, logs, say):
            return None
        try:
            lag = measure_lag(settings.kafka, group, [topic]).get(topic)
        except Exception:  # noqa: BLE001 - Kafka busy for a moment: ask again until the deadline
            lag = None
        if lag == 0:
            break
        time.sleep(1.0)
    if lag != 0:
        say(f"    warning: the case manager had not read every mention within {timeout:.0f}s "
            f"({lag if lag is not None else 'unknown'} left); the inbox shows what was routed, see {logs / 'cases.log'}")
    es = make_client(settings.elasticsearch)
    try:
        es.indices.refresh(index=settings.elasticsearch.cases_index)
        resp = es.search(index=settings.elasticsearch.cases_index, size=0,
                         aggs={"queues": {"terms": {"field": "queue", "size": 50}}})
        return {b["key"]: b["doc_count"] for b in resp["aggregations"]["queues"]["buckets"]}
    except Exception:  # noqa: BLE001 - no cases index yet: nothing was routed
        return {}


def _start_inbox(settings: Settings, env: dict[str, str], config_file: str | None, done_by_demo,
                 say: Callable[[str], None]) -> int:
    from stimmung.demo_settings import DEMO_USER
    from stimmung.inbox import background

    host, port = "127.0.0.1", settings.inbox.port  # loopback only: the demo account must not face a network
    argv = [sys.executable, "-m", "stimmung.cli", *(["--config", config_file] if config_file else []),
            "inbox", "--host", host, "--port", str(port)]
    say(f"starting the case inbox in the background (log {background.logfile(settings.stack.state_dir)})")
    try:
        pid = background.start(argv, env, settings.stack.state_dir, host, port, timeout_s=60.0)
    except background.BackgroundError as err:
        say(f"error: {err}")
        return 1
    say("")
    say(f"The case inbox is running (pid {pid}): http://{host}:{port}/")
    say(f"  sign in as '{DEMO_USER}' with password {done_by_demo.password}")
    say(f"  (a new password each demo; it is also in {done_by_demo.password_file}, readable only by you)")
    say("Stop it and the stack with `stimmung stack down`, or only the inbox with `stimmung inbox stop`.")
    return 0


def _good_mentions(path: Path, settings: Settings):
    import asyncio

    from stimmung.connectors.fileimport import FileImportSource

    source = FileImportSource(path, settings.importer.columns, settings.importer.platform)

    async def collect():
        return [item.mention async for item in source.fetch(None) if item.mention is not None]

    return asyncio.run(collect())


def _count_fresh(es, index: str, ids: list[str], since: datetime) -> int:
    from elasticsearch import ApiError, NotFoundError

    try:
        es.indices.refresh(index=index)
        resp = es.count(index=index, query={"bool": {"filter": [
            {"ids": {"values": ids}},
            {"range": {"fetched_at": {"gte": since.isoformat()}}},
        ]}})
        return int(resp["count"])
    except (NotFoundError, ApiError):
        return 0


def _summary(es, index, ids, report, seconds, settings, say, routed: dict[str, int] | None = None) -> None:
    resp = es.search(index=index, size=3, query={"ids": {"values": ids}}, sort=[{"created_at": "desc"}],
                     aggs={"languages": {"terms": {"field": "language"}},
                           "platforms": {"terms": {"field": "platform"}},
                           "sentiment": {"terms": {"field": "sentiment.label"}},
                           "topics": {"terms": {"field": "topic_labels", "size": 6}},
                           "brands": {"terms": {"field": "brand_names", "size": 10}},
                           "oldest": {"min": {"field": "created_at"}}})
    aggs = resp["aggregations"]
    langs = ", ".join(f"{b['key']} {b['doc_count']}" for b in aggs["languages"]["buckets"])
    platforms = ", ".join(f"{b['key']} {b['doc_count']}" for b in aggs["platforms"]["buckets"])
    url = settings.elasticsearch.url
    say("")
    say(f"Done in {seconds:.0f}s: {len(ids)} mentions enriched and indexed into '{index}', "
        f"{report.rejected} malformed row(s) dead-lettered on '{settings.kafka.topics.deadletter}'.")
    say(f"  languages: {langs}")
    say(f"  platforms: {platforms}")
    say("  sentiment: " + ", ".join(f"{b['key']} {b['doc_count']}" for b in aggs["sentiment"]["buckets"]))
    say("  top topics: " + ", ".join(f"{b['key']} {b['doc_count']}" for b in aggs["topics"]["buckets"]))
    say("  brands: " + (", ".join(f"{b['key']} {b['doc_count']}" for b in aggs["brands"]["buckets"]) or "-"))
    if routed is not None:
        say("  cases per queue: " + (", ".join(f"{q} {n}" for q, n in sorted(routed.items())) or "none"))
    say("  newest:")
    for hit in resp["hits"]["hits"]:
        src = hit["_source"]
        author = (src.get("author") or {}).get("pseudonym", "-")
        sentiment = (src.get("sentiment") or {}).get("label", "-")
        topics = ",".join(src.get("topic_labels") or []) or "-"
        say(f"    [{src['language']}|{sentiment}|{topics}] {src['text'][:60]!r}  author={author}")
    say("")
    say("Search them with a brand query, e.g. negative German mentions of Nordbahn about delays:")
    oldest = datetime.fromtimestamp(aggs["oldest"]["value"] / 1000, timezone.utc)
    days = max(1, (datetime.now(timezone.utc) - oldest).days + 1)
    say(f"  ./run stimmung search 'Nordbahn AND Verspätung*' --lang de --sentiment negative --since {days}d")
    # percent-encoded: a raw "ä" in the query string reaches Elasticsearch mangled (0 hits)
    say(f"or with Elasticsearch directly: curl -s '{url}/{index}/_search?q={quote('text_de:Verspätung')}&pretty'")
    say(f"In Kibana (`stimmung kibana import`), the sample's posts are dated from {oldest:%Y-%m-%d}: set the time "
        f"picker to 'Last {days} days' if the dashboard's default (30 days) does not reach back that far.")
    say("The stack keeps running: `stimmung stack status`, stop it with `stimmung stack down`.")
    say("Without flags, `search author:`, `erase` and `consent` use the demo's key from the settings file.")
