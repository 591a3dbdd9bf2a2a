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
from typing import Callable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from stimmung.config import KafkaSettings, read_secret
from stimmung.health import HEALTH
from stimmung.metrics import DEAD_LETTERS
from stimmung.retry import Backoff
from stimmung.schemas.deadletter import DeadLetter

# kafka-python 3 reports an unreachable cluster as a bootstrap timeout or a connection error.
_UNREACHABLE = (KafkaTimeoutError, KafkaConnectionError)

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


def admin_client(settings: KafkaSettings, timeout_s: float | None = 30.0,
                 should_stop: Callable[[], bool] = lambda: False) -> KafkaAdminClient:
    """An admin client; waits up to ``timeout_s`` for a reachable broker (``None``: as long as it
    takes, logging once — a role that starts before its broker just waits)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    waiting = KafkaWait(settings, "admin client", should_stop, cap_s=1.0 if timeout_s is not None else 15.0)
    while True:
        try:
            admin = KafkaAdminClient(
                **client_config(settings),
                client_id=f"{settings.client_id}-admin",
                request_timeout_ms=int(min(timeout_s or 30, 30) * 1000),
                # kafka-python 3 waits 30 s for a first broker by default, whatever timeout_s says
                bootstrap_timeout_ms=int(max(1.0, min(timeout_s or 30, 30)) * 1000),
            )
            waiting.recovered()
            return admin
        except SaslAuthenticationFailedError as err:
            raise KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} refused our SASL authentication "
                                   f"({settings.security.sasl_mechanism} as {settings.security.sasl_username!r}): {err}") from None
        except _UNREACHABLE:
            if deadline is not None and time.monotonic() >= deadline:
                raise KafkaUnavailable(_unreachable(settings)) from None
            waiting.failed(_unreachable(settings))


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


def ensure_topics(settings: KafkaSettings, timeout_s: float | None = None,
                  should_stop: Callable[[], bool] = lambda: False) -> list[str]:
    """Create missing topics; return the names created (empty when all existed).

    Waits for the broker as long as it takes by default (every role calls this first: a role
    started before its broker waits instead of exiting); a one-shot command passes ``timeout_s``.
    Topic settings the broker refuses (replication above the broker count, an unknown config)
    raise ``KafkaUnavailable`` with the broker's reason: waiting would not fix them."""
    admin = admin_client(settings, timeout_s, should_stop)
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics([spec], timeout_ms=int((timeout_s or 30) * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race: fine
            except KafkaError as err:
                if getattr(err, "retriable", False):
                    raise
                raise KafkaUnavailable(f"Kafka refused to create topic {spec.name} "
                                       f"(partitions={spec.num_partitions}, replication={spec.replication_factor}, "
                                       f"configs={spec.topic_configs}): {err}") from None
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        admin.close()


class GroupConsumer(KafkaConsumer):
    """A group member that cannot be left without partitions by a join that raced topic metadata.

    kafka-python 3.0's group leader assigns from the metadata it holds when the group forms; a
    topic still being created, or a broker still loading its partitions, is missing there ("No
    partition metadata for topic ..."), and the group settles on an empty assignment. The client
    is meant to rejoin when a later metadata refresh shows the partitions (the leader compares the
    metadata it assigned from with the current one), but two things defeat that: only the leader
    watches, and the periodic refresh is a single coroutine (``ClusterMetadata._refresh_loop``)
    that ends for good when a refresh it awaits fails outside its ``try`` (a metadata request lost
    while the broker restarts) — after which no refresh ever happens and the stale empty
    assignment stays (seen: a sink that indexed nothing for five minutes after a stack restart,
    a 10 s ``metadata_max_age_ms`` notwithstanding). ``group_consumer`` therefore subscribes
    only once the topic's partitions all have leaders, and every ``poll`` checks, at most every
    ``WATCH_S``, that the refresh loop still runs (restarting it if not) and that a leader whose
    assignment missed a topic's partitions rejoins as soon as they are known.
    The two checks read kafka-python 3.0 internals (pinned in requirements.lock); if a newer
    version renames them, the checks log once and stand down, and the subscribe-after-leaders
    wait still holds."""

    WATCH_S = 5.0
    _next_watch = 0.0
    _watch_broken = False
    # Set by group_consumer: how a poll that finds the broker gone waits (see ``poll``).
    outage: KafkaWait | None = None
    # Offsets of records whose downstream writes were acknowledged but whose commit was refused
    # (a rebalance, the broker away): see ``hold``.
    _held: dict[TopicPartition, OffsetAndMetadata] | None = None

    def hold(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Keep offsets whose commit was refused; each later successful ``poll`` commits those of
        partitions this member owns then. Re-delivery cannot be relied on: when a rebalance gives
        the same member its partitions back, kafka-python keeps its positions, so nothing is read
        again and without this commit the group's lag stays (seen in CI: a sink with everything
        indexed and a lag of 2,515). Partitions owned elsewhere stay held; their new owner reads
        from the group's last commit, and ids make the repeat harmless."""
        held = self._held if self._held is not None else {}
        for tp, meta in offsets.items():
            if tp not in held or held[tp].offset < meta.offset:  # an older offset never moves one back
                held[tp] = meta
        self._held = held

    @property
    def held(self) -> dict[TopicPartition, OffsetAndMetadata]:
        return dict(self._held or {})

    def commit(self, offsets=None, timeout_ms=None):
        super().commit(offsets, timeout_ms=timeout_ms)
        if self._held and offsets:
            for tp, meta in offsets.items():  # a held offset this commit has overtaken
                if tp in self._held and self._held[tp].offset <= meta.offset:
                    del self._held[tp]

    def _commit_held(self) -> None:
        owned = {tp: meta for tp, meta in (self._held or {}).items() if tp in self.assignment()}
        if not owned:
            return
        try:
            self.commit(owned)
        except KafkaError as err:  # still rebalancing, or the broker away: again after the next poll
            log.debug("held commit not yet possible", extra={"error": str(err)[:200]})
            return
        log.info("committed offsets held since a refused commit", extra={"partitions": len(owned)})

    def poll(self, timeout_ms=0, max_records=None, update_offsets=True):
        now = time.monotonic()
        if now >= self._next_watch and not self._watch_broken:
            self._next_watch = now + self.WATCH_S
            try:
                self._watch_metadata()
            except AttributeError as err:  # a kafka-python whose internals moved
                self._watch_broken = True
                log.warning("kafka-python internals changed; the group metadata watch is off", extra={"error": str(err)})
        try:
            records = super().poll(timeout_ms=timeout_ms, max_records=max_records, update_offsets=update_offsets)
        except _UNREACHABLE as err:
            # kafka-python 3 can raise a connection error out of poll while it looks for the group
            # coordinator (seen in CI: the broker went away again a second after the privacy
            # worker had rejoined, and the error ended the role). An outage is no reason to end:
            # wait with backoff, unready meanwhile, and poll again on the caller's next turn.
            if self.outage is None:
                raise
            try:
                self.outage.failed(f"poll: {type(err).__name__}: {str(err)[:200]}")
            except InterruptedError:
                pass  # a stop request: the caller's loop sees it and ends
            return {}
        if self.outage is not None and self.outage.reason is not None:
            self.outage.recovered()
        if self._held:
            self._commit_held()
        return records

    def _watch_metadata(self) -> None:
        cluster = self._cluster
        loop = cluster._refresh_loop_future
        if loop is not None and loop.is_done and not cluster.closed:
            log.warning("kafka-python's metadata refresh had stopped; restarted it",
                        extra={"error": str(getattr(loop, "exception", "") or "")[:200]})
            cluster._refresh_loop_future = None
            cluster.request_update()  # starts a new refresh loop
        coordinator = self._coordinator
        snapshot = coordinator._assignment_snapshot
        if not coordinator._is_leader or snapshot is None:
            return
        missed = [t for t in (self.subscription() or ()) if not snapshot.get(t) and cluster.partitions_for_topic(t)]
        if missed and not coordinator.need_rejoin():
            log.warning("the group was formed without partitions of %s; rejoining", ", ".join(missed),
                        extra={"topics": missed, "group": self.config["group_id"]})
            coordinator.request_rejoin()


def _partitions_led(consumer: KafkaConsumer, topic: str) -> bool:
    """Whether metadata shows the topic with partitions that all have a leader (asks the broker)."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return False
    available = consumer._cluster.available_partitions_for_topic(topic) or set()
    return available >= partitions


def group_consumer(settings: KafkaSettings, topic: str, group_id: str, purpose: str, max_poll_records: int,
                   should_stop: Callable[[], bool] = lambda: False) -> GroupConsumer:
    """A consumer in a group, as every kafka-python role of ours reads: commits by hand after the
    downstream write, starts at the earliest offset, and may take up to 10 minutes per batch (an
    Elasticsearch outage) before the group gives its partitions away.

    Rides out a broker that is away or still starting: retries with capped backoff (one log line
    when Kafka goes away, one when it is back; ``/readyz`` check "kafka" false meanwhile) and
    subscribes only once every partition of ``topic`` has a leader, so the group never forms on
    missing metadata (see ``GroupConsumer``). Refused credentials raise ``KafkaUnavailable`` at
    once; ``should_stop()`` true raises ``InterruptedError``."""
    config = dict(**client_config(settings), client_id=f"{settings.client_id}-{purpose}", group_id=group_id,
                  enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=max_poll_records,
                  max_poll_interval_ms=600_000, metadata_max_age_ms=10_000)
    waiting = KafkaWait(settings, f"{purpose} consumer", should_stop)
    # Not ready until subscribed: kafka-python may block in its bootstrap before any error reaches
    # ``waiting``, and a role whose only other check (Elasticsearch) passes would read as ready.
    HEALTH.set_ready("kafka", False, f"{purpose} consumer connecting")
    while True:
        try:
            consumer = GroupConsumer(**config)
            break
        except SaslAuthenticationFailedError as err:
            raise KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} refused our SASL authentication "
                                   f"({settings.security.sasl_mechanism} as {settings.security.sasl_username!r}): {err}") from None
        except _UNREACHABLE:
            waiting.failed(_unreachable(settings))
    try:
        while not _partitions_led(consumer, topic):
            waiting.failed(f"topic {topic} has no partitions with leaders yet")
    except BaseException:
        consumer.close(autocommit=False)
        raise
    waiting.recovered()
    consumer.outage = waiting
    consumer.subscribe([topic])
    return consumer


class KafkaWait:
    """Waiting for Kafka with capped backoff: one log line when the wait starts (with the reason),
    one when it ends, readiness check "kafka" false in between."""

    def __init__(self, settings: KafkaSettings, what: str, should_stop: Callable[[], bool] = lambda: False,
                 cap_s: float = 15.0):
        self.what, self.should_stop = what, should_stop
        self.backoff = Backoff(base_s=0.5, cap_s=cap_s)
        self.reason: str | None = None
        self.since = 0.0

    def failed(self, reason: str) -> None:
        if self.reason is None:
            self.since = time.monotonic()
            log.warning("%s waiting for Kafka: %s; retrying", self.what, reason, extra={"reason": reason})
            HEALTH.set_ready("kafka", False, reason)
        self.reason = reason
        if self.should_stop():
            raise InterruptedError(f"stopped while waiting for Kafka: {reason}")
        delay = max(0.2, self.backoff.next_delay())
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:  # short steps: a stop request is honoured promptly
            if self.should_stop():
                raise InterruptedError(f"stopped while waiting for Kafka: {reason}")
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def recovered(self) -> None:
        if self.reason is not None:
            log.warning("%s: Kafka is back after %.0f s", self.what, time.monotonic() - self.since)
            self.reason = None
            self.backoff.reset()
        HEALTH.set_ready("kafka", True, "connected")


def commit_or_hold(consumer: GroupConsumer, offsets: dict, role: str) -> bool:
    """Commit offsets of records whose downstream writes were acknowledged. When the group is
    rebalancing (RebalanceInProgressError, CommitFailedError) or the broker is away, do not end the
    role (issue #20: the case manager died on a rebalance mid-commit): the consumer holds the
    offsets and commits them after its next successful poll (``GroupConsumer.hold``)."""
    try:
        consumer.commit(offsets)
        return True
    except KafkaError as err:
        consumer.hold(offsets)
        log.warning("%s: commit refused; offsets held and committed after the next poll", role,
                    extra={"error": f"{type(err).__name__}: {str(err)[:200]}"})
        return False


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
        self._pending: list = []

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
    "DeadLetters", "GroupConsumer", "KafkaError", "KafkaUnavailable", "KafkaWait", "admin_client", "group_consumer", "confirm_sent", "ensure_topics",
    "make_producer", "topic_specs",
]
