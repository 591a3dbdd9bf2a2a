"""Social CRM against real Kafka and Elasticsearch with the real worker and sink: consent links
and unlinks mentions, the consent API refuses unauthenticated calls, erasure takes the consent
along; no handle or contact id reaches Elasticsearch without consent."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone

from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.pipeline.consent import ConsentService
from stimmung.pipeline.consent_api import make_consent_app
from stimmung.pipeline.index import ensure_indices
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
    return RawMention(platform="mastodon", native_id=n, text=text, url=f"https://social.example/p/{n}",
                      created_at=datetime.now(timezone.utc), language_hint="de",
                      author={"handle": handle, "display_name": "Anna A.", "follower_count": followers},
                      engagement={"likes": likes, "shares": 1, "replies": 0})


def docs(es: Elasticsearch, index: str) -> dict[str, dict]:
    es.indices.refresh(index=index, ignore_unavailable=True)
    hits = es.search(index=index, size=1000, query={"match_all": {}}, ignore_unavailable=True)["hits"]["hits"]
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

    # after the withdrawal a new post by Anna stays a pseudonym
    publish(settings, post("a3", ANNA, "Nordbahn, wieder Ärger mit der App"))
    later = wait_for(lambda: (d := docs(es, mentions_index)).get("a3"), timeout=120, check=roles.check_alive,
                     message="Anna's new post indexed")
    assert not later["author"].get("contact_id") and later["author"]["pseudonym"] == granted.pseudonym

    # audited, pseudonymous everywhere: no handle in any index
    audit = list(docs(es, settings.elasticsearch.consent_audit_index).values())
    assert sorted(a["action"] for a in audit) == ["grant", "withdraw"]
    assert next(a for a in audit if a["action"] == "withdraw")["unlinked_documents"] >= 2
    everything = json.dumps([docs(es, i) for i in (mentions_index, settings.elasticsearch.consents_index,
                                                    settings.elasticsearch.consent_audit_index)])
    assert "anna" not in everything.lower() and "bob@" not in everything.lower()

    # consent again, then erasure: mentions, consent state and links go; the erasure is audited
    service.grant("mastodon", ANNA, "C-1001", ["service", "profiling"], "cli:test")
    assert service.erase(granted.pseudonym, "mastodon", "cli:test") >= 0
    assert service.current(granted.pseudonym) is None
    audit = [a["action"] for a in docs(es, settings.elasticsearch.consent_audit_index).values()]
    assert audit.count("erase") == 1
