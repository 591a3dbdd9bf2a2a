"""`stimmung connect NAME --check` and the settings each connector declares beside it.

The checks talk to real local servers (HTTP, WebSocket) standing in for the platforms: they
answer like the platform for the request the check makes (a feed, a token, 401, 404), or are
not there at all. The webhook check against the real receiver is in tests/integration.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stimmung.cli import main
from stimmung.config import ConnectorSettings, load_settings
from stimmung.connectors.base import Source
from stimmung.connectors.registry import CONNECTORS, build, ready_after_ping
from stimmung.health import HEALTH

ROOT = Path(__file__).resolve().parents[2]

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Nordbahn News</title>
<item><title>Verspaetung</title><link>http://x/1</link><guid>1</guid></item></channel></rss>"""


class Platform(BaseHTTPRequestHandler):
    """Answers by path like the platforms do for the requests the checks make."""

    protocol_version = "HTTP/1.1"  # as the platforms speak (a WebSocket client refuses 1.0)

    def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        auth = self.headers.get("Authorization", "")
        path = self.path.split("?")[0]
        if path == "/feed.xml":
            self._answer(200, RSS, "application/rss+xml")
        elif path == "/page.html":
            self._answer(200, b"<html><body>not a feed</body></html>", "text/html")
        elif path == "/2/tweets/search/stream/rules":
            if auth == "Bearer good-token":
                self._answer(200, json.dumps({"data": [{"id": "1", "value": "nordbahn", "tag": "stimmung:x"}]}).encode())
            else:
                self._answer(401, json.dumps({"title": "Unauthorized", "status": 401}).encode())
        elif path == "/hn/search_by_date":
            self._answer(200, json.dumps({"hits": [], "nbHits": 3}).encode())
        elif path == "/api/v1/timelines/tag/nordbahn":
            self._answer(200, b"[]") if auth in ("", "Bearer masto-token") else self._answer(
                401, b'{"error": "The access token is invalid"}')
        elif path == "/r/nordbahn/comments" and auth == "bearer reddit-token":
            self._answer(200, json.dumps({"data": {"children": []}}).encode())
        else:
            self._answer(404, b'{"error": "not found"}')

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/api/v1/access_token":
            # Basic auth of client id "app" and secret "s3cret"
            if self.headers.get("Authorization") == "Basic YXBwOnMzY3JldA==":
                self._answer(200, json.dumps({"access_token": "reddit-token", "expires_in": 3600}).encode())
            else:
                self._answer(401, b'{"message": "Unauthorized", "error": 401}')
        else:
            self._answer(404, b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def platform():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Platform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def check(tmp_path, name: str, connectors: dict, **extra):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({"connectors": {"timeout_s": 5, **connectors}, **extra}))
    return CliRunner().invoke(main, ["--config", str(cfg), "--log-format", "text", "connect", name, "--check"])


def test_check_ok_names_what_answered(platform, tmp_path):
    rss = check(tmp_path, "rss", {"rss": {"feeds": [f"{platform}/feed.xml"]}})
    assert rss.exit_code == 0, rss.output
    assert rss.output.strip().splitlines()[-1] == "rss: ok: 1 feed(s) answered with a feed"
    x = check(tmp_path, "x", {"x": {"bearer_token": "good-token", "base_url": platform, "rules": {"nb": "nordbahn"}}})
    assert x.exit_code == 0 and "stream rules readable (1 rule(s) set)" in x.output, x.output
    hn = check(tmp_path, "hackernews", {"hackernews": {"base_url": f"{platform}/hn"}}, brands=[{"name": "Nordbahn", "queries": ["nordbahn"]}])
    assert hn.exit_code == 0 and "3 hits for 'Nordbahn'" in hn.output, hn.output  # the brand as default query
    masto = check(tmp_path, "mastodon", {"mastodon": {"instances": [{"url": platform, "timelines": ["tag:nordbahn"], "token": "masto-token"}]}})
    assert masto.exit_code == 0 and "1 instance(s) answered" in masto.output, masto.output
    reddit = check(tmp_path, "reddit", {"reddit": {"client_id": "app", "client_secret": "s3cret", "subreddits": ["nordbahn"],
                                                   "auth_url": platform, "api_url": platform}})
    assert reddit.exit_code == 0 and "token granted; 1 listing(s) answered" in reddit.output, reddit.output


