"""Streaming connectors against loopback servers speaking the platforms' streaming wire formats:
X's filtered stream (newline-delimited JSON with keep-alives and in-band disconnects), Mastodon's
streaming API (server-sent events) with REST catch-up, and Jetstream's dictionary-zstd frames."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from stimmung.connectors.checkpoints import CheckpointStore
from stimmung.connectors.http import PoliteClient, SourceError
from stimmung.kafka import ensure_topics
from stimmung.schemas import DeadLetter

from .test_connectors import published, runner_for
from .test_end_to_end import read_topic


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # started just above
    return runner, f"http://127.0.0.1:{port}"


# ---- X API v2 filtered stream ------------------------------------------------------------------------

def x_post(n: int) -> dict:
    when = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc) + timedelta(seconds=n)
    return {"data": {"id": str(1860000000000000000 + n), "text": f"Nordbahn schon wieder zu spät #{n}",
                     "created_at": when.isoformat().replace("+00:00", ".000Z"), "author_id": str(100 + n % 3),
                     "lang": "de", "conversation_id": str(1860000000000000000 + n),
                     "public_metrics": {"retweet_count": 2, "quote_count": 1, "reply_count": 3, "like_count": 7,
                                        "impression_count": 250}},
            "includes": {"users": [{"id": str(100 + n % 3), "username": f"pendler{n % 3}", "name": "Pendler",
                                    "public_metrics": {"followers_count": 1200}}]},
            "matching_rules": [{"id": "r1", "tag": "stimmung:Nordbahn"}]}


def test_x_filtered_stream_rules_rate_limit_disconnects_malformed_and_backfill(settings, tmp_path):
    from stimmung.connectors.x import XStreamSource
    from stimmung.connectors.x.client import XStreamClient

    ensure_topics(settings.kafka)
    rules = [{"id": "1", "value": "from:someone", "tag": "theirs"},           # another team's rule: untouched
             {"id": "2", "value": '"Altmarke" -is:retweet', "tag": "stimmung:Altmarke"}]  # ours, no longer wanted
    changes, streams = [], []

    async def get_rules(request):
        if request.headers.get("Authorization") != "Bearer tok":
            return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        return web.json_response({"data": rules, "meta": {"result_count": len(rules)}})

    async def post_rules(request):
        body = await request.json()
        changes.append(body)
        if "delete" in body:
            rules[:] = [r for r in rules if r["id"] not in body["delete"]["ids"]]
        for n, r in enumerate(body.get("add", [])):
            rules.append({"id": f"new{n}", **r})
        return web.json_response({"meta": {"summary": {"created": len(body.get("add", []))}}})

    async def stream(request):
        if request.headers.get("Authorization") != "Bearer tok":
            return web.json_response({"title": "Unauthorized"}, status=401)
        streams.append(dict(request.query))
        n = len(streams)
        if n == 1:  # too many connections: X says when the budget resets
            return web.json_response({"title": "ConnectionException"}, status=429,
                                     headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": "30"})
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        lines = {2: [x_post(i) for i in range(5)] + ["", "{not json", {"data": {"id": "9"}}],
                 3: [x_post(i) for i in range(3, 10)]}.get(n, [])
        for line in lines:
            await resp.write(((line if isinstance(line, str) else json.dumps(line)) + "\r\n").encode())
        if n == 2:  # an in-band operational disconnect
            await resp.write(json.dumps({"errors": [{"title": "operational-disconnect",
                                                     "disconnect_type": "UpstreamOperationalDisconnect"}]}).encode() + b"\r\n")
        elif n == 3:
            await asyncio.sleep(1.5)  # silence longer than stall_s: the client must notice and reconnect
        await resp.write_eof()
        return resp

    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    async def scenario():
        app = web.Application()
        app.add_routes([web.get("/2/tweets/search/stream/rules", get_rules), web.post("/2/tweets/search/stream/rules", post_rules),
                        web.get("/2/tweets/search/stream", stream)])
        server, base = await start(app)
        try:
            def source(reconnects, token="tok"):
                client = XStreamClient(PoliteClient("x", sleep=fake_sleep), token, base, stall_s=1.0)
                return XStreamSource(client, {"Nordbahn": '"Nordbahn" -is:retweet'}, backfill_minutes=3,
                                     max_reconnects=reconnects, sleep=fake_sleep)

            report = await runner_for(settings, source(3), tmp_path).run()
            restarted = await runner_for(settings, source(0), tmp_path).run()  # resumes: asks for backfill
            with pytest.raises(SourceError, match="answered 401"):
                await runner_for(settings, source(0, token="wrong"), tmp_path / "bad").run()
            return report, restarted
        finally:
            await server.cleanup()

    report, _ = asyncio.run(scenario())
    assert {"delete": {"ids": ["2"]}} in changes and {"add": [{"value": '"Nordbahn" -is:retweet', "tag": "stimmung:Nordbahn"}]} in changes
    assert [r["tag"] for r in rules] == ["theirs", "stimmung:Nordbahn"], "foreign rules untouched, ours synced"
    assert slept[0] == 30, "the 429 waited as long as x-rate-limit-reset said"
    assert "backfill_minutes" not in streams[1] and streams[2]["backfill_minutes"] == "1", "reconnect asked for the gap"
    assert streams[4].get("backfill_minutes") == "1", "a restart from the checkpoint asked for backfill too"
    assert streams[1]["expansions"] == "author_id" and "public_metrics" in streams[1]["tweet.fields"]
    assert report.published == 12 and report.rejected == 2  # posts 3 and 4 came twice (backfill overlap)
    mentions = published(settings, 12)
    assert {m.native_id for m in mentions} == {str(1860000000000000000 + i) for i in range(10)}
    m = next(m for m in mentions if m.native_id.endswith("01"))
    # The stable user id is the author's key; the username only its display (schemas/identity.py).
    assert m.author.handle == "101" and m.author.display_handle == "pendler1" and m.author.follower_count == 1200 and m.language_hint == "de"
    assert m.engagement.shares == 3 and m.engagement.views == 250 and m.url == "https://x.com/i/web/status/1860000000000000001"
    assert m.raw["matching_rules"] == ["Nordbahn"]
    letters = [DeadLetter.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.deadletter, 2)]
    assert sorted(letter.error_type for letter in letters) == ["invalid_line", "invalid_post"]


# ---- Mastodon streaming API ----------------------------------------------------------------------------

def test_mastodon_streaming_with_rest_catch_up_overlap_drop_and_stall(settings, tmp_path):
    from stimmung.connectors.mastodon import Instance, MastodonSource

    from .test_connectors import mastodon_instance, serve, status

    ensure_topics(settings.kafka)
    statuses = [status(n) for n in range(1, 61)]
    rest = mastodon_instance(statuses, {"remaining": 10_000})
    streaming = {}

    def respond(handler):  # the instance announces a separate streaming host, as mastodon.social does
        if handler.path == "/api/v2/instance":
            return 200, json.dumps({"configuration": {"urls": {"streaming": streaming["ws"]}}}).encode(), {"Content-Type": "application/json"}
        return rest(handler)

    connections = []

    def sse(event: str, data) -> bytes:
        return f"event: {event}\ndata: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()

    async def stream(request):
        connections.append((request.path, dict(request.query), request.headers.get("Authorization")))
        if request.headers.get("Authorization") != "Bearer tok3n":
            return web.json_response({"error": "Error: Missing access token"}, status=401)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b":)\n\n")
        n = len(connections)
        if n == 1:
            await asyncio.sleep(0.5)  # the client's REST catch-up runs meanwhile
            for s in (status(59), status(60), status(61), status(62)):  # 59, 60: the catch-up gave them already
                await resp.write(sse("update", s))
            await resp.write(b":thump\n\n")
            await resp.write(sse("status.update", status(61, "Nordbahn (bearbeitet)")))
            await resp.write(sse("update", "{truncated"))
            await resp.write(sse("delete", "1061"))
            statuses.extend([status(63), status(64)])  # posted while we are about to be cut off
            await asyncio.sleep(0.2)
            request.transport.abort()  # dropped, no end of stream
            return resp
        if n == 2:
            await asyncio.sleep(0.5)
            await resp.write(sse("update", status(64)))  # overlap with the catch-up after the drop
            await resp.write(sse("update", status(65)))
            await asyncio.sleep(2.0)  # then silence: longer than stall_s, no heartbeat
            return resp
        await resp.write(sse("update", status(66)))
        await resp.write_eof()
        return resp

    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    async def scenario():
        app = web.Application()
        app.add_routes([web.get("/api/v1/streaming/hashtag", stream)])
        server, base = await start(app)
        streaming["ws"] = base.replace("http://", "ws://")
        rest_server, rest_base = serve(respond)
        try:
            def source(reconnects):
                return MastodonSource([Instance(rest_base, ["tag:nordbahn"], "tok3n", stream=True)], PoliteClient("mastodon"),
                                      sleep=fake_sleep, max_reconnects=reconnects, stream_stall_s=1.0)

            store = CheckpointStore(tmp_path / "checkpoints")
            store.save(source(0).checkpoint_key, {f"{rest_base} tag:nordbahn": "1020"})
            first = await runner_for(settings, source(1), tmp_path).run()
            second = await runner_for(settings, source(0), tmp_path).run()
            return first, second, store.load(source(0).checkpoint_key), rest_base
        finally:
            await server.cleanup()
            rest_server.shutdown()

    first, second, checkpoint, rest_base = asyncio.run(scenario())
    assert [c[0] for c in connections] == ["/api/v1/streaming/hashtag"] * 3 and connections[0][1] == {"tag": "nordbahn"}
    assert first.rejected == 1 and first.published == 45 + 1  # 21..65 once, plus the edit of 61
    assert second.published == 1 and checkpoint == {f"{rest_base} tag:nordbahn": "1066"}
    mentions = published(settings, 47)
    assert {int(m.native_id.rsplit("/", 1)[1]) for m in mentions} == set(range(21, 67)), "nothing lost across drop and stall"
    assert [m.text for m in mentions if m.native_id.endswith("/statuses/61")] == ["Nordbahn #nordbahn Beitrag 61", "Nordbahn (bearbeitet)"]
    letters = [DeadLetter.model_validate_json(v) for v in read_topic(settings, settings.kafka.topics.deadletter, 1)]
    assert letters[0].reason.endswith("stream event is not JSON")


# ---- Jetstream with dictionary-compressed frames -----------------------------------------------------------

def test_bluesky_jetstream_zstd_dictionary_frames(settings, tmp_path):
    import zstandard
    from websockets.asyncio.server import serve as ws_serve

    from stimmung.config import load_settings
    from stimmung.connectors.registry import build

    from .test_connectors import jetstream_events

    ensure_topics(settings.kafka)
    events = [e for e in jetstream_events(40) if isinstance(e, dict) and e.get("operation") == "create"
              and e["collection"] == "app.bsky.feed.post"]
    frames = [json.dumps({"$type": "message", "payload": e}).encode() for e in events]
    # Jetstream ships a dictionary trained on real events; we train one on ours the same way.
    samples = [json.dumps({"$type": "message", "payload": {**e, "seq": e["seq"] + k, "rkey": f"x{k}"}}).encode()
               for k in range(20) for e in events]
    dictionary = zstandard.train_dictionary(8192, samples)
    (tmp_path / "zstd_dictionary").write_bytes(dictionary.as_bytes())
    compress = zstandard.ZstdCompressor(dict_data=dictionary, write_content_size=False)
    requests = []

    async def handler(ws):
        requests.append((ws.request.path, ws.request.headers.get("Socket-Encoding")))
        for f in frames:
            await ws.send(compress.compress(f))  # binary frames
        await ws.send(b"\x28\xb5\x2f\xfd garbage")  # a corrupt frame: dead-lettered, not fatal
        await ws.close()

    async def scenario():
        async with ws_serve(handler, "127.0.0.1", 0, subprotocols=["xrpc.v1.json"]) as srv:
            base = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
            s = load_settings(connectors={"bluesky": {"url": base, "zstd_dictionary": str(tmp_path / "zstd_dictionary")}})
            source = build("bluesky", s)
            source.max_reconnects = 0
            return await runner_for(settings, source, tmp_path).run()

    report = asyncio.run(scenario())
    assert "compress=true" in requests[0][0] and requests[0][1] == "zstd"
    assert report.published == len(frames) and report.rejected == 1
    assert {m.native_id for m in published(settings, len(frames))} == {
        f"at://{e['did']}/app.bsky.feed.post/{e['rkey']}" for e in events}
