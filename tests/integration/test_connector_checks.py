"""`stimmung connect webhook --check` against the real receiver publishing to the real broker:
our signatures and verify token are accepted, a receiver with other secrets is named as such, and
the check publishes nothing. (The polled sources' checks are in tests/unit/test_connector_checks.py.)"""

from __future__ import annotations

import asyncio

from stimmung.config import merge_overrides
from stimmung.connectors.http import SourceError
from stimmung.connectors.registry import check
from stimmung.kafka import DeadLetters, ensure_topics, make_producer

from .conftest import free_port
from .test_end_to_end import read_topic


def test_webhook_check_against_the_running_receiver(settings):
    from aiohttp.test_utils import TestServer

    from stimmung.connectors.webhook import WebhookReceiver, make_app

    ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    receiver = WebhookReceiver(producer, settings.kafka.topics.raw, DeadLetters(producer, settings.kafka.topics.deadletter),
                               meta_app_secret="app-secret", meta_verify_token="verify-me", generic_secret="shop-secret")

    def with_webhook(port: int, **secrets: str):
        return merge_overrides(settings, {"connectors": {"webhook": {"host": "0.0.0.0", "port": port, **secrets}}})

    async def scenario():
        server = TestServer(make_app(receiver), host="127.0.0.1")
        await server.start_server()
        outcomes = {}
        try:
            ours = with_webhook(server.port, meta_app_secret="app-secret", meta_verify_token="verify-me",
                                generic_secret="shop-secret")
            outcomes["ok"] = await check("webhook", ours)
            for case, secrets in {"generic": {"generic_secret": "old-secret"}, "meta": {"meta_app_secret": "old"},
                                  "token": {"generic_secret": "shop-secret", "meta_verify_token": "old-token"}}.items():
                try:
                    await check("webhook", with_webhook(server.port, **secrets))
                except SourceError as err:
                    outcomes[case] = str(err)
        finally:
            await server.close()
        try:
            await check("webhook", with_webhook(free_port(), generic_secret="shop-secret"))
        except SourceError as err:
            outcomes["down"] = str(err)
        return outcomes

    try:
        outcomes = asyncio.run(scenario())
    finally:
        producer.close()
    assert outcomes["ok"].endswith("accepts: generic signature, Meta signature, Meta verify token"), outcomes
    assert outcomes["ok"].startswith("receiver at http://127.0.0.1:")  # 0.0.0.0 is checked on loopback
    assert "refused a body signed with our generic_secret: it runs with a different secret" in outcomes["generic"]
    assert "refused a body signed with our meta_app_secret" in outcomes["meta"]
    assert "did not answer Meta's handshake with our meta_verify_token (HTTP 403)" in outcomes["token"]
    assert "cannot reach http://127.0.0.1:" in outcomes["down"] and "/healthz" in outcomes["down"]
    # the signed test bodies hold no mentions: nothing reached the raw or dead-letter topic
    # (waiting for one record: an empty topic answers [] after the timeout)
    assert read_topic(settings, settings.kafka.topics.raw, 1, timeout_s=3) == []
    assert read_topic(settings, settings.kafka.topics.deadletter, 1, timeout_s=3) == []
