"""The case inbox against the real Elasticsearch (and Kafka + the real worker, sink and case
manager where cases are routed): sign-in, team rights, actions with optimistic concurrency,
CSRF, bad input, CSV export, the lead view, live events, audit records."""

from __future__ import annotations

import csv
import io
import re
import threading
import time

import pytest
import yaml
from elasticsearch import Elasticsearch
from prometheus_client import REGISTRY

from stimmung.config import load_settings
from stimmung.kafka import ensure_topics
from stimmung.pipeline.crm.cases import CaseManager, CaseStore, new_case
from stimmung.pipeline.elastic.indices import ensure_indices
from stimmung.schemas.mention import EnrichedMention, utcnow

from .conftest import PSEUDONYM_KEY, wait_for
from .inbox_server import InboxServer, csrf_of, error_of, inbox_config, version_of
from .test_crm import ANNA, BOB, post, publish


@pytest.fixture
def inbox_settings(config, tmp_path, monkeypatch):
    monkeypatch.setenv("STIMMUNG_PRIVACY__PSEUDONYM_KEY", PSEUDONYM_KEY)
    config["brands"] = [{"name": "Nordbahn", "queries": ["Nordbahn"]}]
    inbox_config(config)
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path), path


@pytest.fixture
def es(inbox_settings):
    s, _ = inbox_settings
    client = Elasticsearch(s.elasticsearch.url)
    ensure_indices(client, s.elasticsearch)
    return client


@pytest.fixture
def inbox(inbox_settings, es):
    server = InboxServer(inbox_settings[0], es)
    yield server
    server.stop()


