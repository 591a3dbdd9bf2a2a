"""OIDC sign-in to the inbox against a real OpenID provider started locally: NAV's
mock-oauth2-server (no.nav.security:mock-oauth2-server from Maven Central, run with the JDK the
local stack uses). Authorization code flow with PKCE, ID token checked by Authlib, rights from
the groups claim; a person without rights is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import yaml
from elasticsearch import Elasticsearch

from stimmung.config import load_settings
from stimmung.pipeline.elastic.indices import ensure_indices

from .conftest import PSEUDONYM_KEY, free_port
from .inbox_server import InboxServer, inbox_config

POM = Path(__file__).parent / "oidc" / "pom.xml"
pytestmark = pytest.mark.skipif(not shutil.which("java") or not shutil.which("mvn"), reason="needs java and mvn")


def provider(tmp_path: Path, claims: dict) -> tuple[subprocess.Popen, str]:
    classpath = tmp_path / "cp.txt"
    subprocess.run(["mvn", "-q", "-f", str(POM), "dependency:build-classpath", f"-Dmdep.outputFile={classpath}"],
                   check=True, timeout=600, capture_output=True)
    port = free_port()
    config = {"interactiveLogin": False, "tokenCallbacks": [{"issuerId": "acme", "tokenExpiry": 300, "requestMappings": [
        {"requestParam": "grant_type", "match": "authorization_code", "claims": {**claims, "aud": ["stimmung-inbox"]}}]}]}
    env = {**os.environ, "SERVER_PORT": str(port), "JSON_CONFIG": json.dumps(config)}
    proc = subprocess.Popen(["java", "-cp", classpath.read_text().strip(),
                             "no.nav.security.mock.oauth2.StandaloneMockOAuth2ServerKt"],
                            env=env, stdout=open(tmp_path / "oidc.log", "wb"), stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{port}/acme"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(issuer + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                return proc, issuer
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("the OIDC provider did not start:\n" + (tmp_path / "oidc.log").read_text()[-3000:])


def sign_in_via_provider(inbox_url: str) -> tuple[httpx.Client, httpx.Response, str]:
    browser = httpx.Client(base_url=inbox_url, timeout=30)
    to_provider = browser.get("/auth/oidc/start")
    assert to_provider.status_code == 302
    authorize = to_provider.headers["location"]
    back = httpx.get(authorize, timeout=30)  # the provider signs the user in at once (no login form)
    assert back.status_code == 302, back.text
    callback = back.headers["location"]
    assert callback.startswith(inbox_url + "/auth/oidc/callback")
    return browser, browser.get(callback.removeprefix(inbox_url)), authorize


@pytest.mark.parametrize("groups, allowed", [(["support:agent"], True), (["sales:agent"], False)])
def test_oidc_sign_in_with_pkce_and_rights_from_the_groups_claim(config, tmp_path, monkeypatch, groups, allowed):
    monkeypatch.setenv("STIMMUNG_PRIVACY__PSEUDONYM_KEY", PSEUDONYM_KEY)
    proc, issuer = provider(tmp_path, {"sub": "maria", "preferred_username": "maria", "name": "Maria SSO",
                                       "groups": groups})
    try:
        inbox_config(config, oidc={"issuer": issuer, "client_id": "stimmung-inbox", "client_secret": "inbox-secret"})
        path = tmp_path / "settings.yaml"
        path.write_text(yaml.safe_dump(config))
        s = load_settings(path)
        es = Elasticsearch(s.elasticsearch.url)
        ensure_indices(es, s.elasticsearch)
        server = InboxServer(s, es)
        try:
            assert "Single sign-on" in httpx.get(server.url + "/login").text
            browser, answer, authorize = sign_in_via_provider(server.url)
            query = parse_qs(urlparse(authorize).query)
            assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
            assert query["response_type"] == ["code"] and "nonce" in query
            if allowed:
                assert answer.status_code == 303
                queue = browser.get("/queue/support")
                assert queue.status_code == 200 and "Maria SSO" in queue.text
                assert browser.get("/queue/legal").status_code == 404
            else:
                assert answer.status_code == 403 and "belongs to no team" in answer.text
                assert browser.get("/queue/support").status_code == 303
            # a replayed callback (code and state used once) is refused
            replay = httpx.Client(base_url=server.url).get(str(answer.request.url).removeprefix(server.url))
            assert replay.status_code == 401
        finally:
            server.stop()
    finally:
        proc.terminate()
        proc.wait(10)
