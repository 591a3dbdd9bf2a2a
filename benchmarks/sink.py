"""Elasticsearch sink: documents/s into one local node, and produce -> searchable latency.

    ./run stimmung ... (inside the environment):  python benchmarks/sink.py [--docs 100000] [--rate 200]

Starts (or reuses) a local stack of its own (ports 4909x/4920x, state in /tmp/stimmung-bench).
1. Throughput: ``--docs`` enriched mentions are put on a topic first, then our sink (Kafka ->
   parse/validate -> bulk -> commit) drains it; documents/s = docs / time until all are committed.
   Baselines in the same run on the same node, each into a fresh index of the same template:
   (a) a well-configured client: ``elasticsearch.helpers.streaming_bulk`` and ``parallel_bulk``
   (2 threads) with our batch size (``sink_batch_size``), documents built from memory (no Kafka,
   no validation, no commit); (b) the node's ceiling: pre-encoded bulk bodies of that size, 1 and 2
   requests in flight; (c) one ``index`` request per document: a strawman, shown only because
   earlier versions of RESULTS.md compared against it. The honest comparison is (a) and (b).
2. Latency: mentions produced at a steady ``--rate`` per second for ``--seconds``; a poller
   searches for every produced id every 50 ms; latency = first seen by search - produced.
Prints a Markdown block for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from elasticsearch import Elasticsearch
from elasticsearch.helpers import parallel_bulk, streaming_bulk
from kafka import KafkaProducer
from tqdm import tqdm

from stimmung.config import load_settings
from stimmung.kafka import ensure_topics
from stimmung.localstack import LocalStack
from stimmung.pipeline.elastic.indices import ensure_indices, ensure_period_index
from stimmung.pipeline.elastic.mentions import to_document
from stimmung.pipeline.sink import ElasticsearchSink
from stimmung.schemas import EnrichedMention

PORTS = {"kafka_port": 49092, "kafka_controller_port": 49093, "es_http_port": 49200, "es_transport_port": 49300}
TEXTS = [
    "Schon wieder Verspätungen bei der Nordbahn, dritter Tag in Folge. Wer erstattet mir das Ticket?",
    "Great support from the Nordbahn app team today, refund arrived within an hour!",
    "Die Lieferung kam beschädigt an und der Kundenservice antwortet seit Tagen nicht.",
    "Is anyone else seeing the checkout page crash on the Nordbahn website?",
]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def mention(n: int, run: str) -> EnrichedMention:
    return EnrichedMention(
        platform=("mastodon", "bluesky", "reddit", "rss")[n % 4], native_id=f"{run}-{n}", text=TEXTS[n % 4],
        url=f"https://example.social/@x/{n}", created_at=datetime.now(timezone.utc),
        language=("de", "en", "de", "en")[n % 4], language_confidence=0.98, language_source="model",
        author={"pseudonym": f"psn_{(n % 5000):032x}", "follower_count": n % 10_000},
        engagement={"likes": n % 50, "shares": n % 7, "replies": n % 3},
        sentiment={"label": ("negative", "positive", "negative", "neutral")[n % 4], "score": 0.9,
                   "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}},
        topics=[{"label": "delivery", "score": 0.7}], brands=[{"brand": "Nordbahn", "query": "nordbahn"}],
        model_versions={"sentiment": "bench"},
    )


def settings_for(run: str, **pipeline):
    s = load_settings()
    return s.model_copy(update={
        "stack": s.stack.model_copy(update={**PORTS, "state_dir": Path("/tmp/stimmung-bench/stack")}),
        "kafka": s.kafka.model_copy(update={
            "bootstrap_servers": f"127.0.0.1:{PORTS['kafka_port']}",
            "topics": s.kafka.topics.model_copy(update={"enriched": f"bench-{run}.enriched",
                                                        "deadletter": f"bench-{run}.dlq", "raw": f"bench-{run}.raw",
                                                        "alerts": f"bench-{run}.alerts", "partitions": 2})}),
        "elasticsearch": s.elasticsearch.model_copy(update={
            "url": f"http://127.0.0.1:{PORTS['es_http_port']}", "mentions_index": f"bench-{run}-mentions",
            "alerts_index": f"bench-{run}-alerts", "erasures_index": f"bench-{run}-erasures"}),
        "pipeline": s.pipeline.model_copy(update={"app_id": f"bench-{run}", **pipeline}),
    })


def produce(settings, mentions: list[EnrichedMention]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all", linger_ms=20,
                             batch_size=256 * 1024)
    for m in tqdm(mentions, desc="producing", unit=" msg", file=sys.stderr, mininterval=2):
        producer.send(settings.kafka.topics.enriched, key=m.mention_id.encode(), value=m.model_dump_json().encode())
    producer.flush()
    producer.close()


def run_sink_until_drained(settings) -> tuple[float, float]:
    from kafka import KafkaConsumer, TopicPartition

    sink = ElasticsearchSink(settings)
    started = time.perf_counter()
    first: list[tuple[float, int]] = []
    last: list[tuple[float, int]] = []

    def watch():  # one observer consumer (never joins the group), checked every 0.5 s
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_list,
                                 group_id=f"{settings.pipeline.app_id}-sink", enable_auto_commit=False)
        tps = [TopicPartition(settings.kafka.topics.enriched, p)
               for p in consumer.partitions_for_topic(settings.kafka.topics.enriched)]
        ends = consumer.end_offsets(tps)
        while True:
            committed = sum(consumer.committed(tp) or 0 for tp in tps)
            if committed and not first:
                first.append((time.perf_counter(), committed))
            if committed >= sum(ends.values()):
                break
            time.sleep(0.2)
        last.append((time.perf_counter(), committed))
        consumer.close(autocommit=False)
        sink.stop()

    threading.Thread(target=watch, daemon=True).start()
    sink.run()
    # steady state: from the first committed batch to the last (excludes start-up and group join)
    (t0, c0), (t1, c1) = first[0], last[0]
    return time.perf_counter() - started, (c1 - c0) / (t1 - t0)


def throughput(n: int) -> dict:
    run = uuid.uuid4().hex[:6]
    s = settings_for(run)
    ensure_topics(s.kafka)
    mentions = [mention(i, run) for i in range(n)]
    produce(s, mentions)
    seconds, steady = run_sink_until_drained(s)
    es = Elasticsearch(s.elasticsearch.url, request_timeout=120)
    es.indices.refresh(index=s.elasticsearch.mentions_index)
    count = es.count(index=s.elasticsearch.mentions_index)["count"]
    ours = {"docs": count, "seconds": seconds, "docs_s": count / seconds, "steady_docs_s": steady}

    # (a) the client's own bulk helpers, our batch size, each into a fresh index of the same template
    batch = s.pipeline.sink_batch_size
    helpers = {}
    for name, index_with in {"streaming_bulk": lambda actions: streaming_bulk(es, actions, chunk_size=batch),
                             "parallel_bulk": lambda actions: parallel_bulk(es, actions, chunk_size=batch,
                                                                            thread_count=2)}.items():
        setup = ensure_indices(es, settings_for(run + name[0]).elasticsearch)
        target = setup.layout.index_for(mentions[0].created_at)
        ensure_period_index(es, setup.layout, target, setup.ilm)
        t = time.perf_counter()  # building each document is part of the client's work, as it is of ours
        done = sum(ok for ok, _ in index_with({"_index": target, "_id": m.mention_id, "_source": to_document(m)}
                                              for m in mentions))
        helpers[name] = done / (time.perf_counter() - t)

    # (c) naive: one index request per document (a sample: it is slow)
    docs = [to_document(m) for m in mentions]
    sample = min(n, 2000)
    t = time.perf_counter()
    for m, d in zip(mentions[:sample], docs[:sample]):
        es.index(index=target, id=m.mention_id + "-n", document=d)
    naive = sample / (time.perf_counter() - t)
    return {"ours": ours, "helpers": helpers, "naive_docs_s": naive, "batch": batch}


def node_ceiling(n: int, threads: tuple[int, ...] = (1, 2, 4)) -> dict[int, float]:
    """The node's own limit: pre-encoded 1,000-document bulk bodies (our sink_batch_size), no
    Kafka, no validation, with 1, 2, 4 requests in flight (each run into a fresh index)."""
    from concurrent.futures import ThreadPoolExecutor

    import orjson

    es = Elasticsearch(settings_for("x").elasticsearch.url, request_timeout=120)
    out = {}
    for t in threads:
        run = uuid.uuid4().hex[:6]
        s = settings_for(run)
        setup = ensure_indices(es, s.elasticsearch)
        mentions = [mention(i, run) for i in range(n)]
        target = setup.layout.index_for(mentions[0].created_at)
        ensure_period_index(es, setup.layout, target, setup.ilm)
        bodies = []
        for i in range(0, n, 1000):
            ops = []
            for m in mentions[i:i + 1000]:
                ops += [orjson.dumps({"index": {"_index": target, "_id": m.mention_id}}), orjson.dumps(to_document(m))]
            bodies.append(ops)
        started = time.perf_counter()
        with ThreadPoolExecutor(t) as pool:
            list(pool.map(lambda ops: es.bulk(operations=ops), bodies))
        out[t] = n / (time.perf_counter() - started)
    return out


def latency(rate: int, seconds: int, batch_wait_s: float) -> dict:
    run = uuid.uuid4().hex[:6]
    s = settings_for(run, sink_batch_wait_s=batch_wait_s)
    ensure_topics(s.kafka)
    es = Elasticsearch(s.elasticsearch.url)
    ensure_indices(es, s.elasticsearch)
    sink = ElasticsearchSink(s)
    sink_thread = threading.Thread(target=sink.run, daemon=True)
    sink_thread.start()
    time.sleep(3)  # sink joined its group
    produced: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll():
        while not stop.is_set() or len(seen) < len(produced):
            pending = [i for i in list(produced) if i not in seen][:2000]
            if pending:
                try:
                    hits = es.search(index=s.elasticsearch.mentions_index, query={"ids": {"values": pending}},
                                     size=len(pending), source=False, ignore_unavailable=True)["hits"]["hits"]
                except Exception:
                    hits = []
                now = time.perf_counter()
                for h in hits:
                    seen.setdefault(h["_id"], now)
            if stop.is_set() and time.perf_counter() > stop_deadline[0]:
                break
            time.sleep(0.05)

    stop_deadline = [float("inf")]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_list, acks="all", linger_ms=0)
    total = rate * seconds
    start = time.perf_counter()
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        m = mention(n, run)
        producer.send(s.kafka.topics.enriched, key=m.mention_id.encode(), value=m.model_dump_json().encode())
        produced[m.mention_id] = time.perf_counter()
    producer.flush()
    achieved = total / (time.perf_counter() - start)
    stop_deadline[0] = time.perf_counter() + 30
    stop.set()
    poller.join()
    sink.stop()
    sink_thread.join(30)
    lat = [seen[i] - produced[i] for i in produced if i in seen]
    return {"rate": achieved, "count": total, "seen": len(lat), "p50": percentile(lat, 0.5),
            "p99": percentile(lat, 0.99), "max": max(lat), "batch_wait_s": batch_wait_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--batch-wait", type=float, nargs="*", default=None,
                    help="sink_batch_wait_s values to measure latency with (default: the setting's default)")
    ap.add_argument("--keep-stack", action="store_true")
    ap.add_argument("--node-ceiling", action="store_true",
                    help="only measure the node's own limit with 1/2/4 parallel pre-encoded bulk requests")
    args = ap.parse_args()
    base = settings_for("x")
    stack = LocalStack(base.stack, report=lambda line: print(f"[stack] {line}", file=sys.stderr))
    stack.up()
    if args.node_ceiling:
        try:
            for t, rate in node_ceiling(args.docs).items():
                print(f"| node ceiling, {t} bulk request(s) in flight, {args.docs:,} pre-encoded docs | {rate:,.0f} |")
        finally:
            if not args.keep_stack:
                stack.down()
        return
    try:
        tp = throughput(args.docs)
        ceiling = node_ceiling(args.docs, threads=(1, 2))
        waits = args.batch_wait or [base.pipeline.sink_batch_wait_s]
        lats = [latency(args.rate, args.seconds, w) for w in waits]
    finally:
        if not args.keep_stack:
            stack.down()
    o = tp["ours"]
    print(f"\n## sink.py — Elasticsearch sink ({datetime.now(timezone.utc):%Y-%m-%d})\n")
    print(f"Machine: {os.cpu_count()} vCPUs ({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
          f"one local Elasticsearch {base.stack.elasticsearch_version} node (heap {base.stack.es_heap}), Kafka "
          f"{base.stack.kafka_version}, same machine.")
    print(f"Command: `python benchmarks/sink.py --docs {args.docs} --rate {args.rate} --seconds {args.seconds}`\n")
    print("| run | documents/s |\n| --- | --- |")
    print(f"| ours: Kafka -> validate -> bulk -> commit, {o['docs']:,} docs in {o['seconds']:.1f} s incl. start-up | {o['docs_s']:,.0f} |")
    print(f"| ours, steady state (first to last committed batch) | {o['steady_docs_s']:,.0f} |")
    for name, rate in tp["helpers"].items():
        print(f"| client baseline: `helpers.{name}`, chunks of {tp['batch']:,}, from memory (no Kafka, no validation, "
              f"no commit) | {rate:,.0f} |")
    for t, rate in ceiling.items():
        print(f"| node ceiling: pre-encoded bulk bodies of 1,000, {t} in flight | {rate:,.0f} |")
    print(f"| strawman: one `index` request per document | {tp['naive_docs_s']:,.0f} |\n")
    print("| steady rate | sink_batch_wait_s | mentions | p50 produce→searchable | p99 | max |\n| --- | --- | --- | --- | --- | --- |")
    for lat in lats:
        print(f"| {lat['rate']:.0f}/s | {lat['batch_wait_s']} | {lat['seen']}/{lat['count']} | {lat['p50'] * 1000:,.0f} ms | "
              f"{lat['p99'] * 1000:,.0f} ms | {lat['max'] * 1000:,.0f} ms |")


if __name__ == "__main__":
    main()