def test_check_refused_credentials_exit_1_with_the_reason(platform, tmp_path):
    x = check(tmp_path, "x", {"x": {"bearer_token": "stale-token", "base_url": platform, "rules": {"nb": "nordbahn"}}})
    assert x.exit_code == 1, x.output
    assert "refused the credentials (HTTP 401)" in x.output and "/2/tweets/search/stream/rules" in x.output
    assert "stale-token" not in x.output  # the secret is never echoed
    reddit = check(tmp_path, "reddit", {"reddit": {"client_id": "app", "client_secret": "wrong", "searches": ["nordbahn"],
                                                   "auth_url": platform, "api_url": platform}})
    assert reddit.exit_code == 1 and "refused the credentials (HTTP 401)" in reddit.output, reddit.output
    masto = check(tmp_path, "mastodon", {"mastodon": {"instances": [{"url": platform, "timelines": ["tag:nordbahn"], "token": "old"}]}})
    assert masto.exit_code == 1 and "refused the credentials (HTTP 401)" in masto.output, masto.output


def test_check_wrong_url_exit_1_with_404(platform, tmp_path):
    hn = check(tmp_path, "hackernews", {"hackernews": {"queries": ["nordbahn"], "base_url": f"{platform}/hn/v0"}})
    assert hn.exit_code == 1 and "does not exist (HTTP 404)" in hn.output and "/hn/v0/search_by_date" in hn.output, hn.output
    # a second feed is wrong: the check names it, although a sweep would skip it
    rss = check(tmp_path, "rss", {"rss": {"feeds": [f"{platform}/feed.xml", f"{platform}/gone.xml"]}})
    assert rss.exit_code == 1 and f"{platform}/gone.xml does not exist (HTTP 404)" in rss.output, rss.output
    reddit = check(tmp_path, "reddit", {"reddit": {"client_id": "app", "client_secret": "s3cret", "subreddits": ["nordbahm"],
                                                   "auth_url": platform, "api_url": platform}})
    assert reddit.exit_code == 1 and "/r/nordbahm/comments does not exist (HTTP 404)" in reddit.output, reddit.output
    page = check(tmp_path, "rss", {"rss": {"feeds": [f"{platform}/page.html"]}})
    assert page.exit_code == 1 and "not with an RSS or Atom feed" in page.output, page.output


def test_check_unreachable_exit_1(tmp_path):
    port = closed_port()
    rss = check(tmp_path, "rss", {"rss": {"feeds": [f"http://127.0.0.1:{port}/feed.xml"]}})
    assert rss.exit_code == 1 and f"cannot reach http://127.0.0.1:{port}/feed.xml: ConnectError" in rss.output, rss.output
    sky = check(tmp_path, "bluesky", {"bluesky": {"url": f"ws://127.0.0.1:{port}"}})
    assert sky.exit_code == 1 and "bluesky: cannot reach ws://127.0.0.1" in sky.output, sky.output


def test_check_bluesky_handshake(platform, tmp_path):
    from websockets.asyncio.server import serve

    async def handler(ws):
        await ws.wait_closed()

    async def scenario():
        async with serve(handler, "127.0.0.1", 0, subprotocols=["xrpc.v1.json"]) as server:
            from stimmung.connectors.registry import check as check_source

            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            return await check_source("bluesky", load_settings(connectors={"bluesky": {"url": url}}))

    assert asyncio.run(scenario()) == "Jetstream accepted the subscription"
    # an HTTP server that is no Jetstream refuses the upgrade
    not_ws = check(tmp_path, "bluesky", {"bluesky": {"url": platform.replace("http", "ws")}})
    assert not_ws.exit_code == 1 and "refused the WebSocket upgrade (HTTP 404)" in not_ws.output, not_ws.output


