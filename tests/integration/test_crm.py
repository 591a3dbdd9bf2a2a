"""Social CRM against real Kafka and Elasticsearch with the real worker and sink: consent links
and unlinks mentions, the consent API refuses unauthenticated calls, erasure takes the consent
along; no handle or contact id reaches Elasticsearch without consent."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone

from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import ApiError, Elasticsearch
from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.pipeline.crm.consent import ConsentService
from stimmung.pipeline.crm.consent_api import make_consent_app
from stimmung.pipeline.elastic.indices import ensure_indices
from stimmung.schemas import RawMention

from .conftest import wait_for

ANNA = "@anna@social.example"
BOB = "@bob@social.example"
TOKEN = "crm-api-token-0123456789"


def publish(settings, *mentions: RawMention) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for m in mentions:
        producer.send(settings.kafka.topics.raw, key=m.mention_id.encode(), value=m.model_dump_json().encode())
    producer.flush()
    producer.close()


def post(n: str, handle: str, text: str, followers: int = 100, likes: int = 0) -> RawMention:
    # Mastodon's web address names the author: https://instance/@user/id
    return RawMention(platform="mastodon", native_id=n, text=text, url=f"https://social.example/@{handle.split('@')[1]}/{n}",
                      created_at=datetime.now(timezone.utc), language_hint="de",
                      author={"handle": handle, "display_name": "Anna A.", "follower_count": followers},
                      engagement={"likes": likes, "shares": 1, "replies": 0})


def docs(es: Elasticsearch, index: str) -> dict[str, dict]:
    try:
        es.indices.refresh(index=index, ignore_unavailable=True)
        hits = es.search(index=index, size=1000, query={"match_all": {}}, ignore_unavailable=True)["hits"]["hits"]
    except ApiError as err:
        if err.status_code != 503:  # a brand-new index whose shard is not started yet
            raise
        return {}
    return {h["_source"].get("native_id", h["_id"]): h["_source"] for h in hits}


def test_consent_links_and_unlinks_mentions_and_erasure_takes_it_along(settings, roles):
    ensure_topics(settings.kafka)
    es = Elasticsearch(settings.elasticsearch.url)
    ensure_indices(es, settings.elasticsearch)
    service = ConsentService(settings, es)
    mentions_index = settings.elasticsearch.mentions_index
    roles.start("worker", "sink")

    # consent for Anna (service), none for Bob
    granted = service.grant("mastodon", ANNA, "C-1001", ["service"], "cli:test", evidence="form 42")
    assert granted.pseudonym.startswith("psn_") and "anna" not in granted.model_dump_json()
    time.sleep(1.0)  # the workers' view follows the consent topic
    publish(settings, post("a1", ANNA, "Nordbahn hat meine Erstattung immer noch nicht bezahlt", followers=5000, likes=30),
            post("a2", ANNA, "Nordbahn: Danke, jetzt hat es geklappt"),
            post("b1", BOB, "Nordbahn ist heute wieder zu spät", followers=3))
    indexed = wait_for(lambda: (d := docs(es, mentions_index)) and len(d) == 3 and d, timeout=180,
                       check=roles.check_alive, message="three mentions indexed")
    assert indexed["a1"]["author"]["contact_id"] == "C-1001" and indexed["a2"]["author"]["contact_id"] == "C-1001"
    assert "contact_id" not in indexed["b1"]["author"] or indexed["b1"]["author"]["contact_id"] is None
    assert indexed["a1"]["author"]["influence"] > indexed["b1"]["author"]["influence"] > 0
    # the post's address names the author: kept for Anna (consent), held back for Bob
    assert indexed["a1"]["url"] == "https://social.example/@anna/a1" and indexed["a1"]["author"]["linked_url"] is True
    assert "url" not in indexed["b1"] or indexed["b1"]["url"] is None

    # the consent API: no token, wrong token -> 401; the right one withdraws and unlinks
    async def api_calls():
        client = TestClient(TestServer(make_consent_app(service, TOKEN)))
        await client.start_server()
        try:
            anonymous = await client.post("/v1/consent/withdraw", json={"platform": "mastodon", "handle": ANNA})
            wrong = await client.get("/v1/consent", params={"platform": "mastodon", "handle": ANNA},
                                     headers={"Authorization": "Bearer nope"})
            headers = {"Authorization": f"Bearer {TOKEN}"}
            shown = await client.get("/v1/consent", params={"platform": "mastodon", "handle": ANNA}, headers=headers)
            bad = await client.post("/v1/consent/grant", json={"platform": "mastodon"}, headers=headers)
            withdrawn = await client.post("/v1/consent/withdraw", json={"platform": "mastodon", "handle": ANNA,
                                                                        "evidence": "e-mail 2026-11-24"}, headers=headers)
            return (anonymous.status, wrong.status, shown.status, await shown.json(), bad.status,
                    withdrawn.status, await withdrawn.json())
        finally:
            await client.close()

    anonymous, wrong, shown_status, shown, bad, withdrawn_status, withdrawn = asyncio.run(api_calls())
    assert anonymous == 401 and wrong == 401, "the consent endpoint rejects unauthenticated calls"
    assert shown_status == 200 and shown["contact_id"] == "C-1001" and shown["purposes"] == ["service"]
    assert bad == 400
    assert withdrawn_status == 200 and withdrawn["status"] == "withdrawn" and withdrawn["unlinked_documents"] >= 2
    after = docs(es, mentions_index)
    assert all(not d["author"].get("contact_id") for d in after.values()), "withdrawal unlinked every indexed mention"
    assert all(not d.get("url") for d in after.values()), "and the addresses that name the author went with it"

    # after the withdrawal a new post by Anna stays a pseudonym
    publish(settings, post("a3", ANNA, "Nordbahn, wieder Ärger mit der App"))
    later = wait_for(lambda: (_d := docs(es, mentions_index)).get("a3"), timeout=120, check=roles.check_alive,
                     message="Anna's new post indexed")
    assert not later["author"].get("contact_id") and later["author"]["pseudonym"] == granted.pseudonym
    assert not later.get("url")

    # audited, pseudonymous everywhere: no handle in any index
    audit = list(docs(es, settings.elasticsearch.consent_audit_index).values())
    assert sorted(a["action"] for a in audit) == ["grant", "withdraw"]
    assert next(a for a in audit if a["action"] == "withdraw")["unlinked_documents"] >= 2
    everything = json.dumps([docs(es, i) for i in (mentions_index, settings.elasticsearch.consents_index,
                                                    settings.elasticsearch.consent_audit_index)])
    assert "anna" not in everything.lower() and "bob@" not in everything.lower()

    # a grant links what is indexed already, as a withdrawal unlinks at once
    service.grant("mastodon", BOB, "C-2002", ["service"], "cli:test")
    assert docs(es, mentions_index)["b1"]["author"]["contact_id"] == "C-2002"

    # consent again, then erasure: mentions, consent state and links go; the erasure is audited
    service.grant("mastodon", ANNA, "C-1001", ["service", "profiling"], "cli:test")
    relinked = docs(es, mentions_index)
    assert [relinked[n]["author"].get("contact_id") for n in ("a1", "a2", "a3")] == ["C-1001"] * 3
    assert service.erase(granted.pseudonym, "mastodon", "cli:test") == 3, "the erasure unlinked Anna's three mentions"
    assert service.current(granted.pseudonym) is None
    audit = [a["action"] for a in docs(es, settings.elasticsearch.consent_audit_index).values()]
    assert audit.count("erase") == 1 and audit.count("grant") == 3


def test_a_complaint_becomes_a_case_for_the_right_team_and_staff_work_it(settings, config, roles, tmp_path):
    import hashlib
    import hmac
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import yaml
    from prometheus_client import REGISTRY

    from stimmung.config import load_settings
    from stimmung.pipeline.crm.cases import CaseManager, CaseStore

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            self.server.got.append((self.path, dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    hook.got = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{hook.server_address[1]}"
    config["brands"] = [{"name": "Nordbahn", "queries": ["Nordbahn"]}]
    config["crm"] = {
        "routes": [{"name": "vip", "queue": "pr", "priority": "P1", "brands": ["Nordbahn"], "min_influence": 90},
                   {"name": "complaints", "queue": "support", "priority": "P2", "brands": ["Nordbahn"],
                    "sentiments": ["negative"], "query": "Erstattung OR Verspätung* OR kaputt OR refund",
                    "first_response_sla_s": 2}],
        "ticket_webhook": {"url": f"{base}/tickets", "secret": "ticket-secret"}, "sla_check_s": 1}
    config["alerting"] = {"channels": [{"name": "oncall", "type": "webhook", "url": f"{base}/alerts"}]}
    roles.config_file.write_text(yaml.safe_dump(config))
    s = load_settings(roles.config_file)
    ensure_topics(s.kafka)
    es = Elasticsearch(s.elasticsearch.url)
    ensure_indices(es, s.elasticsearch)
    consents = ConsentService(s, es)
    consents.grant("mastodon", ANNA, "C-1001", ["service"], "cli:test")
    roles.start("worker", "sink")
    manager = CaseManager(s, es)
    runner = threading.Thread(target=manager.run, daemon=True)
    runner.start()
    time.sleep(1.0)
    publish(s, post("c1", ANNA, "Nordbahn, ich warte seit drei Wochen auf meine Erstattung. Unverschämt!"),
            post("c2", ANNA, "Nordbahn: Die Erstattung ist immer noch nicht da, das ist wirklich ärgerlich."),
            post("c3", BOB, "Nordbahn hat schon wieder Verspätung, das ist eine Katastrophe"),
            post("c4", BOB, "Danke Nordbahn, die Umleitung war heute super ausgeschildert"))
    store = CaseStore(es, s.elasticsearch.cases_index)

    def support_cases():
        found = store.find({"term": {"queue": "support"}}, size=10)
        return found if len(found) == 2 and sum(c.mention_count for c in found) == 3 else None

    found = wait_for(support_cases, timeout=180, check=roles.check_alive, message="two support cases, three mentions")
    anna = next(c for c in found if c.mention_count == 2)
    bob = next(c for c in found if c.mention_count == 1)
    assert anna.contact_id == "C-1001" and bob.contact_id is None, "linked only with consent"
    assert anna.priority == "P2" and anna.route == "complaints" and anna.state == "open" and anna.brand == "Nordbahn"
    assert "c4" not in json.dumps([c.model_dump(mode="json") for c in found]), "praise opened no case"

    # staff work Anna's case from the CLI
    def cli_run(*args):
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("STIMMUNG_")}
        env["STIMMUNG_PRIVACY__PSEUDONYM_KEY"] = "integration-test-key-0123456789"
        return subprocess.run([sys.executable, "-m", "stimmung.cli", "--config", str(roles.config_file), "cases", *args],
                              capture_output=True, text=True, env=env, timeout=120)

    def cli(*args):
        done = cli_run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    listed = cli("list", "--queue", "support", "--json")
    assert {c["case_id"] for c in listed} == {anna.case_id, bob.case_id}
    assert cli("claim", anna.case_id, "--as", "alice", "--json")["state"] == "in_progress"
    # a colleague's claim, reply or close does not silently take the case over; empty replies are refused
    for action in (("claim",), ("reply", "--text", "Ich mach das"), ("close",)):
        refused = cli_run(action[0], anna.case_id, "--as", "bob", *action[1:])
        assert refused.returncode == 1 and "assigned to alice" in refused.stderr and "--take-over" in refused.stderr
    empty = cli_run("reply", anna.case_id, "--as", "alice", "--text", "  ")
    assert empty.returncode == 1 and "needs text" in empty.stderr
    assert store.get(anna.case_id)[0].first_response_at is None and store.get(anna.case_id)[0].assignee == "alice"
    human = cli_run("reply", anna.case_id, "--as", "alice", "--text", "Wir haben die Erstattung angestoßen.")
    assert human.returncode == 0 and human.stdout.startswith(f"{anna.case_id}: in progress") and "first response after" in human.stdout
    replied = store.get(anna.case_id)[0].model_dump(mode="json")
    assert replied["first_response_at"] and replied["first_response_s"] > 0
    closed = cli("close", anna.case_id, "--as", "alice", "--text", "Erstattung ist raus.", "--json")
    assert closed["state"] == "done" and closed["resolution_s"] >= closed["first_response_s"]

    # the manager exports the response times once, and marks Bob's case that missed its 2 s SLA
    def exported():
        count = REGISTRY.get_sample_value("stimmung_case_first_response_seconds_count", {"queue": "support", "priority": "P2"})
        return count == 1 and REGISTRY.get_sample_value("stimmung_case_resolution_seconds_count",
                                                        {"queue": "support", "priority": "P2"}) == 1
    wait_for(exported, timeout=30, message="response times in Prometheus")
    sla = wait_for(lambda: [a for p, _, b in hook.got if p == "/alerts" and (a := json.loads(b))["case_id"] == bob.case_id],
                   timeout=30, message="SLA alert for Bob's case")
    assert sla[0]["kind"] == "sla" and "no first response" in sla[0]["detail"] and len(sla) == 1
    assert store.get(bob.case_id)[0].sla_breached == ["first_response"]

    # mirrored, signed, to the ticketing system
    tickets = [(h, b) for p, h, b in hook.got if p == "/tickets"]
    events = [json.loads(b)["event"] for _, b in tickets]
    assert events.count("opened") == 2 and {"claimed", "replied", "closed"} <= set(events)
    h, b = tickets[0]
    assert h["X-Stimmung-Signature"] == "sha256=" + hmac.new(b"ticket-secret", b, hashlib.sha256).hexdigest()

    # consent withdrawn: the case loses its link too; erasure removes Bob's case
    consents.withdraw("mastodon", ANNA, "cli:test")
    assert store.get(anna.case_id)[0].contact_id is None
    from stimmung.pipeline.erasure import erase

    erase(es, s.elasticsearch, {bob.author_pseudonym: "mastodon"}, sweep_after_s=0.5)
    assert not store.find({"term": {"case_id": bob.case_id}})

    # a replay of Bob's posts (and a new one) brings back no case, no document, no address
    time.sleep(s.elasticsearch.erasure_refresh_s + 0.5)
    publish(s, post("c3", BOB, "Nordbahn hat schon wieder Verspätung, das ist eine Katastrophe"),
            post("c5", BOB, "Nordbahn, meine Erstattung fehlt auch noch"),
            post("c6", ANNA, "Nordbahn, danke für die schnelle Hilfe heute"))
    wait_for(lambda: "c6" in docs(es, s.elasticsearch.mentions_index), timeout=120, check=roles.check_alive,
             message="the replay went through the pipeline")
    wait_for(lambda: (REGISTRY.get_sample_value("stimmung_case_mentions_skipped_total", {"reason": "erased"}) or 0) >= 2,
             timeout=60, message="the case manager skipped both of the erased author's posts")
    cases_now = [c.model_dump(mode="json") for c in store.find({"match_all": {}}, size=50)]
    assert all(c["author_pseudonym"] != bob.author_pseudonym for c in cases_now), "no case for the erased author"
    assert not {"c3", "c5"} & set(docs(es, s.elasticsearch.mentions_index)), "nor a document"
    assert "bob" not in json.dumps(cases_now).lower()
    manager.stop()
    runner.join(10)
    hook.shutdown()
