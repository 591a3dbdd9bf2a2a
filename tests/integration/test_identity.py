"""One identity per author on the real stack: data stored under two pseudonyms of one person by the
old code path is unified by `stimmung migrate-authors`, and erasure then finds all of it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from stimmung.kafka import ensure_topics
from stimmung.pipeline.crm.cases import CaseStore
from stimmung.pipeline.crm.consent import ConsentService
from stimmung.pipeline.elastic.indices import ensure_indices
from stimmung.pipeline.elastic.mentions import IndexLayout, to_document
from stimmung.pipeline.identity import read_whole_topic
from stimmung.schemas import RawMention
from stimmung.schemas.case import Case
from stimmung.schemas.consent import ConsentRecord
from stimmung.schemas.erasure import ErasureRecord
from stimmung.schemas.mention import EnrichedMention
from stimmung.schemas.pseudonym import Pseudonymizer

from .conftest import PSEUDONYM_KEY
from .test_crm import docs

HOME = "Gargron@https://mastodon.social"  # how the home instance's status was stored before
REMOTE = "Gargron@mastodon.social"        # the same account seen from another instance
X_ID, X_NAME = "2244994945", "XDevs"


def _raw(n: str, platform: str, author: dict) -> RawMention:
    return RawMention(platform=platform, native_id=n, text=f"Nordbahn {n}", created_at=datetime.now(timezone.utc),
                      author=author)


def _enriched(n: str, platform: str, pseudonym: str, contact_id: str | None = None) -> EnrichedMention:
    return EnrichedMention(platform=platform, native_id=n, text=f"Nordbahn {n}", created_at=datetime.now(timezone.utc),
                           author={"pseudonym": pseudonym, "contact_id": contact_id}, language="de",
                           language_confidence=0.9, language_source="model")


def _cli(roles, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "stimmung.cli", "--config", str(roles.config_file), *args],
                            env=roles.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def _by_native_id(es, index: str) -> dict[str, dict]:
    return docs(es, index)


def test_migrate_authors_unifies_two_pseudonyms_and_erasure_finds_everything(settings, roles):
    ensure_topics(settings.kafka)
    es = Elasticsearch(settings.elasticsearch.url)
    ensure_indices(es, settings.elasticsearch)
    p = Pseudonymizer(PSEUDONYM_KEY)
    es_settings, topics = settings.elasticsearch, settings.kafka.topics
    old, new = p.legacy_pseudonym("mastodon", HOME), p.pseudonym("mastodon", REMOTE)
    x_old, x_new = p.legacy_pseudonym("x", X_NAME), p.pseudonym("x", X_ID)
    assert old != new and new == p.legacy_pseudonym("mastodon", REMOTE) and p.pseudonym("mastodon", HOME) == new

    # The raw topic (retention: days) still holds the handles: both spellings, and an X post of the
    # new connector naming the username beside the id.
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for m in (_raw("g1", "mastodon", {"handle": HOME}), _raw("g2", "mastodon", {"handle": REMOTE}),
              _raw("x2", "x", {"handle": X_ID, "display_handle": X_NAME})):
        producer.send(topics.raw, key=m.mention_id.encode(), value=m.model_dump_json().encode())
    # Influence under both keys; the old one is merged into the new.
    producer.send(topics.influence, key=old.encode(), value=json.dumps({"n": 1, "ewma": 10.0, "engagement": 3.3, "followers": 40}).encode())
    producer.send(topics.influence, key=new.encode(), value=json.dumps({"n": 3, "ewma": 2.0, "engagement": 1.2, "followers": None}).encode())
    producer.flush()
    producer.close()

    # What the old code path indexed: Gargron's mentions under two pseudonyms, a consent and a case
    # under the old one; an X author erased under the username's pseudonym with a newer post under the id's.
    layout = IndexLayout.from_settings(es_settings)
    for m in (_enriched("g1", "mastodon", old, "C-7"), _enriched("g2", "mastodon", new), _enriched("g3", "mastodon", old, "C-7"),
              _enriched("x2", "x", x_new)):
        es.index(index=layout.index_for(m.created_at), id=m.mention_id, document=to_document(m), refresh="wait_for")
    consents = ConsentService(settings, es, sleep=lambda s: None)
    consents._publish(ConsentRecord(pseudonym=old, platform="mastodon", contact_id="C-7", purposes=["service"],
                                    status="granted", source="cli:test"))
    now = datetime.now(timezone.utc)
    CaseStore(es, es_settings.cases_index).put(Case(
        case_id="case-g1", queue="service", priority="P2", route="complaints", platform="mastodon", author_pseudonym=old,
        contact_id="C-7", title="Nordbahn g1", mention_ids=["g1"], mention_count=1,
        first_response_due=now + timedelta(hours=1), resolution_due=now + timedelta(days=1)))
    es.index(index=es_settings.erasures_index, id=x_old, refresh="wait_for",
             document=ErasureRecord(pseudonym=x_old, platform="x").model_dump(mode="json"))

    # Dry run: counts, no change.
    dry = json.loads(_cli(roles, "migrate-authors", "--dry-run").stdout)
    assert dry["dry_run"] and dry["mentions"] == 2 and dry["cases"] == 1 and dry["consents"] == 1
    assert dry["influence"] == 1 and dry["erasures_extended"] == 1
    assert {d["author"]["pseudonym"] for d in _by_native_id(es, es_settings.mentions_index).values()} == {old, new, x_new}

    done = _cli(roles, "migrate-authors")
    report = json.loads(done.stdout)
    assert (report["mentions"], report["cases"], report["consents"], report["influence"]) == (2, 1, 1, 1)
    assert report["erasures_extended"] == 1 and report["erased_documents"] == 1  # the X post under the id
    assert "consent records: 1 re-keyed" in done.stderr

    mentions = _by_native_id(es, es_settings.mentions_index)
    assert set(mentions) == {"g1", "g2", "g3"}, "the erased X author stays erased under the new key"
    assert {m["author"]["pseudonym"] for m in mentions.values()} == {new}
    assert all(m["author"].get("contact_id") == "C-7" for m in mentions.values()), "g2 is linked too now: one person"
    assert es.get(index=es_settings.erasures_index, id=x_new)["found"]
    record = consents.current(new)
    assert record is not None and record.contact_id == "C-7" and consents.current(old) is None
    audit = [a for a in docs(es, es_settings.consent_audit_index).values() if a["action"] == "migrate"]
    assert len(audit) == 1 and audit[0]["pseudonym"] == new and old in audit[0]["evidence"]
    (case,) = docs(es, es_settings.cases_index).values()
    assert case["author_pseudonym"] == new
    consent_topic = dict(read_whole_topic(settings.kafka, topics.consent))
    assert consent_topic[old.encode()] is None and json.loads(consent_topic[new.encode()])["pseudonym"] == new
    influence = dict(read_whole_topic(settings.kafka, topics.influence))
    assert influence[old.encode()] is None and json.loads(influence[new.encode()])["n"] == 4

    # Idempotent: nothing left under the old pseudonyms.
    again = json.loads(_cli(roles, "migrate-authors").stdout)
    assert (again["mentions"], again["cases"], again["consents"], again["influence"], again["erasures_extended"]) == (0, 0, 0, 0, 0)

    # Erasure by what an operator types finds all of Gargron: three mentions and the case.
    erased = json.loads(_cli(roles, "erase", "--author", "https://mastodon.social/@Gargron", "--platform", "mastodon",
                             "--yes").stdout)
    assert new in erased["pseudonyms"] and erased["deleted"] == 4
    assert docs(es, es_settings.mentions_index) == {} and docs(es, es_settings.cases_index) == {}
    assert consents.current(new) is None
