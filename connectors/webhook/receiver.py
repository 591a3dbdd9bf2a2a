"""The webhook receiver: push platforms POST here, we verify, publish, and only then answer 200.

- ``GET /webhooks/meta``: Meta's subscription handshake (``hub.mode=subscribe``,
  ``hub.verify_token`` must equal ours, answer ``hub.challenge``).
- ``POST /webhooks/meta``: ``X-Hub-Signature-256: sha256=<HMAC-SHA256(app secret, raw body)>``.
- ``POST /webhooks/generic``: ``X-Stimmung-Signature: sha256=<HMAC-SHA256(secret, raw body)>``
  over a RawMention (or a list of them).
Signatures are compared in constant time over the exact bytes received; unsigned or wrongly
signed bodies get 401, bodies over ``max_body_bytes`` 413, unparsable JSON 400 (and a dead
letter). 200 means every mention was acknowledged by Kafka (senders retry anything else, and
the mention id absorbs the duplicates).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any, Callable, Iterator

from aiohttp import web
from kafka import KafkaProducer
from kafka.errors import KafkaError

from stimmung.connectors.webhook.mapping import from_generic, from_meta
from stimmung.health import HEALTH, beat_forever
from stimmung.kafka import DeadLetters, confirm_sent
from stimmung.listening import serve_app
from stimmung.metrics import MENTIONS_FETCHED, MENTIONS_PUBLISHED
from stimmung.schemas.deadletter import DeadLetter
from stimmung.schemas.mention import RawMention

log = logging.getLogger(__name__)


# A push is answered within this long: during a broker outage the sender gets 503 + Retry-After
# instead of a connection held open for the producer's default two minutes.
SEND_TIMEOUT_S = 15.0
RETRY_AFTER_S = 30


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())


class WebhookReceiver:
    def __init__(self, producer: KafkaProducer, raw_topic: str, dead_letters: DeadLetters, *,
                 meta_app_secret: str | None = None, meta_verify_token: str | None = None,
                 generic_secret: str | None = None):
        self.producer = producer
        self.raw_topic = raw_topic
        self.dead_letters = dead_letters
        self.meta_app_secret = meta_app_secret
        self.meta_verify_token = meta_verify_token
        self.generic_secret = generic_secret

    def _publish(self, items: Iterator[RawMention | tuple[str, Any]], source: str) -> tuple[int, int]:
        futures, rejected = [], 0
        for item in items:
            MENTIONS_FETCHED.labels(connector=source).inc()
            if isinstance(item, RawMention):
                futures.append(self.producer.send(self.raw_topic, key=item.mention_id.encode(),
                                                  value=item.model_dump_json().encode()))
            else:
                reason, payload = item
                self.dead_letters.send(DeadLetter(stage="connector", reason=reason, error_type="invalid_item",
                                                  source=source, payload=DeadLetter.encode_payload(json.dumps(payload))))
                rejected += 1
        confirm_sent(self.producer, futures, timeout_s=SEND_TIMEOUT_S)
        self.dead_letters.flush()
        MENTIONS_PUBLISHED.labels(connector=source).inc(len(futures))
        return len(futures), rejected

    async def _receive(self, request: web.Request, secret: str | None, header: str, source: str,
                       mapper: Callable[[Any], Iterator[RawMention | tuple[str, Any]]]) -> web.Response:
        if not secret:
            return web.json_response({"error": f"{source} is not configured"}, status=404)
        body = await request.read()  # aiohttp enforces client_max_size (413) before we get here
        if not signature_ok(secret, body, request.headers.get(header)):
            log.warning("rejected unsigned or wrongly signed webhook", extra={"source": source})
            return web.json_response({"error": "missing or invalid signature"}, status=401)
        try:
            payload = json.loads(body)
        except ValueError as err:
            await asyncio.to_thread(self._publish, iter([(f"invalid JSON: {err}", body.decode("utf-8", "replace"))]), source)
            return web.json_response({"error": "body is not JSON"}, status=400)
        try:
            published, rejected = await asyncio.to_thread(self._publish, mapper(payload), source)
        except KafkaError as err:
            # The broker is away: the sender retries later (Meta and most senders do on 5xx). What
            # was sent before the failure is published again then; its ids make that harmless.
            HEALTH.set_ready("kafka", False, f"publish failed: {type(err).__name__}")
            log.warning("webhook push not published: Kafka unavailable", extra={"source": source, "error": str(err)[:200]})
            return web.json_response({"error": "Kafka unavailable, retry later"}, status=503,
                                     headers={"Retry-After": str(RETRY_AFTER_S)})
        HEALTH.set_ready("kafka", True, "producer connected")
        return web.json_response({"published": published, "rejected": rejected})

    async def meta_verify(self, request: web.Request) -> web.Response:
        q = request.query
        if (self.meta_verify_token and q.get("hub.mode") == "subscribe"
                and hmac.compare_digest(q.get("hub.verify_token", ""), self.meta_verify_token)):
            return web.Response(text=q.get("hub.challenge", ""))
        return web.Response(status=403, text="verification failed")

    async def meta(self, request: web.Request) -> web.Response:
        return await self._receive(request, self.meta_app_secret, "X-Hub-Signature-256", "webhook-meta", from_meta)

    async def generic(self, request: web.Request) -> web.Response:
        return await self._receive(request, self.generic_secret, "X-Stimmung-Signature", "webhook-generic", from_generic)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def make_app(receiver: WebhookReceiver, max_body_bytes: int = 1024 * 1024) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_get("/webhooks/meta", receiver.meta_verify)
    app.router.add_post("/webhooks/meta", receiver.meta)
    app.router.add_post("/webhooks/generic", receiver.generic)
    app.router.add_get("/healthz", receiver.health)

    async def heartbeat(app: web.Application):
        # liveness on the metrics port (stimmung.health): beats only while this event loop runs
        task = asyncio.create_task(beat_forever("webhook"))
        yield
        task.cancel()

    app.cleanup_ctx.append(heartbeat)
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve the receiver until SIGTERM or SIGINT; ready only once the push port is bound
    (stimmung/listening.py; the command calls ``not_listening_yet`` before its Kafka wait)."""
    await serve_app(app, host, port, "pushes", on_bound=lambda: HEALTH.set_ready("kafka", True, "producer connected"))