def seed_case(settings, es, n: str, text: str = "Nordbahn: wo bleibt meine Erstattung?", queue: str = "support"):
    """A case exactly as the case manager opens it (same rule, same document)."""
    rule = next(r for r in settings.crm.routes if r.queue == queue)
    m = EnrichedMention.model_validate({
        "platform": "mastodon", "native_id": n, "text": text, "created_at": utcnow().isoformat(), "language": "de",
        "language_confidence": 0.9, "language_source": "model",
        "sentiment": {"label": "negative", "score": 0.9, "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}},
        "topics": [{"label": "complaint", "score": 0.8}], "brands": [{"brand": "Nordbahn"}],
        "author": {"pseudonym": f"psn_{n}", "influence": 12.0}})
    case = new_case(rule, m)
    CaseStore(es, settings.elasticsearch.cases_index).put(case, create=True)
    return case


def stored(settings, es, case_id: str):
    return CaseStore(es, settings.elasticsearch.cases_index).get(case_id)


def audit_records(settings, es, **term) -> list[dict]:
    index = settings.inbox.audit_index
    es.indices.refresh(index=index)
    query = {"bool": {"filter": [{"term": {k: v}} for k, v in term.items()]}}
    return [h["_source"] for h in es.search(index=index, query=query, size=100, sort=[{"at": "asc"}])["hits"]["hits"]]


def test_a_routed_complaint_is_worked_in_the_inbox_and_only_its_team_sees_it(inbox_settings, es, inbox, roles):
    s, path = inbox_settings
    # the registry is process-wide: other tests' cases may have been observed already
    observed_before = REGISTRY.get_sample_value("stimmung_case_first_response_seconds_count",
                                                {"queue": "support", "priority": "P2"}) or 0
    roles.config_file.write_text(path.read_text())
    ensure_topics(s.kafka)
    roles.start("worker", "sink")
    manager = CaseManager(s, es)
    threading.Thread(target=manager.run, daemon=True).start()
    alice, leo, lena = inbox.signed_in("alice"), inbox.signed_in("leo"), inbox.signed_in("lena")
    time.sleep(1.0)
    published = time.monotonic()
    publish(s, post("i1", ANNA, "Nordbahn, ich warte seit drei Wochen auf meine Erstattung. Unverschämt!"),
            post("i2", BOB, "Danke Nordbahn, heute alles pünktlich"))

    def in_queue():
        page = alice.get("/queue/support").text
        return page if 'class="case-row"' in page else None

    page = wait_for(in_queue, timeout=180, interval=0.25, check=roles.check_alive, message="the complaint in the support queue")
    print(f"import to visible in the inbox: {time.monotonic() - published:.1f} s (models warm up on the first mention)")
    assert "Erstattung" in page and "pünktlich" not in page
    case_id = wait_for(lambda: CaseStore(es, s.elasticsearch.cases_index).find({"term": {"queue": "support"}}), 10)[0].case_id

    # the brand query language searches the cases' mentions (indexed by the real sink)
    wait_for(lambda: case_id in alice.get("/queue/support", params={"q": "Erstattung AND Nordbahn"}).text, 60,
             message="brand-query search finds the case")
    assert case_id not in alice.get("/queue/support", params={"q": "Katzenfutter"}).text

    # another team's agent sees neither the queue nor the case
    assert leo.get(f"/case/{case_id}").status_code == 404
    assert leo.get("/queue/support").status_code == 404
    assert case_id not in leo.get("/queue/all").text and case_id not in leo.get("/queue/legal").text
    assert case_id not in leo.get("/queue/all/export.csv", params={"state": "all"}).text

    # claim, note, reply, close
    detail = alice.get(f"/case/{case_id}").text
    assert "Erstattung" in detail and "psn_" in detail
    for action, text in (("claim", None), ("note", "Kundin hat Ticket 4711"), ("reply", "Die Erstattung ist angestoßen."),
                         ("close", None)):
        page = alice.get(f"/case/{case_id}").text
        answer = alice.post(f"/case/{case_id}/{action}", data={"csrf": csrf_of(page), "version": version_of(page),
                                                               **({"text": text} if text else {})})
        assert answer.status_code == 303, (action, answer.status_code, error_of(answer.text))
    case, _, _ = stored(s, es, case_id)
    assert case.state == "done" and case.assignee == "alice"
    assert [h.action for h in case.history] == ["claimed", "noted", "replied", "closed"]
    assert case.notes[0].text == "Kundin hat Ticket 4711" and case.replies[0].text == "Die Erstattung ist angestoßen."
    assert 0 < case.first_response_s <= case.resolution_s
    assert [r["action"] for r in audit_records(s, es, case_id=case_id, outcome="ok")] == ["claim", "note", "reply", "close"]

    # the response time reaches Prometheus (the case manager) and the lead view
    wait_for(lambda: REGISTRY.get_sample_value("stimmung_case_first_response_seconds_count",
                                               {"queue": "support", "priority": "P2"}) == observed_before + 1, 30,
             message="first-response time in Prometheus")
    lead = lena.get("/lead")
    assert lead.status_code == 200 and "First response time, median" in lead.text and lead.text.count("<svg") >= 3
    assert alice.get("/lead").status_code == 403
    manager.stop()


def test_two_agents_claiming_at_once_one_wins_and_the_other_is_told(inbox_settings, es, inbox):
    s, _ = inbox_settings
    case = seed_case(s, es, "race1")
    alice, bob = inbox.signed_in("alice"), inbox.signed_in("bob")
    pages = {name: client.get(f"/case/{case.case_id}").text for name, client in (("alice", alice), ("bob", bob))}
    assert version_of(pages["alice"]) == version_of(pages["bob"])
    answers: dict[str, object] = {}
    start = threading.Barrier(2)

    def claim(name, client):
        start.wait()
        answers[name] = client.post(f"/case/{case.case_id}/claim",
                                    data={"csrf": csrf_of(pages[name]), "version": version_of(pages[name])})

    threads = [threading.Thread(target=claim, args=(n, c)) for n, c in (("alice", alice), ("bob", bob))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers.values())
    assert codes == [303, 409], codes
    winner = next(n for n, a in answers.items() if a.status_code == 303)
    loser = next(n for n, a in answers.items() if a.status_code == 409)
    assert f"{winner} claimed it" in error_of(answers[loser].text)
    current, _, _ = stored(s, es, case.case_id)
    assert current.assignee == winner and [h.action for h in current.history] == ["claimed"]
    assert audit_records(s, es, case_id=case.case_id, outcome="conflict")[0]["who"] == loser


def test_a_case_manager_change_in_between_does_not_block_the_agent(inbox_settings, es, inbox):
    s, _ = inbox_settings
    case = seed_case(s, es, "join1")
    alice = inbox.signed_in("alice")
    page = alice.get(f"/case/{case.case_id}").text

    def join(c):  # what the case manager does when the author posts again
        c.mention_ids.append("mastodon:join2")
        c.mention_count = len(c.mention_ids)
    CaseStore(es, s.elasticsearch.cases_index).update(case.case_id, join)
    answer = alice.post(f"/case/{case.case_id}/reply", data={"csrf": csrf_of(page), "version": version_of(page),
                                                            "text": "Wir kümmern uns."})
    assert answer.status_code == 303
    current, _, _ = stored(s, es, case.case_id)
    assert current.mention_count == 2 and current.replies[0].text == "Wir kümmern uns."


def test_bad_input_gets_a_clear_message_keeps_the_text_and_changes_nothing(inbox_settings, es, inbox):
    s, _ = inbox_settings
    case = seed_case(s, es, "bad1")
    alice = inbox.signed_in("alice")
    page = alice.get(f"/case/{case.case_id}").text
    _, seq_before, _ = stored(s, es, case.case_id)

    empty = alice.post(f"/case/{case.case_id}/reply", data={"csrf": csrf_of(page), "version": version_of(page), "text": "  "})
    assert empty.status_code == 422 and error_of(empty.text) == "the reply is empty"
    forged = alice.post(f"/case/{case.case_id}/note", data={"csrf": "forged", "version": version_of(page),
                                                           "text": "Notiz, die bleiben soll"})
    assert forged.status_code == 403 and "Notiz, die bleiben soll</textarea>" in forged.text
    too_long = alice.post(f"/case/{case.case_id}/note", data={"csrf": csrf_of(page), "version": version_of(page),
                                                             "text": "x" * 5001})
    assert too_long.status_code == 422 and "at most 5000" in error_of(too_long.text)
    nobody = alice.post(f"/case/{case.case_id}/assign", data={"csrf": csrf_of(page), "version": version_of(page),
                                                             "colleague": "leo"})
    assert nobody.status_code == 422 and "not in the support team" in error_of(nobody.text)
    no_version = alice.post(f"/case/{case.case_id}/claim", data={"csrf": csrf_of(page)})
    assert no_version.status_code == 422
    assert alice.get("/queue/support", params={"q": 'Nordbahn AND "unclosed'}).status_code == 422
    assert alice.get("/queue/support", params={"priority": "P9"}).status_code == 422
    assert alice.post(f"/case/{case.case_id}/delete", data={"csrf": csrf_of(page)}).status_code == 404
    current, seq_after, _ = stored(s, es, case.case_id)
    assert seq_after == seq_before and current.history == [] and current.notes == []


def test_sign_in_lockout_audit_and_session_cookie(inbox_settings, es, inbox):
    import httpx

    s, _ = inbox_settings
    secure = InboxServer(s.model_copy(update={"inbox": s.inbox.model_copy(update={"cookie_secure": True})}), es)
    try:
        login = httpx.get(secure.url + "/login")
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "; secure" in cookie
        assert "default-src 'self'" in login.headers["content-security-policy"]
    finally:
        secure.stop()
    client = httpx.Client(base_url=inbox.url)
    assert client.get("/queue/support").status_code == 303  # not signed in: to the sign-in page
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"csrf": "x", "username": "alice", "password": "y"}).status_code == 400
    for _ in range(5):
        assert client.post("/login", data={"csrf": token, "username": "alice", "password": "wrong"}).status_code == 401
    locked = client.post("/login", data={"csrf": token, "username": "alice", "password": "correct horse battery staple"})
    assert locked.status_code == 429
    assert len(audit_records(s, es, who="alice", action="sign-in", outcome="failed")) == 5
    assert client.post("/login", data={"csrf": token, "username": "nobody", "password": "x" * 12}).status_code == 401
    bob = inbox.signed_in("bob")
    assert "Bob Agent" in bob.get("/queue/support").text
    out = bob.post("/logout", data={"csrf": csrf_of(bob.get("/queue/support").text)})
    assert out.status_code == 303 and bob.get("/queue/support").status_code == 303


