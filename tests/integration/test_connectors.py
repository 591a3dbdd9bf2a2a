"""Connectors against loopback servers that speak the platforms' wire formats, publishing to the
real Kafka broker: pagination, 429 + Retry-After, a dropped connection, a malformed item, and a
restart mid-stream that resumes from the checkpoint without losing anything."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import REGISTRY

from stimmung.brandquery import BrandTagger
from stimmung.connectors.checkpoints import CheckpointStore
from stimmung.connectors.hackernews import HackerNewsSource
from stimmung.connectors.http import PoliteClient
from stimmung.connectors.mastodon import MastodonSource
from stimmung.connectors.rss import RSSSource
from stimmung.connectors.runner import SourceRunner
from stimmung.kafka import DeadLetters, ensure_topics, make_producer
from stimmung.schemas import DeadLetter, RawMention

from .test_end_to_end import read_topic


class Scripted(BaseHTTPRequestHandler):
    """Serves ``self.server.respond(handler)``; ``self.server.faults`` holds one-off failures
    keyed by request number: "429" (Retry-After: 1) or "drop" (headers, half a body, close)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        server = self.server
        with server.lock:
            server.requests.append((self.path, dict(self.headers)))
            n = len(server.requests)
        fault = server.faults.pop(n, None)
        if fault == "429":
            self._send(429, b'{"error":"slow down"}', {"Retry-After": "1", "Content-Type": "application/json"})
            return
        status, body, headers = server.respond(self)
        if fault == "drop":
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._send(status, body, headers)

    def do_POST(self):  # noqa: N802 - same script; the form body is read so the connection stays usable
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def _send(self, status, body, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(respond):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.respond, server.faults, server.requests, server.lock = respond, {}, [], threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def runner_for(settings, source, tmp_path, **kw) -> SourceRunner:
    producer = make_producer(settings.kafka)
    return SourceRunner(source, producer, settings.kafka.topics.raw, DeadLetters(producer, settings.kafka.topics.deadletter),
                        CheckpointStore(tmp_path / "checkpoints"), **kw)


def published(settings, expected: int) -> list[RawMention]:
    return [RawMention.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.raw, expected, timeout_s=30)]


# ---- RSS / Atom -------------------------------------------------------------------------------------

def rss_feed(entries: list[dict]) -> bytes:
    items = []
    for e in entries:
        if e.get("broken"):  # an item with nothing to read: no title, no description
            items.append(f"<item><guid>{e['guid']}</guid></item>")
            continue
        items.append(
            f"<item><guid>{e['guid']}</guid><title>{e['title']}</title><link>https://news.example/{e['guid']}</link>"
            f"<description><![CDATA[<p>{e['body']}</p>]]></description>"
            f"<pubDate>{format_datetime(e['when'])}</pubDate><author>redaktion@news.example (Redaktion)</author></item>")
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>News</title>'
            f'<link>https://news.example/</link><language>de</language>{"".join(items)}</channel></rss>').encode()


def atom_feed(entries: list[dict]) -> bytes:
    body = "".join(
        f"<entry><id>urn:x:{e['guid']}</id><title>{e['title']}</title><link href='https://blog.example/{e['guid']}'/>"
        f"<updated>{e['when'].isoformat()}</updated><summary type='html'>&lt;b&gt;{e['body']}&lt;/b&gt;</summary>"
        f"<author><name>Blogger</name></author></entry>" for e in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Blog</title>'
            f'<id>urn:x:blog</id><updated>2026-11-23T00:00:00Z</updated>{body}</feed>').encode()


