"""The chaos soak's proofs, from the outside: Elasticsearch documents counted by id, the dead-letter
and alerts topics read whole, consumer lag from Kafka's committed offsets, the roles' /readyz."""

from __future__ import annotations

import json
from collections import Counter

from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan
from kafka import KafkaConsumer, TopicPartition


def read_topic(bootstrap: list[str], topic: str) -> list:
    """Every record of ``topic`` from the beginning up to its current end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(parts)
        records = []
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def indexed_ids(settings) -> Counter:
    """native id -> documents in any of the mentions indices (>1 would be a double)."""
    es = Elasticsearch(settings.elasticsearch.url, request_timeout=60)
    try:
        es.indices.refresh(index=settings.elasticsearch.mentions_index, ignore_unavailable=True)
        return Counter(hit["_source"]["native_id"] for hit in scan(
            es, index=settings.elasticsearch.mentions_index, query={"query": {"match_all": {}}}, _source=["native_id"],
            size=5000, ignore_unavailable=True))
    finally:
        es.close()


def lags(settings) -> dict[str, int | None]:
    from stimmung.lag import measure_lag, role_groups

    # the roles this soak runs (`stimmung lag` reads the same groups)
    groups = {name: g for name, g in role_groups(settings).items() if name in ("worker", "sink", "alerting", "cases")}
    out: dict[str, int | None] = {}
    for name, (group, topic) in groups.items():
        try:
            out[name] = sum(measure_lag(settings.kafka, group, [topic]).values())
        except Exception:
            out[name] = None
    return out


def converged(soak) -> bool:
    """Everything indexed, every group caught up, and every alert event on the topic indexed by
    the alerting role's delivery agent (cheap checks first). Without the last, an alert fired in
    the run's final seconds — its delivery still backing off after an Elasticsearch outage — was
    counted as lost (seen once in CI); a truly lost one still fails, at the convergence timeout."""
    if soak.indexed() != len(soak.workload.good_ids):
        return False
    if not all(v == 0 for v in lags(soak.settings).values()):
        return False
    return not _alerts(soak)["lost"]


def _dead_letters(soak) -> dict:
    workload, settings = soak.workload, soak.settings
    letters = []
    for record in read_topic(settings.kafka.bootstrap_list, settings.kafka.topics.deadletter):
        try:
            letters.append(json.loads(record.value))
        except ValueError:
            letters.append({"stage": "?", "reason": "unreadable dead letter"})
    from_file = [d for d in letters if d.get("stage") == "connector" and str(workload.path.name) in str(d.get("source", ""))]
    lines = Counter(d.get("offset") for d in from_file)
    missing = {n: k for n, k in workload.bad_lines.items() if n not in lines}
    unexpected = sorted(n for n in lines if n not in workload.bad_lines)
    without_reason = [d.get("offset") for d in from_file if not d.get("reason")]
    return {"expected_lines": len(workload.bad_lines), "dead_lettered_lines": len(set(lines) & set(workload.bad_lines)),
            "records": len(letters), "import_records": len(from_file),
            "repeated_lines": sum(1 for c in lines.values() if c > 1),
            "missing": {str(n): k for n, k in sorted(missing.items())[:50]}, "missing_count": len(missing),
            "missing_kinds": dict(Counter(missing.values())),
            "unexpected_lines": unexpected[:50], "without_reason": without_reason[:20],
            "other_stages": dict(Counter(d.get("stage") for d in letters if d not in from_file)),
            "by_error_type": dict(Counter(d.get("error_type") for d in from_file))}


def _alerts(soak) -> dict:
    settings = soak.settings
    events = [json.loads(r.value) for r in read_topic(settings.kafka.bootstrap_list, settings.kafka.topics.alerts)]
    ids = Counter(e["event_id"] for e in events)
    # 'updated' events (a spike still going on) go to Alertmanager only, by design: not indexed.
    indexable = {e["event_id"] for e in events if e.get("event") != "updated"}
    incidents: dict[tuple, set] = {}
    for e in events:
        incidents.setdefault((e.get("series"), e.get("window_start"), e.get("window_end"), e.get("event")), set()).add(e["event_id"])
    es = Elasticsearch(settings.elasticsearch.url, request_timeout=30)
    try:
        es.indices.refresh(index=f"{settings.elasticsearch.alerts_index}*", ignore_unavailable=True)
        indexed = {h["_id"] for h in scan(es, index=f"{settings.elasticsearch.alerts_index}*", query={"query": {"match_all": {}}},
                                          _source=False, ignore_unavailable=True)}
    finally:
        es.close()
    return {"topic_records": len(events), "distinct_event_ids": len(ids), "redelivered": sum(c - 1 for c in ids.values()),
            "indexed": len(indexed), "lost": sorted(indexable - indexed)[:20],
            "doubled": [list(k) for k, v in incidents.items() if len(v) > 1][:20],
            "fired": sum(1 for e in events if e.get("event") == "fired")}


def check_all(soak) -> dict:
    workload, settings, fleet = soak.workload, soak.settings, soak.fleet
    docs = indexed_ids(settings)
    good = workload.good_ids
    enriched = read_topic(settings.kafka.bootstrap_list, settings.kafka.topics.enriched)
    enriched_keys = Counter(r.key for r in enriched)
    roles = {}
    for name, proc in fleet.procs.items():
        if name == "import":
            continue
        roles[name] = {"alive": proc.poll() is None, "readyz": fleet.readyz(name), "restarts": fleet.restarts.get(name, 0)}
    summary = {
        "ok": False,
        "seed": soak.opts.seed,
        "workload": workload.describe(),
        "events": soak.events,
        "indexed": {"expected": len(good), "distinct_ids": len(docs), "documents": sum(docs.values()),
                    "missing": len(good - set(docs)), "missing_sample": sorted(good - set(docs))[:20],
                    "unexpected": len(set(docs) - good), "unexpected_sample": sorted(set(docs) - good)[:20],
                    "doubled": sum(1 for c in docs.values() if c > 1)},
        "enriched_topic": {"records": len(enriched), "distinct": len(enriched_keys),
                           "redelivered": len(enriched) - len(enriched_keys)},
        "dead_letters": _dead_letters(soak),
        "lag": lags(settings),
        "roles": roles,
        "unexpected_exits": fleet.unexpected_exits,
        "alerts": _alerts(soak),
    }
    failures = []
    ix = summary["indexed"]
    if ix["missing"] or ix["doubled"] or ix["unexpected"]:
        failures.append(f"indexed: {ix['missing']} missing, {ix['doubled']} doubled, {ix['unexpected']} not in the workload")
    dl = summary["dead_letters"]
    if dl["missing_count"] or dl["without_reason"]:
        failures.append(f"dead letters: {dl['missing_count']} bad lines not dead-lettered ({dl['missing_kinds']}), "
                        f"{len(dl['without_reason'])} without a reason")
    if any(v != 0 for v in summary["lag"].values()):
        failures.append(f"lag not zero: {summary['lag']}")
    for name, r in roles.items():
        if not r["alive"] or r["readyz"] != 200:
            failures.append(f"{name}: alive={r['alive']} readyz={r['readyz']}")
    if fleet.unexpected_exits:
        failures.append(f"roles exited on their own: {[(e['role'], e['code']) for e in fleet.unexpected_exits]}")
    al = summary["alerts"]
    if al["lost"] or al["doubled"]:
        failures.append(f"alerts: {len(al['lost'])} lost, {len(al['doubled'])} doubled")
    summary["failures"] = failures
    summary["ok"] = not failures
    return summary
