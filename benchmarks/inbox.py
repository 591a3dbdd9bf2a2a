"""Case inbox: page time of a queue with 10,000 open cases, and import -> visible in the inbox.

    python benchmarks/inbox.py [--cases 10000] [--requests 200] [--complaints 10]

Starts (or reuses) a local stack of its own (ports from STIMMUNG_TEST_* if set, else 4909x/4920x;
state in /tmp/stimmung-bench-inbox), and `stimmung inbox` as a real server process.
1. Page time: ``--cases`` open cases in the support queue (plus a fifth as many in legal), each
   built exactly as the case manager builds it (``new_case`` from an enriched mention) and bulk
   loaded. A signed-in agent fetches the queue page ``--requests`` times per view (newest first,
   by due time, a filtered view, page 20); after 10 warm-up requests, p50/p95/p99 of the whole
   HTTP round trip (server render included).
2. Import -> visible: the real pipeline at the demo's defaults (worker, sink and case manager as
   processes, default batch waits, inbox live poll 1 s). The models are warmed by one complaint
   first; then ``--complaints`` complaints are imported one by one (a one-line JSONL through
   ``stimmung import``'s code) and the agent's queue page is polled every 100 ms until the
   complaint's text shows; latency = visible - import started.
Prints a Markdown block for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import yaml
from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk

from stimmung.config import load_settings
from stimmung.inbox.accounts import hash_password
from stimmung.localstack import LocalStack
from stimmung.pipeline.crm.cases import new_case
from stimmung.pipeline.elastic.indices import ensure_indices
from stimmung.schemas.mention import EnrichedMention

PORTS = {"kafka_port": int(os.environ.get("STIMMUNG_TEST_KAFKA_PORT", 49092)),
         "kafka_controller_port": int(os.environ.get("STIMMUNG_TEST_KAFKA_CONTROLLER_PORT", 49093)),
         "es_http_port": int(os.environ.get("STIMMUNG_TEST_ES_PORT", 49200)),
         "es_transport_port": int(os.environ.get("STIMMUNG_TEST_ES_TRANSPORT_PORT", 49300))}
STATE = Path("/tmp/stimmung-bench-inbox")
PASSWORD = "bench-password-0123"
TEXTS = ["Nordbahn: seit drei Wochen keine Erstattung für mein Ticket, unverschämt",
         "Nordbahn RE 7 wieder 40 Minuten Verspätung, Anschluss verpasst",
         "Nordbahn app crashes at checkout, refund please",
         "Der Nordbahn Kundenservice antwortet seit Tagen nicht auf meine Beschwerde"]
VIEWS = {"newest": {}, "due": {"sort": "due"}, "filtered": {"state": "open", "priority": "P2", "language": "de"},
         "page 20": {"page": "20"}}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def settings_dict(run: str, port: int) -> dict:
    return {
        "log_format": "text",
        "kafka": {"bootstrap_servers": f"127.0.0.1:{PORTS['kafka_port']}",
                  "topics": {k: f"b{run}.{k}" for k in ("raw", "enriched", "deadletter", "alerts", "privacy", "consent",
                                                         "influence")}},
        "elasticsearch": {"url": f"http://127.0.0.1:{PORTS['es_http_port']}", "mentions_index": f"b{run}-mentions",
                          "alerts_index": f"b{run}-alerts", "erasures_index": f"b{run}-erasures",
                          "consents_index": f"b{run}-consents", "consent_audit_index": f"b{run}-consent-audit",
                          "cases_index": f"b{run}-cases", "retention_days": 0},
        "pipeline": {"app_id": f"bench-{run}", "data_dir": str(STATE / f"faust-{run}")},
        "stack": {**PORTS, "state_dir": str(STATE / "stack")},
        "crm": {"routes": [
            {"name": "legal", "queue": "legal", "priority": "P2", "query": "Anwalt* OR lawyer*"},
            {"name": "complaints", "queue": "support", "priority": "P2", "sentiments": ["negative"],
             "first_response_sla_s": 3600}]},
        "inbox": {"port": port, "session_secret": "bench-session-key-0123456789abcdef0123", "cookie_secure": False,
                  "audit_index": f"b{run}-inbox-audit",
                  "accounts": [{"username": "agent", "password_hash": hash_password(PASSWORD),
                                "teams": {"support": "agent", "legal": "agent"}}]},
    }


def load_cases(es: Elasticsearch, settings, n_support: int) -> None:
    routes = {r.queue: r for r in settings.crm.routes}
    now = datetime.now(timezone.utc)

    def docs():
        for n in range(n_support + n_support // 5):
            queue = "support" if n < n_support else "legal"
            m = EnrichedMention.model_validate({
                "platform": ("mastodon", "bluesky", "reddit", "x")[n % 4], "native_id": f"bench-{n}",
                "text": TEXTS[n % 4] + f" #{n}", "created_at": (now - timedelta(minutes=n % 20_000)).isoformat(),
                "url": f"https://social.example/@someone/{n}", "language": ("de", "de", "en", "de")[n % 4],
                "language_confidence": 0.95, "language_source": "model",
                "sentiment": {"label": "negative", "score": 0.9,
                              "probabilities": {"negative": 0.9, "neutral": 0.07, "positive": 0.03}},
                "topics": [{"label": "complaint", "score": 0.8}, {"label": ("delay", "refund", "app_website")[n % 3],
                                                                   "score": 0.6}],
                "brands": [{"brand": "Nordbahn"}], "author": {"pseudonym": f"psn_{n:032x}", "influence": float(n % 100)}})
            case = new_case(routes[queue], m)
            if n % 3 == 0:  # a third already claimed, as in a working queue
                case.state, case.assignee = "in_progress", "agent"
            yield {"_index": settings.elasticsearch.cases_index, "_id": case.case_id,
                   "_source": case.model_dump(mode="json")}

    ok, _ = bulk(es, docs(), chunk_size=2000, request_timeout=120)
    es.indices.refresh(index=settings.elasticsearch.cases_index)
    print(f"loaded {ok} cases", file=sys.stderr)


def spawn(args: list[str], config: Path, env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", "stimmung.cli", "--config", str(config), *args], env=env,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def sign_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            page = client.get("/login").text
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("the inbox did not start within 60 s") from None
            time.sleep(0.5)
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    if found is None:
        raise SystemExit("the sign-in page has no CSRF field: is this the Stimmung inbox?")
    token = found.group(1)
    answer = client.post("/login", data={"csrf": token, "username": "agent", "password": PASSWORD})
    assert answer.status_code == 303, answer.text[:500]
    return client


def page_times(client: httpx.Client, requests: int) -> dict[str, list[float]]:
    out = {}
    for view, params in VIEWS.items():
        for _ in range(10):
            client.get("/queue/support", params=params)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            answer = client.get("/queue/support", params=params)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200 and "case-row" in answer.text, answer.status_code
        shown = re.search(r'id="total">([^<]+)<', answer.text)
        if shown is None:
            raise SystemExit(f"the queue page has no total (status {answer.status_code})")
        total = shown.group(1)
        print(f"  {view}: {total}, p95 {percentile(times, 0.95) * 1000:.0f} ms", file=sys.stderr)
        out[view] = times
    return out


def import_to_visible(settings, client: httpx.Client, complaints: int, workdir: Path) -> list[float]:
    from stimmung.connectors.fileimport.job import run_import

    latencies = []
    for n in range(complaints + 1):  # the first one warms the models and is not counted
        token = f"Z{uuid.uuid4().hex[:8]}"
        path = workdir / f"complaint-{n}.jsonl"
        path.write_text(json.dumps({
            "id": token, "platform": "mastodon", "author": f"kunde{n}", "lang": "de",
            "created_at": datetime.now(timezone.utc).isoformat(),
            "text": f"{token} Nordbahn, seit Wochen keine Erstattung, der Kundenservice ignoriert mich. Unverschämt!"}) + "\n")
        started = time.monotonic()
        run_import(settings, path, None, None, {}, resume=False, rejects=None)
        deadline = started + (300 if n == 0 else 60)
        while token not in client.get("/queue/support", params={"sort": "newest"}).text:
            if time.monotonic() > deadline:
                raise SystemExit(f"complaint {token} not visible in the inbox after {deadline - started:.0f} s")
            time.sleep(0.1)
        seen = time.monotonic() - started
        print(f"  complaint {n}: visible after {seen:.2f} s{' (warm-up)' if n == 0 else ''}", file=sys.stderr)
        if n:
            latencies.append(seen)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--complaints", type=int, default=10)
    parser.add_argument("--inbox-port", type=int, default=49090)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:6]
    STATE.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{run}-", dir=STATE))
    config = workdir / "settings.yaml"
    config.write_text(yaml.safe_dump(settings_dict(run, args.inbox_port)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIMMUNG_")}
    env["STIMMUNG_PRIVACY__PSEUDONYM_KEY"] = "bench-key-0123456789abcdef"
    env["XDG_CONFIG_HOME"] = str(workdir / "no-default-config")
    os.environ.update({"STIMMUNG_PRIVACY__PSEUDONYM_KEY": env["STIMMUNG_PRIVACY__PSEUDONYM_KEY"],
                       "XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"]})
    settings = load_settings(config)
    LocalStack(settings.stack, report=lambda line: print(line, file=sys.stderr)).up()
    es = Elasticsearch(settings.elasticsearch.url, request_timeout=120)
    ensure_indices(es, settings.elasticsearch)
    load_cases(es, settings, args.cases)

    procs = [spawn(["inbox", "--host", "127.0.0.1"], config, env, workdir / "inbox.log")]
    try:
        client = sign_in(f"http://127.0.0.1:{args.inbox_port}")
        print("page times:", file=sys.stderr)
        pages = page_times(client, args.requests)
        procs += [spawn(["worker"], config, env, workdir / "worker.log"), spawn(["sink"], config, env, workdir / "sink.log"),
                  spawn(["cases", "run"], config, env, workdir / "cases.log")]
        print("import -> visible:", file=sys.stderr)
        latencies = import_to_visible(settings, client, args.complaints, workdir)
    finally:
        for proc in reversed(procs):
            stop(proc)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    print(f"\n## inbox.py — case inbox ({datetime.now():%Y-%m-%d}, commit {commit})\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; one local "
          f"Elasticsearch node (1 GB heap) and the inbox as one uvicorn process on the same machine.\n")
    print(f"Queue page of the support queue with {args.cases:,} open cases ({args.cases // 5:,} more in legal), "
          f"{args.requests} requests per view after 10 warm-up requests, whole HTTP round trip:\n")
    print("| view | p50 | p95 | p99 | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for view, times in pages.items():
        print(f"| {view} | {percentile(times, 0.5) * 1000:.0f} ms | {percentile(times, 0.95) * 1000:.0f} ms | "
              f"{percentile(times, 0.99) * 1000:.0f} ms | p95 ≤ 300 ms |")
    print(f"\nImport → visible in the inbox at the demo's defaults ({len(latencies)} complaints, models warm): "
          f"median {percentile(latencies, 0.5):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
          f"max {max(latencies):.2f} s (target ≤ 5 s).")


if __name__ == "__main__":
    main()