def test_rss_and_atom_conditional_requests_faults_malformed_item_and_restart(settings, tmp_path):
    ensure_topics(settings.kafka)
    start = datetime(2026, 11, 20, 8, tzinfo=timezone.utc)
    rss_entries = [{"guid": f"r{n}", "title": f"Nordbahn Meldung {n}", "body": f"Verspätung &amp; Ärger {n}",
                    "when": start + timedelta(minutes=n)} for n in range(30)]
    rss_entries.insert(7, {"guid": "broken", "broken": True})
    atom_entries = [{"guid": f"a{n}", "title": f"Nordbahn blog {n}", "body": f"delays {n}",
                     "when": start + timedelta(minutes=n)} for n in range(5)]

    def respond(handler):
        path = urlsplit(handler.path).path
        body = rss_feed(rss_entries) if path == "/rss" else atom_feed(atom_entries)
        etag = f'"{path}-{len(rss_entries)}-{len(atom_entries)}"'
        if handler.headers.get("If-None-Match") == etag:
            return 304, b"", {"ETag": etag}
        content_type = "application/rss+xml" if path == "/rss" else "application/atom+xml"
        return 200, body, {"ETag": etag, "Content-Type": content_type}

    server, base = serve(respond)
    server.faults = {1: "429", 2: "drop"}  # the first feed request is throttled, the retry cut off
    feeds = [f"{base}/rss", f"{base}/atom"]
    waits_before = REGISTRY.get_sample_value("stimmung_connector_rate_limit_wait_seconds_total", {"connector": "rss"}) or 0

    # First run: stopped after the first checkpoint (a restart mid-stream).
    source = RSSSource(feeds, PoliteClient("rss"), interval_s=0.1)
    runner = runner_for(settings, source, tmp_path, checkpoint_every=10)
    runner.on_progress = lambda report: runner.stop()
    first = asyncio.run(runner.run())
    assert 0 < first.published < 35
    assert REGISTRY.get_sample_value("stimmung_connector_rate_limit_wait_seconds_total", {"connector": "rss"}) >= waits_before + 1

    # Second run resumes from the checkpoint and finishes the sweep.
    second = asyncio.run(runner_for(settings, RSSSource(feeds, PoliteClient("rss")), tmp_path).run())
    assert first.published + second.published == 35, "resumed where it stopped: nothing twice, nothing lost"
    assert first.rejected + second.rejected == 1
    mentions = published(settings, 35)
    assert sorted(m.native_id for m in mentions) == sorted([f"r{n}" for n in range(30)] + [f"urn:x:a{n}" for n in range(5)])
    r3 = next(m for m in mentions if m.native_id == "r3")
    assert r3.text == "Nordbahn Meldung 3\n\nVerspätung & Ärger 3" and r3.language_hint == "de"
    assert r3.created_at == start + timedelta(minutes=3) and r3.url == "https://news.example/r3"
    a1 = next(m for m in mentions if m.native_id == "urn:x:a1")
    assert a1.text == "Nordbahn blog 1\n\ndelays 1" and a1.author.handle == "Blogger"
    (letter,) = [DeadLetter.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.deadletter, 1)]
    assert letter.stage == "connector" and letter.error_type == "invalid_entry" and "neither title nor text" in letter.reason

    # Third sweep: both feeds answer 304 to the saved ETags; new entries alone are published.
    before = len(server.requests)
    third = asyncio.run(runner_for(settings, RSSSource(feeds, PoliteClient("rss")), tmp_path).run())
    assert third.published == 0
    assert all(h.get("If-None-Match") for _, h in server.requests[before:])
    rss_entries.append({"guid": "r-new", "title": "Nordbahn neu", "body": "neu", "when": start + timedelta(hours=2)})
    fourth = asyncio.run(runner_for(settings, RSSSource(feeds, PoliteClient("rss")), tmp_path).run())
    assert fourth.published == 1
    server.shutdown()


def test_brand_filter_drops_unrelated_feed_items_before_publishing(settings, tmp_path):
    ensure_topics(settings.kafka)
    when = datetime(2026, 11, 21, tzinfo=timezone.utc)
    entries = [{"guid": "x1", "title": "Nordbahn streicht Züge", "body": "a", "when": when},
               {"guid": "x2", "title": "Wetter in Hamburg", "body": "sonnig", "when": when}]
    server, base = serve(lambda h: (200, rss_feed(entries), {"Content-Type": "application/rss+xml"}))
    tagger = BrandTagger([("Nordbahn", ["Nordbahn"])])
    report = asyncio.run(runner_for(settings, RSSSource([f"{base}/f"], PoliteClient("rss")), tmp_path, brands=tagger).run())
    assert report.published == 1
    assert [m.native_id for m in published(settings, 1)] == ["x1"]
    server.shutdown()


# ---- Hacker News (Algolia) --------------------------------------------------------------------------

