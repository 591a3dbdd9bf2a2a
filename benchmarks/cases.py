"""Case manager throughput: routed mentions per second, Kafka -> route -> cases in Elasticsearch -> commit.

    python benchmarks/cases.py [--mentions 500] [--authors 200] [--replays 50]

Starts (or reuses) a local stack (ports 4909x/4920x, state in /tmp/stimmung-bench; the
environment variables STIMMUNG_TEST_KAFKA_PORT, STIMMUNG_TEST_ES_PORT, ... of the integration
tests override them). ``--mentions`` enriched mentions, all matching one routing rule, by
``--authors`` distinct authors (so most of them join an open case, the rest open one), every
tenth in a thread, are put on a topic, plus ``--replays`` of them a second time (a replay: must
change nothing). The real ``CaseManager.run`` loop then drains the topic; mentions/s = routed
mentions / seconds from start until its offsets are committed. Afterwards the cases are checked:
every mention in exactly one case, one case per author. Prints one Markdown table row.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stimmung.config import CaseRouteSettings, load_settings
from stimmung.kafka import ensure_topics
from stimmung.localstack import LocalStack
from stimmung.pipeline.crm.cases import CaseManager
from stimmung.pipeline.elastic.indices import ensure_indices
from stimmung.schemas import EnrichedMention

PORTS = {"kafka_port": int(os.environ.get("STIMMUNG_TEST_KAFKA_PORT", 49092)),
         "kafka_controller_port": int(os.environ.get("STIMMUNG_TEST_KAFKA_CONTROLLER_PORT", 49093)),
         "es_http_port": int(os.environ.get("STIMMUNG_TEST_ES_PORT", 49200)),
         "es_transport_port": int(os.environ.get("STIMMUNG_TEST_ES_TRANSPORT_PORT", 49300))}
STATE_DIR = Path(os.environ.get("STIMMUNG_TEST_STATE_DIR", "/tmp/stimmung-bench/stack"))


def mention(n: int, run: str, authors: int) -> EnrichedMention:
    return EnrichedMention(
        platform="mastodon", native_id=f"{run}-{n}", text=f"Nordbahn, meine Erstattung fehlt immer noch ({n})",
        created_at=datetime.now(timezone.utc), language="de", language_confidence=0.98, language_source="model",
        author={"pseudonym": f"psn_{run}_{n % authors:05d}", "influence": 10.0},
        thread_id=f"thread-{run}-{n % authors}" if n % 10 == 0 else None,
        sentiment={"label": "negative", "score": 0.9, "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}},
        topics=[{"label": "complaint", "score": 0.8}], brands=[{"brand": "Nordbahn", "query": "nordbahn"}])


def settings_for(run: str):
    s = load_settings()
    route = CaseRouteSettings(name="complaints", queue=f"bench{run}", priority="P2", brands=["Nordbahn"],
                              sentiments=["negative"])
    return s.model_copy(update={
        "kafka": s.kafka.model_copy(update={
            "bootstrap_servers": f"127.0.0.1:{PORTS['kafka_port']}",
            "topics": s.kafka.topics.model_copy(update={"enriched": f"bench-{run}.enriched", "partitions": 2})}),
        "elasticsearch": s.elasticsearch.model_copy(update={
            "url": f"http://127.0.0.1:{PORTS['es_http_port']}", "mentions_index": f"bench-{run}-mentions",
            "alerts_index": f"bench-{run}-alerts", "erasures_index": f"bench-{run}-erasures",
            "consents_index": f"bench-{run}-consents", "consent_audit_index": f"bench-{run}-consent-audit",
            "cases_index": f"bench-{run}-cases"}),
        "crm": s.crm.model_copy(update={"routes": [route], "sla_check_s": 3600.0}),
        "alerting": s.alerting.model_copy(update={"channels": []}),
        "pipeline": s.pipeline.model_copy(update={"app_id": f"bench-{run}"}),
    })


def committed_all(s, group: str, total: int) -> bool:
    consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_list, group_id=group, enable_auto_commit=False)
    try:
        topic = s.kafka.topics.enriched
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.committed(tp) or 0 for tp in tps) >= total
    finally:
        consumer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mentions", type=int, default=500)
    ap.add_argument("--authors", type=int, default=200)
    ap.add_argument("--replays", type=int, default=50)
    ap.add_argument("--keep-stack", action="store_true")
    args = ap.parse_args()
    run = uuid.uuid4().hex[:8]
    s = settings_for(run)
    stack = LocalStack(load_settings().stack.model_copy(update={**PORTS, "state_dir": STATE_DIR}),
                       report=lambda line: print(f"[stack] {line}", file=sys.stderr))
    stack.up()
    try:
        ensure_topics(s.kafka)
        es = Elasticsearch(s.elasticsearch.url)
        ensure_indices(es, s.elasticsearch)
        mentions = [mention(n, run, args.authors) for n in range(args.mentions)]
        producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_list, acks="all", linger_ms=20)
        for m in mentions + mentions[: args.replays]:
            producer.send(s.kafka.topics.enriched, key=m.mention_id.encode(), value=m.model_dump_json().encode())
        producer.flush()
        producer.close()
        total = args.mentions + args.replays
        manager = CaseManager(s, es)
        done = threading.Event()
        started = time.perf_counter()
        runner = threading.Thread(target=manager.run, kwargs={"until": done.is_set}, daemon=True)
        runner.start()
        while not committed_all(s, manager.group_id, total):
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        done.set()
        runner.join(30)
        es.indices.refresh(index=s.elasticsearch.cases_index)
        hits = es.search(index=s.elasticsearch.cases_index, size=10_000, query={"match_all": {}})["hits"]["hits"]
        per_mention = Counter(mid for h in hits for mid in h["_source"]["mention_ids"])
        authors = Counter(h["_source"]["author_pseudonym"] for h in hits)
        ok = (len(per_mention) == args.mentions and set(per_mention.values()) == {1}
              and len(hits) == min(args.authors, args.mentions) and set(authors.values()) == {1})
        print(f"| {args.mentions} routed + {args.replays} replayed, {args.authors} authors | {len(hits)} cases, "
              f"{len(per_mention)} mentions in them, {'correct' if ok else 'WRONG'} | {seconds:.1f} s | "
              f"{total / seconds:,.1f} mentions/s |")
        if not ok:
            sys.exit(1)
    finally:
        if not args.keep_stack:
            stack.down()


if __name__ == "__main__":
    main()
