"""Runs the inbox app on a real uvicorn server in a thread (for the inbox's integration and
browser tests), with accounts whose password is PASSWORD."""

from __future__ import annotations

import re
import threading
import time

import httpx
import uvicorn

from .conftest import free_port

PASSWORD = "correct horse battery staple"
SESSION_KEY = "inbox-test-session-key-0123456789abcdef"
_HASH: list[str] = []


def password_hash() -> str:
    if not _HASH:
        from stimmung.inbox.accounts import hash_password

        _HASH.append(hash_password(PASSWORD))
    return _HASH[0]


def inbox_config(config: dict, routes: list[dict] | None = None, **inbox: object) -> dict:
    h = password_hash()
    config.setdefault("crm", {})["routes"] = routes or [
        {"name": "complaints", "queue": "support", "priority": "P2", "brands": ["Nordbahn"], "sentiments": ["negative"],
         "query": "Erstattung OR Verspätung* OR refund", "first_response_sla_s": 3600}]
    config["crm"]["sla_check_s"] = 1  # the case manager exports response times within a second
    config["inbox"] = {
        "session_secret": SESSION_KEY, "cookie_secure": False, "teams": ["legal", "pr"], "live_poll_s": 0.5,
        "audit_index": config["elasticsearch"]["cases_index"] + "-audit",
        "accounts": [
            {"username": "alice", "display_name": "Alice Agent", "password_hash": h, "teams": {"support": "agent"}},
            {"username": "bob", "display_name": "Bob Agent", "password_hash": h, "teams": {"support": "agent"}},
            {"username": "lena", "display_name": "Lena Lead", "password_hash": h, "teams": {"support": "lead"}},
            {"username": "leo", "display_name": "Leo Legal", "password_hash": h, "teams": {"legal": "agent"}},
        ], **inbox}
    return config


class InboxServer:
    def __init__(self, settings, client):
        from stimmung.inbox.app import make_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = make_app(settings, client)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise AssertionError("inbox server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def signed_in(self, username: str, password: str = PASSWORD) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30)
        token = csrf_of(client.get("/login").text)
        answer = client.post("/login", data={"csrf": token, "username": username, "password": password})
        assert answer.status_code == 303, f"{username} could not sign in: {answer.status_code}"
        return client


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, f"no {name} field on the page"
    return found.group(1)


def csrf_of(html: str) -> str:
    return _field(html, "csrf")


def version_of(html: str) -> str:
    return _field(html, "version")


def error_of(html: str) -> str | None:
    found = re.search(r'id="error"[^>]*>([^<]+)<', html)
    return found.group(1) if found else None
