"""Kafka plumbing shared by connectors, the pipeline and the sink (kafka-python).

* ``ensure_topics`` creates the project's topics with the configured partitions, replication and
  retention when they are missing (idempotent; existing topics are left alone).
* ``make_producer`` returns a producer configured for at-least-once delivery: ``acks=all``,
  idempotence on. Callers bound what is in flight themselves by flushing every N records (the
  connector runner does so at each checkpoint): backpressure, not an unbounded buffer.
* ``DeadLetters`` writes ``DeadLetter`` records to the dead-letter topic.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (KafkaConnectionError, KafkaError, KafkaTimeoutError, SaslAuthenticationFailedError,
                          TopicAlreadyExistsError)

# kafka-python 3 reports an unreachable cluster as a bootstrap timeout or a connection error.
_UNREACHABLE = (KafkaTimeoutError, KafkaConnectionError)

from stimmung.config import KafkaSettings, read_secret
from stimmung.metrics import DEAD_LETTERS
from stimmung.schemas.deadletter import DeadLetter

log = logging.getLogger(__name__)


class KafkaUnavailable(RuntimeError):
    pass


def _unreachable(settings: KafkaSettings) -> str:
    sec = settings.security
    if sec.protocol.startswith("SASL"):
        # A broker that rejects SASL credentials just closes the connection: say both.
        return (f"no Kafka broker reachable at {settings.bootstrap_servers}, or it refused our credentials "
                f"({sec.protocol} {sec.sasl_mechanism} as {sec.sasl_username!r})")
    return f"no Kafka broker reachable at {settings.bootstrap_servers} (is the stack up? try `stimmung stack up`)"


def client_config(settings: KafkaSettings) -> dict:
    """Connection settings every kafka-python client gets: brokers plus TLS/SASL."""
    sec = settings.security
    config: dict = {"bootstrap_servers": settings.bootstrap_list, "security_protocol": sec.protocol}
    if sec.protocol in ("SSL", "SASL_SSL"):
        config.update(ssl_check_hostname=sec.ssl_check_hostname,
                      ssl_cafile=str(sec.ssl_cafile) if sec.ssl_cafile else None,
                      ssl_certfile=str(sec.ssl_certfile) if sec.ssl_certfile else None,
                      ssl_keyfile=str(sec.ssl_keyfile) if sec.ssl_keyfile else None)
    if sec.protocol.startswith("SASL"):
        config.update(sasl_mechanism=sec.sasl_mechanism, sasl_plain_username=sec.sasl_username,
                      sasl_plain_password=read_secret(sec.sasl_password, sec.sasl_password_file,
                                                      "kafka.security.sasl_password"))
    return config


def faust_credentials(settings: KafkaSettings):
    """The same for Faust (aiokafka): None for PLAINTEXT, else SSL or SASL credentials."""
    import ssl

    import faust

    sec = settings.security
    if sec.protocol == "PLAINTEXT":
        return None
    context = None
    if sec.protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=str(sec.ssl_cafile) if sec.ssl_cafile else None)
        context.check_hostname = sec.ssl_check_hostname
        if sec.ssl_certfile:
            context.load_cert_chain(str(sec.ssl_certfile), str(sec.ssl_keyfile))
    if sec.protocol == "SSL":
        return faust.SSLCredentials(context)
    password = read_secret(sec.sasl_password, sec.sasl_password_file, "kafka.security.sasl_password")
    return faust.SASLCredentials(username=sec.sasl_username, password=password, ssl_context=context,
                                 mechanism=sec.sasl_mechanism)


def admin_client(settings: KafkaSettings, timeout_s: float = 30.0) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(
                **client_config(settings),
                client_id=f"{settings.client_id}-admin",
                request_timeout_ms=int(min(timeout_s, 30) * 1000),
                # kafka-python 3 waits 30 s for a first broker by default, whatever timeout_s says
                bootstrap_timeout_ms=int(max(1.0, min(timeout_s, 30)) * 1000),
            )
        except SaslAuthenticationFailedError as err:
            raise KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} refused our SASL authentication "
                                   f"({settings.security.sasl_mechanism} as {settings.security.sasl_username!r}): {err}") from None
        except _UNREACHABLE:
            if time.monotonic() >= deadline:
                raise KafkaUnavailable(_unreachable(settings)) from None
            time.sleep(1.0)


def topic_specs(settings: KafkaSettings) -> list[NewTopic]:
    t = settings.topics
    # Mentions are keyed by mention id: compaction would also work, but analysts replay by time,
    # so plain retention it is. Dead letters live longer: somebody has to look at them.
    common = {"retention.ms": str(t.retention_ms)}
    specs = [
        NewTopic(t.raw, t.partitions, t.replication_factor, topic_configs=common),
        NewTopic(t.enriched, t.partitions, t.replication_factor, topic_configs=common),
        NewTopic(t.alerts, t.partitions, t.replication_factor, topic_configs=common),
        NewTopic(t.privacy, t.partitions, t.replication_factor, topic_configs=common),
        # Consent: the latest record per author pseudonym is the state; compaction keeps exactly
        # that forever (the audit trail lives in Elasticsearch).
        NewTopic(t.consent, t.partitions, t.replication_factor,
                 topic_configs={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}),
        NewTopic(t.influence, t.partitions, t.replication_factor, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(
            t.deadletter, t.partitions, t.replication_factor,
            topic_configs={"retention.ms": str(t.deadletter_retention_ms)},
        ),
    ]
    return specs


def ensure_topics(settings: KafkaSettings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; return the names created (empty when all existed)."""
    admin = admin_client(settings, timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics([spec], timeout_ms=int(timeout_s * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race: fine
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        admin.close()


def group_consumer(settings: KafkaSettings, topic: str, group_id: str, purpose: str, max_poll_records: int) -> KafkaConsumer:
    """A consumer in a group, as every kafka-python role of ours reads: commits by hand after the
    downstream write, starts at the earliest offset, and may take up to 10 minutes per batch (an
    Elasticsearch outage) before the group gives its partitions away.

    Topic metadata is re-read every 10 s (kafka-python's default: 5 minutes): a consumer that
    joined its group just as its topic was being created got no partitions ("No partition
    metadata for topic") and sat idle until the next refresh — seen once as a sink that indexed
    nothing for three minutes."""
    return KafkaConsumer(topic, **client_config(settings), client_id=f"{settings.client_id}-{purpose}", group_id=group_id,
                         enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=max_poll_records,
                         max_poll_interval_ms=600_000, metadata_max_age_ms=10_000)


def make_producer(settings: KafkaSettings, **overrides) -> KafkaProducer:
    config = dict(
        **client_config(settings),
        client_id=settings.client_id,
        acks="all",
        enable_idempotence=True,
        retries=2**31 - 1,
        max_in_flight_requests_per_connection=5,
        linger_ms=20,
        delivery_timeout_ms=120_000,
        max_block_ms=120_000,
    )
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except SaslAuthenticationFailedError as err:
        raise KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} refused our SASL authentication: {err}") from None
    except _UNREACHABLE:
        raise KafkaUnavailable(_unreachable(settings)) from None


def confirm_sent(producer: KafkaProducer, futures: list, timeout_s: float = 60.0) -> None:
    """Block until every send in ``futures`` is acknowledged (raises if the broker refused one)."""
    producer.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=timeout_s)


class DeadLetters:
    """Sends dead letters with the reason; ``flush()`` before committing the inputs they replace."""

    def __init__(self, producer: KafkaProducer, topic: str):
        self.producer = producer
        self.topic = topic
        self._pending = []

    def send(self, letter: DeadLetter) -> None:
        DEAD_LETTERS.labels(stage=letter.stage, reason=letter.error_type).inc()
        log.warning(
            "dead letter",
            extra={"stage": letter.stage, "error_type": letter.error_type, "reason": letter.reason[:500],
                   "source": letter.source, "offset": letter.offset},
        )
        value = letter.model_dump_json().encode("utf-8")
        key = letter.key.encode("utf-8") if letter.key else None
        self._pending.append(self.producer.send(self.topic, key=key, value=value))

    def flush(self, timeout_s: float = 60.0) -> None:
        """Block until every dead letter sent so far is acknowledged (raises on failure)."""
        pending, self._pending = self._pending, []
        confirm_sent(self.producer, pending, timeout_s)


__all__ = [
    "DeadLetters", "KafkaError", "KafkaUnavailable", "admin_client", "confirm_sent", "ensure_topics",
    "make_producer", "topic_specs",
]