def algolia(hits: list[dict]):
    """``/search_by_date`` as Algolia serves it: numericFilters, hitsPerPage, page, and at most
    1,000 reachable hits however large nbHits is."""

    def respond(handler):
        q = parse_qs(urlsplit(handler.path).query)
        lo = hi = None
        for cond in q["numericFilters"][0].split(","):
            if cond.startswith("created_at_i>="):
                lo = int(cond.split(">=")[1])
            elif cond.startswith("created_at_i<"):
                hi = int(cond.split("<")[1])
        query = q["query"][0].lower()
        match = sorted((h for h in hits if lo <= h["created_at_i"] < hi and query in json.dumps(h).lower()),
                       key=lambda h: -h["created_at_i"])  # search_by_date: newest first
        per_page, page = int(q["hitsPerPage"][0]), int(q["page"][0])
        reachable = match[:1000]
        body = {"hits": reachable[page * per_page:(page + 1) * per_page], "nbHits": len(match), "page": page,
                "nbPages": -(-len(reachable) // per_page), "hitsPerPage": per_page, "query": query}
        return 200, json.dumps(body).encode(), {"Content-Type": "application/json"}
    return respond


def test_hacker_news_pages_narrows_windows_past_the_1000_hit_cap_and_resumes(settings, tmp_path):
    ensure_topics(settings.kafka)
    now = int(time.time())
    hits = [{"objectID": str(10_000 + n), "created_at_i": now - 3000 + n * 2, "author": f"user{n % 40}",
             "comment_text": f"<p>Nordbahn comment {n} &amp; more</p>", "parent_id": 9, "story_id": 9, "points": None,
             "_tags": ["comment"]} for n in range(1200)]
    hits.append({"objectID": "999", "created_at_i": now - 100, "title": "Nordbahn raises prices", "url": "https://x",
                 "author": "pg", "points": 50, "num_comments": 12, "_tags": ["story"]})
    hits.append({"objectID": "998", "created_at_i": now - 50, "author": "nobody", "title": None, "_tags": ["story"],
                 "comment_text": None, "story_text": None, "x": "Nordbahn"})  # nothing to read: dead letter
    server, base = serve(algolia(hits))
    server.faults = {3: "429", 5: "drop"}

    def source():
        return HackerNewsSource(["nordbahn"], PoliteClient("hackernews"), base_url=base, hits_per_page=100,
                                start_back_s=4000)

    runner = runner_for(settings, source(), tmp_path, checkpoint_every=300)
    runner.on_progress = lambda report: runner.stop() if report.published >= 300 else None
    first = asyncio.run(runner.run())
    second = asyncio.run(runner_for(settings, source(), tmp_path).run())
    assert first.published + second.published == 1201 and second.rejected + first.rejected == 1
    assert second.published < 1201, "the second run resumed from the checkpoint"
    mentions = published(settings, 1201)
    assert len({m.native_id for m in mentions}) == 1201
    story = next(m for m in mentions if m.native_id == "999")
    assert story.text == "Nordbahn raises prices" and story.engagement.likes == 50 and story.engagement.replies == 12
    assert story.url == "https://news.ycombinator.com/item?id=999" and story.author.handle == "pg"
    comment = next(m for m in mentions if m.native_id == "10001")
    assert comment.text == "Nordbahn comment 1 & more" and comment.reply_to_id == "9"
    # the cap forced narrower windows: some requests covered less than the whole range
    windows = {parse_qs(urlsplit(p).query)["numericFilters"][0] for p, _ in server.requests}
    assert len(windows) > 2
    # nothing new: a third sweep publishes nothing
    assert asyncio.run(runner_for(settings, source(), tmp_path).run()).published == 0
    server.shutdown()


def test_an_unreachable_source_fails_clearly_after_retries(settings, tmp_path):
    from stimmung.connectors.http import SourceUnavailable

    async def no_sleep(_):
        return None

    source = HackerNewsSource(["x"], PoliteClient("hackernews", max_attempts=3, sleep=no_sleep),
                              base_url="http://127.0.0.1:9")
    with pytest.raises(SourceUnavailable, match="failed 3 times"):
        asyncio.run(runner_for(settings, source, tmp_path).run())


# ---- Mastodon ----------------------------------------------------------------------------------------

def mastodon_instance(statuses: list[dict], rate_limit: dict):
    """``/api/v1/timelines/tag/<tag>`` as Mastodon serves it: newest first, ``min_id`` gives the
    statuses right after it, at most ``limit`` (40), a ``Link`` header with next/prev, and the
    ``X-RateLimit-*`` headers (reset as an ISO time)."""

    def respond(handler):
        parts = urlsplit(handler.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if handler.headers.get("Authorization") != "Bearer tok3n":
            return 401, b'{"error":"The access token is invalid"}', {"Content-Type": "application/json"}
        limit = min(int(q.get("limit", 20)), 40)
        ordered = sorted(statuses, key=lambda s: int(s["id"]))
        if "min_id" in q:
            page = [s for s in ordered if int(s["id"]) > int(q["min_id"])][:limit]
        else:
            page = ordered[-limit:]
        page = list(reversed(page))
        host = handler.headers["Host"]
        headers = {"Content-Type": "application/json"}
        if page:
            base = f"http://{host}{parts.path}"
            headers["Link"] = (f'<{base}?limit={limit}&max_id={page[-1]["id"]}>; rel="next", '
                               f'<{base}?limit={limit}&min_id={page[0]["id"]}>; rel="prev"')
        rate_limit["remaining"] -= 1
        headers["X-RateLimit-Limit"] = "300"
        headers["X-RateLimit-Remaining"] = str(max(0, rate_limit["remaining"]))
        headers["X-RateLimit-Reset"] = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
        return 200, json.dumps(page).encode(), headers
    return respond


def status(n: int, text: str | None = None, **kw) -> dict:
    return {"id": str(1000 + n), "uri": f"https://origin.example/users/u{n % 7}/statuses/{n}",
            "url": f"https://origin.example/@u{n % 7}/{n}", "created_at": f"2026-11-22T10:{n // 60:02d}:{n % 60:02d}.000Z",
            "content": f"<p>{text or f'Nordbahn #nordbahn Beitrag {n}'}</p>", "spoiler_text": "", "language": "de",
            "account": {"acct": f"u{n % 7}@origin.example", "display_name": f"U {n % 7}", "followers_count": n},
            "favourites_count": n % 5, "reblogs_count": 1, "replies_count": 0, "in_reply_to_id": None,
            "reblog": None, "tags": [{"name": "nordbahn"}], **kw}


def test_mastodon_reads_forward_with_min_id_and_link_paging_across_instances(settings, tmp_path):
    ensure_topics(settings.kafka)
    statuses = [status(n) for n in range(100)]
    statuses[10] = status(10, content=None)  # malformed: no content
    statuses[11] = status(11, reblog={"id": "5"})  # a boost: skipped
    limits = {"remaining": 1000}
    server, base = serve(mastodon_instance(statuses, limits))
    second_server, second = serve(mastodon_instance(statuses[:50], {"remaining": 1000}))  # federated copies

    def source(since_empty=False):
        return MastodonSource([(base, ["tag:nordbahn"], "tok3n"), (second, ["tag:nordbahn"], "tok3n")],
                              PoliteClient("mastodon"))

    # Start: a first run takes only the newest page; move the cursor back to read everything.
    store = CheckpointStore(tmp_path / "checkpoints")
    src = source()
    store.save(src.checkpoint_key, {f"{base} tag:nordbahn": "999", f"{second} tag:nordbahn": "999"})
    server.faults = {2: "429", 3: "drop"}
    limits["remaining"] = 3  # the budget runs out after a few pages: the client waits for the reset
    report = asyncio.run(runner_for(settings, src, tmp_path).run())
    assert report.rejected == 2  # the malformed status, once per instance that lists it
    assert report.published == 98 + 48  # both instances list the first 50 (minus the two)
    mentions = published(settings, report.published)
    ids = {m.native_id for m in mentions}
    assert ids == {s["uri"] for s in statuses if s["content"] and not s["reblog"]}
    # a status federated to two instances is still one mention: same uri, same id, same Kafka key
    assert len({m.mention_id for m in mentions}) == 98
    first = next(m for m in mentions if m.native_id.endswith("/statuses/3"))
    assert first.text == "Nordbahn #nordbahn Beitrag 3" and first.author.handle == "u3@origin.example"
    assert first.engagement.likes == 3 and first.language_hint == "de"
    pages = [p for p, _ in server.requests if "min_id" in p]
    assert len(pages) >= 3, "followed Link rel=prev page by page"
    assert (REGISTRY.get_sample_value("stimmung_connector_rate_limit_wait_seconds_total", {"connector": "mastodon"}) or 0) > 0

    # New statuses later: only they are read, from the saved min_id
    statuses.append(status(100, "Nordbahn neu"))
    again = asyncio.run(runner_for(settings, source(), tmp_path).run())
    assert again.published == 1

    # A wrong token is a clear error, not a retry loop
    bad = MastodonSource([(base, ["tag:nordbahn"], "wrong")], PoliteClient("mastodon"))
    from stimmung.connectors.http import SourceError

    with pytest.raises(SourceError, match="401"):
        asyncio.run(runner_for(settings, bad, tmp_path / "other").run())
    server.shutdown()
    second_server.shutdown()


# ---- Webhook receiver ---------------------------------------------------------------------------------

def test_webhook_receiver_verifies_signatures_and_publishes_before_answering(settings, tmp_path):
    import hashlib
    import hmac as hmac_

    import httpx
    from aiohttp.test_utils import TestServer

    from stimmung.connectors.webhook import WebhookReceiver, make_app
    from stimmung.kafka import DeadLetters

    ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    receiver = WebhookReceiver(producer, settings.kafka.topics.raw, DeadLetters(producer, settings.kafka.topics.deadletter),
                               meta_app_secret="app-secret", meta_verify_token="verify-me", generic_secret="shop-secret")

    def sign(secret, body):
        return "sha256=" + hmac_.new(secret.encode(), body, hashlib.sha256).hexdigest()

    meta_body = json.dumps({"object": "page", "entry": [{"id": "page1", "time": 1763900000, "changes": [
        {"field": "feed", "value": {"item": "comment", "verb": "add", "comment_id": "c1", "post_id": "p1",
                                    "message": "Nordbahn, wo bleibt meine Erstattung?", "created_time": 1763900000,
                                    "from": {"id": "4711", "name": "Mausi"}}},
        {"field": "feed", "value": {"item": "comment", "verb": "add", "comment_id": "c2"}},  # no text: dead letter
        {"field": "feed", "value": {"item": "comment", "verb": "remove", "comment_id": "c0"}},  # deletion: ignored
    ]}]}).encode()
    generic_body = json.dumps([{"platform": "shopreviews", "native_id": "r1", "text": "Lieferung kam zu spät",
                                "created_at": "2026-11-22T10:00:00Z", "author": {"handle": "kunde1"}}]).encode()

    async def scenario():
        server = TestServer(make_app(receiver, max_body_bytes=64 * 1024), host="127.0.0.1")
        await server.start_server()
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient() as http:
            challenge = await http.get(f"{base}/webhooks/meta", params={
                "hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"})
            wrong_token = await http.get(f"{base}/webhooks/meta", params={
                "hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"})
            unsigned = await http.post(f"{base}/webhooks/meta", content=meta_body)
            tampered = await http.post(f"{base}/webhooks/meta", content=meta_body + b" ",
                                       headers={"X-Hub-Signature-256": sign("app-secret", meta_body)})
            huge = await http.post(f"{base}/webhooks/generic", content=b"[" + b" " * 70_000 + b"]",
                                   headers={"X-Stimmung-Signature": sign("shop-secret", b"x")})
            meta = await http.post(f"{base}/webhooks/meta", content=meta_body,
                                   headers={"X-Hub-Signature-256": sign("app-secret", meta_body)})
            generic = await http.post(f"{base}/webhooks/generic", content=generic_body,
                                      headers={"X-Stimmung-Signature": sign("shop-secret", generic_body)})
            not_json = await http.post(f"{base}/webhooks/generic", content=b"{oops",
                                       headers={"X-Stimmung-Signature": sign("shop-secret", b"{oops")})
        await server.close()
        return challenge, wrong_token, unsigned, tampered, huge, meta, generic, not_json

    challenge, wrong_token, unsigned, tampered, huge, meta, generic, not_json = asyncio.run(scenario())
    assert (challenge.status_code, challenge.text) == (200, "1158201444")
    assert wrong_token.status_code == 403
    assert unsigned.status_code == 401 and tampered.status_code == 401
    assert huge.status_code == 413
    assert meta.status_code == 200 and meta.json() == {"published": 1, "rejected": 1}
    assert generic.status_code == 200 and generic.json() == {"published": 1, "rejected": 0}
    assert not_json.status_code == 400
    mentions = {m.native_id: m for m in published(settings, 2)}
    assert set(mentions) == {"c1", "r1"}
    assert mentions["c1"].platform == "facebook" and mentions["c1"].author.handle == "4711"
    assert mentions["c1"].thread_id == "p1" and mentions["c1"].text == "Nordbahn, wo bleibt meine Erstattung?"
    letters = [DeadLetter.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.deadletter, 2)]
    assert sorted(letter.source for letter in letters) == ["webhook-generic", "webhook-meta"]
    producer.close()


# ---- Reddit --------------------------------------------------------------------------------------------

def reddit_api(things: dict[str, list[dict]], state: dict):
    """``/api/v1/access_token`` (client credentials, basic auth) and Listings (newest first,
    100 per page, ``after`` fullnames) with Reddit's ``X-Ratelimit-*`` headers."""
    import base64

    def respond(handler):
        parts = urlsplit(handler.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/api/v1/access_token":
            ok = handler.headers.get("Authorization") == "Basic " + base64.b64encode(b"app:s3cret").decode()
            body = {"access_token": "tok", "token_type": "bearer", "expires_in": 3600} if ok else {"error": "invalid_grant"}
            return (200 if ok else 401), json.dumps(body).encode(), {"Content-Type": "application/json"}
        if handler.headers.get("Authorization") != "bearer tok":
            return 401, b'{"message": "Unauthorized"}', {"Content-Type": "application/json"}
        kind, items = ("t3", things["search"]) if parts.path == "/search" else ("t1", things["comments"])
        ordered = sorted(items, key=lambda i: -i["created_utc"])
        start = next((n + 1 for n, i in enumerate(ordered) if i["name"] == q.get("after")), 0)
        page = ordered[start:start + int(q["limit"])]
        after = page[-1]["name"] if start + len(page) < len(ordered) else None
        state["remaining"] -= 1
        headers = {"Content-Type": "application/json", "X-Ratelimit-Used": "1",
                   "X-Ratelimit-Remaining": str(max(0, state["remaining"])), "X-Ratelimit-Reset": "1"}
        body = {"kind": "Listing", "data": {"after": after, "children": [{"kind": kind, "data": i} for i in page]}}
        return 200, json.dumps(body).encode(), headers
    return respond


def test_reddit_oauth_listings_paging_and_resume(settings, tmp_path):
    from stimmung.connectors.reddit import RedditSource
    from stimmung.connectors.reddit.client import RedditClient

    ensure_topics(settings.kafka)
    base_ts = 1_763_800_000
    posts = [{"name": f"t3_p{n}", "created_utc": base_ts + n * 10, "title": f"Nordbahn thread {n}",
              "selftext": "details" if n % 2 else "", "author": f"redditor{n % 9}", "score": n, "num_comments": 2,
              "permalink": f"/r/bahn/comments/p{n}/x/", "subreddit": "bahn"} for n in range(230)]
    comments = [{"name": f"t1_c{n}", "created_utc": base_ts + n * 7, "body": f"Nordbahn comment {n}",
                 "author": "[deleted]" if n == 3 else f"u{n}", "score": -2, "parent_id": "t3_p1", "link_id": "t3_p1",
                 "permalink": f"/r/bahn/comments/p1/x/c{n}/", "subreddit": "bahn"} for n in range(120)]
    comments[5]["body"] = "[removed]"  # nothing to read: dead letter
    state = {"remaining": 1000}
    server, base = serve(reddit_api({"search": posts, "comments": comments}, state))
    server.faults = {3: "429", 4: "drop"}

    def source():
        http = PoliteClient("reddit")
        return RedditSource(RedditClient(http, "app", "s3cret", base, base), http,
                            searches=["nordbahn"], subreddits=["bahn"])

    runner = runner_for(settings, source(), tmp_path, checkpoint_every=100)
    runner.on_progress = lambda report: runner.stop() if report.published >= 150 else None
    first = asyncio.run(runner.run())
    second = asyncio.run(runner_for(settings, source(), tmp_path).run())
    assert first.published + second.published == 230 + 119
    assert first.rejected + second.rejected == 1
    mentions = {m.native_id: m for m in published(settings, 349)}
    assert len(mentions) == 349
    p7 = mentions["t3_p7"]
    assert p7.text == "Nordbahn thread 7\n\ndetails" and p7.url == "https://www.reddit.com/r/bahn/comments/p7/x/"
    assert mentions["t1_c3"].author is None and mentions["t1_c4"].engagement.likes == 0
    assert mentions["t1_c4"].reply_to_id == "t3_p1"
    posts.append({"name": "t3_new", "created_utc": base_ts + 5000, "title": "Nordbahn new", "author": "x",
                  "permalink": "/r/bahn/comments/new/x/"})
    assert asyncio.run(runner_for(settings, source(), tmp_path).run()).published == 1
    server.shutdown()


# ---- Bluesky Jetstream ---------------------------------------------------------------------------------

def jetstream_events(n_posts: int) -> list[dict | str]:
    """The v2 stream: posts, plus a delete, a like, an update, an account deletion, an info frame
    (and one frame that is not JSON)."""
    events: list[dict | str] = []
    seq = 5000
    for n in range(n_posts):
        seq += 1
        events.append({"$type": "network.bsky.jetstream.subscribeEvents#commit", "seq": seq,
                       "did": f"did:plc:user{n % 5}", "time": 1763800000000000 + seq, "operation": "create",
                       "collection": "app.bsky.feed.post", "rkey": f"3k{n:04d}",
                       "record": {"$type": "app.bsky.feed.post", "text": f"Nordbahn post {n} 🚆",
                                  "createdAt": "2026-11-22T10:00:00.000Z", "langs": ["de"],
                                  **({"reply": {"root": {"uri": "at://did:plc:x/app.bsky.feed.post/r"},
                                                "parent": {"uri": "at://did:plc:x/app.bsky.feed.post/p"}}} if n == 1 else {})}})
        if n == 10:
            seq += 1
            events.append({"$type": "network.bsky.jetstream.subscribeEvents#commit", "seq": seq, "did": "did:plc:user1",
                           "time": 0, "operation": "delete", "collection": "app.bsky.feed.post", "rkey": "3k0001"})
            seq += 1
            events.append({"$type": "network.bsky.jetstream.subscribeEvents#commit", "seq": seq, "did": "did:plc:user2",
                           "time": 0, "operation": "create", "collection": "app.bsky.feed.like", "rkey": "l1",
                           "record": {"subject": {}}})
            seq += 1
            events.append({"$type": "network.bsky.jetstream.subscribeEvents#account", "seq": seq, "did": "did:plc:gone",
                           "time": 1763800000000000, "active": False, "status": "deleted"})
            seq += 1
            events.append({"$type": "network.bsky.jetstream.subscribeEvents#info", "name": "OutdatedCursor",
                           "message": "cursor clamped"})
        if n == 20:
            seq += 1
            events.append("this is not json")
    return events


def test_bluesky_jetstream_v2_resume_errors_privacy_signals_and_legacy_v1(settings, tmp_path):
    from websockets.asyncio.server import serve as ws_serve

    from stimmung.connectors.bluesky import JetstreamSource
    from stimmung.connectors.bluesky.client import JetstreamClient

    ensure_topics(settings.kafka)
    events = jetstream_events(60)
    connections = []

    def process_request(connection, request):
        q = parse_qs(urlsplit(request.path).query)
        if "cursor" in q and int(q["cursor"][0]) < 5000:
            return connection.respond(400, json.dumps({"error": "CursorTooOld", "floor": 5000,
                                                       "message": "cursor is older than 5000"}))
        if request.path.startswith("/xrpc/") and q.get("collections") != ["app.bsky.feed.post"]:
            return connection.respond(400, '{"error":"BadRequest"}')
        return None

    async def handler(ws):
        q = parse_qs(urlsplit(ws.request.path).query)
        cursor = int(q["cursor"][0]) if "cursor" in q else None
        connections.append(cursor)
        sent = 0
        for e in events:
            if isinstance(e, dict) and cursor is not None and e.get("seq", 10**9) < cursor:
                continue  # inclusive resume: the event at `cursor` is sent again
            await ws.send(e if isinstance(e, str) else json.dumps({"$type": "message", "payload": e}))
            sent += 1
            if len(connections) == 1 and sent == 25:
                await ws.send(json.dumps({"$type": "error", "error": "ConsumerTooSlow", "message": "too slow"}))
                await ws.close()
                return
            if len(connections) == 2 and sent == 15:
                ws.transport.abort()  # a dropped connection, no close frame
                return
        await ws.close()

    async def scenario():
        async with ws_serve(handler, "127.0.0.1", 0, subprotocols=["xrpc.v1.json"], process_request=process_request) as srv:
            base = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}"

            def source(reconnects):
                return JetstreamSource(JetstreamClient(base), max_reconnects=reconnects)

            first = runner_for(settings, source(10), tmp_path, checkpoint_every=20, privacy_topic=settings.kafka.topics.privacy)
            first.on_progress = lambda report: first.stop() if report.published >= 40 else None
            r1 = await first.run()
            r2 = await runner_for(settings, source(2), tmp_path, privacy_topic=settings.kafka.topics.privacy).run()
            # a cursor older than the server keeps: restart at the floor it names
            store = CheckpointStore(tmp_path / "old")
            store.save(source(0).checkpoint_key, {"position": 12})
            old = SourceRunner(source(1), make_producer(settings.kafka), settings.kafka.topics.raw,
                               DeadLetters(make_producer(settings.kafka), settings.kafka.topics.deadletter), store)
            r3 = await old.run()
            return r1, r2, r3

    r1, r2, r3 = asyncio.run(scenario())
    assert connections[0] is None and connections[1] is not None, "reconnected after ConsumerTooSlow from its position"
    mentions = published(settings, 60 + 60)
    assert {m.native_id for m in mentions} == {f"at://did:plc:user{n % 5}/app.bsky.feed.post/3k{n:04d}" for n in range(60)}
    assert r1.published + r2.published == 60, "resume dropped the inclusive overlap: nothing twice, nothing lost"
    assert r3.published == 60 and 5000 in connections, "restarted at the floor"
    m1 = next(m for m in mentions if m.native_id.endswith("3k0001"))
    assert m1.author.handle == "did:plc:user1" and m1.language_hint == "de" and m1.text == "Nordbahn post 1 🚆"
    assert m1.reply_to_id == "at://did:plc:x/app.bsky.feed.post/p" and m1.url == "https://bsky.app/profile/did:plc:user1/post/3k0001"
    signals = [json.loads(v) for v in read_topic(settings, settings.kafka.topics.privacy, 1)]
    assert signals[0] == {"platform": "bluesky", "handle": "did:plc:gone", "status": "deleted", "at": "1763800000000000"}
    letters = [DeadLetter.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.deadletter, 1)]
    assert letters and letters[0].error_type == "invalid_frame"


def test_bluesky_legacy_v1_subscribe(settings, tmp_path):
    from websockets.asyncio.server import serve as ws_serve

    from stimmung.connectors.bluesky import JetstreamSource
    from stimmung.connectors.bluesky.client import JetstreamClient

    ensure_topics(settings.kafka)
    frames = [{"did": f"did:plc:v{n}", "time_us": 1763800000000000 + n, "kind": "commit",
               "commit": {"rev": "x", "operation": "create", "collection": "app.bsky.feed.post", "rkey": f"v{n}",
                          "record": {"text": f"legacy {n}", "createdAt": "2026-11-22T10:00:00Z"}}} for n in range(5)]
    paths = []

    async def handler(ws):
        paths.append(ws.request.path)
        for f in frames:
            await ws.send(json.dumps(f))
        await ws.close()

    async def scenario():
        async with ws_serve(handler, "127.0.0.1", 0) as srv:
            base = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
            source = JetstreamSource(JetstreamClient(base, legacy=True), max_reconnects=0)
            return await runner_for(settings, source, tmp_path).run()

    report = asyncio.run(scenario())
    assert report.published == 5
    assert paths[0].startswith("/subscribe?wantedCollections=app.bsky.feed.post")
    assert {m.text for m in published(settings, 5)} == {f"legacy {n}" for n in range(5)}