def test_csv_export_is_the_queue_and_safe_to_open_in_a_spreadsheet(inbox_settings, es, inbox):
    s, _ = inbox_settings
    plain = seed_case(s, es, "csv1")
    formula = seed_case(s, es, "csv2", text="=HYPERLINK(\"http://x.example\";\"Nordbahn Erstattung\")")
    seed_case(s, es, "csv3", queue="support")
    alice = inbox.signed_in("alice")
    answer = alice.get("/queue/support/export.csv", params={"state": "all"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 3 and {r["case_id"] for r in rows} >= {plain.case_id, formula.case_id}
    cell = next(r for r in rows if r["case_id"] == formula.case_id)["title"]
    assert cell.startswith("'=HYPERLINK")
    assert audit_records(s, es, action="export")[0]["who"] == "alice"


def test_live_events_announce_a_new_case_to_its_team_only(inbox_settings, es, inbox):
    s, _ = inbox_settings
    alice, leo = inbox.signed_in("alice"), inbox.signed_in("leo")
    got: dict[str, list[str]] = {"alice": [], "leo": []}

    def listen(name, client):
        with client.stream("GET", "/events", timeout=10) as stream:
            started = time.monotonic()
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    got[name].append(line)
                if time.monotonic() - started > 4:
                    return

    threads = [threading.Thread(target=listen, args=(n, c), daemon=True) for n, c in (("alice", alice), ("leo", leo))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    opened = time.monotonic()
    case = seed_case(s, es, "live1")
    wait_for(lambda: any(case.case_id in line for line in got["alice"]), 5, 0.05, message="the live event")
    assert time.monotonic() - opened < 3
    for t in threads:
        t.join(10)
    assert not any(case.case_id in line for line in got["leo"])


def test_elasticsearch_away_the_inbox_says_so_and_keeps_the_text(inbox_settings, es, inbox):
    s, _ = inbox_settings
    case = seed_case(s, es, "down1")
    alice = inbox.signed_in("alice")
    page = alice.get(f"/case/{case.case_id}").text
    # the same app, pointed at an address where no Elasticsearch answers
    away = Elasticsearch("http://127.0.0.1:9", request_timeout=2, max_retries=0)
    inbox.app.state.inbox.store.client = away
    answer = alice.post(f"/case/{case.case_id}/reply", data={"csrf": csrf_of(page), "version": version_of(page),
                                                            "text": "Bitte nicht verlieren"})
    assert answer.status_code == 503 and "Elasticsearch does not answer" in answer.text
    assert "Bitte nicht verlieren</textarea>" in answer.text
    assert alice.get("/queue/support").status_code == 503
    assert alice.get("/readyz").status_code == 503
    inbox.app.state.inbox.store.client = es
    assert alice.get("/readyz").status_code == 200
    assert stored(s, es, case.case_id)[0].replies == []


def test_a_stale_page_after_a_colleague_acted_is_refused_with_what_happened(inbox_settings, es, inbox):
    s, _ = inbox_settings
    case = seed_case(s, es, "stale1")
    alice, bob = inbox.signed_in("alice"), inbox.signed_in("bob")
    bob_page = bob.get(f"/case/{case.case_id}").text
    alice_page = alice.get(f"/case/{case.case_id}").text
    closed = alice.post(f"/case/{case.case_id}/close", data={"csrf": csrf_of(alice_page), "version": version_of(alice_page)})
    assert closed.status_code == 303
    late = bob.post(f"/case/{case.case_id}/reply", data={"csrf": csrf_of(bob_page), "version": version_of(bob_page),
                                                        "text": "Antwort von Bob"})
    assert late.status_code == 409 and "alice closed it" in error_of(late.text)
    assert "Antwort von Bob</textarea>" in late.text  # the reply form is gone (closed): the text is shown apart
    reopen_page = bob.get(f"/case/{case.case_id}").text
    reopened = bob.post(f"/case/{case.case_id}/reopen", data={"csrf": csrf_of(reopen_page),
                                                             "version": version_of(reopen_page), "text": "Kunde meldet sich erneut"})
    assert reopened.status_code == 303
    current, _, _ = stored(s, es, case.case_id)
    assert current.state == "in_progress" and current.resolved_at is None and current.replies == []
    assert [h.action for h in current.history] == ["closed", "reopened"]


def test_bulk_claim_assign_and_close_with_stale_rows_reported_not_changed(inbox_settings, es, inbox):
    s, _ = inbox_settings
    cases = [seed_case(s, es, f"bulk{n}", f"Nordbahn Erstattung Fall {n}") for n in range(3)]
    lena = inbox.signed_in("lena")
    es.indices.refresh(index=s.elasticsearch.cases_index)
    page = lena.get("/queue/support").text
    assert '<option>bob</option>' in page, "the colleagues of the queue are offered"
    versions = {c.case_id: version_of_row(page, c.case_id) for c in cases}
    picked = [f"{c.case_id}|{versions[c.case_id]}" for c in cases[:2]]

    # no colleague chosen: refused, nothing changed
    refused = lena.post("/bulk", data={"csrf": csrf_of(page), "back": "/queue/support", "action": "assign",
                                       "cases": picked}, follow_redirects=True)
    assert "Choose the colleague" in refused.text
    assert all(stored(s, es, c.case_id)[0].assignee is None for c in cases)

    done = lena.post("/bulk", data={"csrf": csrf_of(page), "back": "/queue/support", "action": "assign",
                                    "colleague": "bob", "cases": picked}, follow_redirects=True)
    assert "2 case(s) assigned to bob." in done.text
    for c in cases[:2]:
        current, _, _ = stored(s, es, c.case_id)
        assert current.assignee == "bob" and current.state == "in_progress"
        assert [(h.by, h.action, h.detail) for h in current.history] == [("lena", "assigned", "to bob")]
    assert stored(s, es, cases[2].case_id)[0].assignee is None, "an unticked case is left alone"
    assert {r["case_id"] for r in audit_records(s, es, action="assign", outcome="ok")} >= {c.case_id for c in cases[:2]}

    # the page lena still has is stale for the two assigned cases: closing them from it is refused
    # by name, the third (unchanged) closes
    stale = picked + [f"{cases[2].case_id}|{versions[cases[2].case_id]}"]
    closed = lena.post("/bulk", data={"csrf": csrf_of(page), "back": "/queue/support", "action": "close",
                                      "cases": stale}, follow_redirects=True)
    assert "1 case(s) closed." in closed.text and "Not changed" in closed.text and "lena assigned it" in closed.text
    assert stored(s, es, cases[2].case_id)[0].state == "done"
    assert all(stored(s, es, c.case_id)[0].state == "in_progress" for c in cases[:2])

    # a colleague outside the team is refused per case
    fresh = lena.get("/queue/support").text
    other = lena.post("/bulk", data={"csrf": csrf_of(fresh), "back": "/queue/support", "action": "assign",
                                     "colleague": "leo", "cases": [f"{cases[0].case_id}|{version_of_row(fresh, cases[0].case_id)}"]},
                      follow_redirects=True)
    assert "0 case(s) assigned to leo." in other.text and "leo is not in the support team" in other.text


def version_of_row(html: str, case_id: str) -> str:
    found = re.search(rf'value="{re.escape(case_id)}\|([^"]+)"', html)
    assert found, f"no row for {case_id}"
    return found.group(1)