def test_check_with_incomplete_settings_exit_2(tmp_path):
    x = check(tmp_path, "x", {"x": {}})
    assert x.exit_code == 2 and "connectors.x: bearer_token (env or file) is required" in x.output
    hook = check(tmp_path, "webhook", {"webhook": {}})
    assert hook.exit_code == 2 and "unsigned webhooks are never accepted" in hook.output
    unknown = check(tmp_path, "myspace", {})
    assert unknown.exit_code == 2 and "unknown connector 'myspace'" in unknown.output


def test_readiness_answers_from_the_first_ping(platform):
    HEALTH.checks.clear()
    good = build("rss", load_settings(connectors={"rss": {"feeds": [f"{platform}/feed.xml"]}}))
    asyncio.run(ready_after_ping(good))
    assert HEALTH.readiness() == (True, {"checks": {"source": {"ok": True, "detail": "1 feed(s) answered with a feed"}}})
    away = build("rss", load_settings(connectors={"rss": {"feeds": [f"http://127.0.0.1:{closed_port()}/f"]}}))
    asyncio.run(ready_after_ping(away))  # unreachable: not ready, with the reason; the runner retries
    ready, body = HEALTH.readiness()
    assert not ready and "cannot reach" in body["checks"]["source"]["detail"]
    refused = build("x", load_settings(connectors={"x": {"bearer_token": "stale", "base_url": platform, "rules": {"a": "b"}}}))
    with pytest.raises(Exception, match="refused the credentials"):  # wrong credentials do not heal: the role stops
        asyncio.run(ready_after_ping(refused))
    HEALTH.checks.clear()


def test_webhook_is_checked_not_run_by_connect(tmp_path):
    s = load_settings(connectors={"webhook": {"generic_secret": "k"}})
    with pytest.raises(Exception, match="run `stimmung webhook`"):
        build("webhook", s)


# ---- settings beside each connector ----------------------------------------------------------

def test_every_registered_connector_has_its_section_and_a_check():
    assert list(ConnectorSettings.model_fields) == ["checkpoint_dir", "filter_by_brands", "timeout_s", *CONNECTORS]
    for name, connector in CONNECTORS.items():
        section = ConnectorSettings.model_fields[name]
        assert section.annotation is connector.settings and section.description, name
        assert connector.settings.model_config.get("extra") == "forbid", name
        assert all(f.description for f in connector.settings.model_fields.values()), f"{name}: a field without description"
        runs = connector.load()
        assert "ping" in vars(runs) and "from_settings" in vars(runs), f"{name}: {runs.__name__} has no own check"
        assert issubclass(runs, Source) == (name != "webhook"), name


def test_connector_sections_keep_their_yaml_and_env_shape(tmp_path, monkeypatch):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("connectors:\n  rss:\n    feeds: [https://example.org/feed]\n  mastodon:\n    instances:\n"
                   "      - url: https://mastodon.social\n        timelines: ['tag:nordbahn']\n")
    monkeypatch.setenv("STIMMUNG_CONNECTORS__X__BEARER_TOKEN_FILE", "/run/secrets/x")
    monkeypatch.setenv("STIMMUNG_CONNECTORS__WEBHOOK__PORT", "9090")
    s = load_settings(cfg)
    assert s.connectors.rss.feeds == ["https://example.org/feed"]
    assert s.connectors.mastodon.instances[0].timelines == ["tag:nordbahn"]
    assert str(s.connectors.x.bearer_token_file) == "/run/secrets/x" and s.connectors.webhook.port == 9090
    cfg.write_text("connectors:\n  reddit:\n    client_secrte: x\n")
    with pytest.raises(Exception) as err:
        load_settings(cfg)
    assert "connectors.reddit.client_secrte: unknown setting (did you mean 'client_secret'?)" in str(err.value)


def test_reading_settings_loads_no_connector_client():
    # config.py imports every connector's settings; the clients (HTTP, WebSocket, Kafka, feed
    # parsing) must load only when a connector runs.
    code = ("import sys; import stimmung.config; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'websockets', 'kafka', 'aiohttp', 'feedparser', 'zstandard'}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
