"""The main job on the embedded default: start the local stack, import the bundled sample,
run the enrichment worker and the sink until every good row is searchable, print a summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Callable

from stimmung.config import Settings

SAMPLE = "sample_mentions.jsonl"


def sample_path() -> Path:
    return Path(str(resources.files("stimmung").joinpath("data", SAMPLE)))


def _spawn(role: str, env: dict[str, str], log_path: Path, config_file: str | None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "stimmung.cli"]
    if config_file:
        argv += ["--config", config_file]
    argv.append(role)
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
             config_file: str | None, say: Callable[[str], None]) -> int:
    from tqdm import tqdm

    from stimmung.connectors.fileimport.job import run_import
    from stimmung.localstack import LocalStack
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.privacy import ensure_local_key_file

    started = time.monotonic()
    path = path or sample_path()
    stack = LocalStack(settings.stack, report=say)
    say("1/4 starting the local stack (Kafka + Elasticsearch)")
    stack.up()

    env = dict(os.environ)
    if not (settings.privacy.pseudonym_key or settings.privacy.pseudonym_key_file):
        key_file = ensure_local_key_file(Path(settings.stack.state_dir).parent / "demo-pseudonym.key")
        say(f"    no pseudonymisation key configured: using the local demo key {key_file} "
            "(production: STIMMUNG_PRIVACY__PSEUDONYM_KEY_FILE)")
        env["STIMMUNG_PRIVACY__PSEUDONYM_KEY_FILE"] = str(key_file)
    if not settings.brands:
        import yaml

        brands = yaml.safe_load((sample_path().parent / "sample_brands.yaml").read_text(encoding="utf-8"))
        env["STIMMUNG_BRANDS"] = json.dumps(brands)
        say(f"    no brands configured: tagging with the sample's {', '.join(b['name'] for b in brands)}")
    # The sample's dates are fixed: keep them searchable however old they get.
    env["STIMMUNG_ELASTICSEARCH__RETENTION_DAYS"] = "0"
    # The demo talks to the stack it just started, whatever else the settings point at.
    env["STIMMUNG_KAFKA__BOOTSTRAP_SERVERS"] = f"127.0.0.1:{settings.stack.kafka_port}"
    env["STIMMUNG_ELASTICSEARCH__URL"] = f"http://127.0.0.1:{settings.stack.es_http_port}"
    settings = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"bootstrap_servers": env["STIMMUNG_KAFKA__BOOTSTRAP_SERVERS"]}),
        "elasticsearch": settings.elasticsearch.model_copy(update={"url": env["STIMMUNG_ELASTICSEARCH__URL"]}),
    })

    logs = Path(settings.stack.state_dir) / "demo-logs"
    say(f"2/4 starting the enrichment worker and the sink (logs in {logs})")
    import_started = datetime.now(timezone.utc) - timedelta(seconds=1)
    procs = [_spawn("worker", env, logs / "worker.log", config_file),
             _spawn("sink", env, logs / "sink.log", config_file)]
    try:
        say(f"3/4 importing {path}")
        report = run_import(settings, path, None, None, {}, resume=False, rejects=None)
        expected_ids = [m.mention_id for m in _good_mentions(path, settings)]
        say(f"    published {report.published}, rejected {report.rejected} (sent to the dead-letter topic)")
        say("4/4 waiting until every published mention is enriched and searchable")
        es = make_client(settings.elasticsearch)
        index = settings.elasticsearch.mentions_index
        deadline = time.monotonic() + timeout
        bar = tqdm(total=len(expected_ids), desc="indexed", unit=" mentions", file=sys.stderr)
        done = 0
        while True:
            for proc, role in zip(procs, ("worker", "sink")):
                if proc.poll() is not None:
                    say(f"error: the {role} exited with code {proc.returncode}; see {logs / (role + '.log')}")
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
        _summary(es, index, expected_ids, report, time.monotonic() - started, settings, say)
        return 0
    finally:
        for proc in procs:
            _stop(proc)
        if not keep_stack:
            for line in stack.down():
                say(line)


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


def _summary(es, index, ids, report, seconds, settings, say) -> None:
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
    say(f"or with Elasticsearch directly: curl -s '{url}/{index}/_search?q=text_de:Verspätung&pretty'")
    say("The stack keeps running: `stimmung stack status`, stop it with `stimmung stack down`.")
