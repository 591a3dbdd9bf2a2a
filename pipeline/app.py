"""The Faust app: one agent consumes raw mentions and produces enriched ones.

Follow one mention: raw topic -> ``enrich`` agent (micro-batch via ``take_events``; models run in
a worker thread) -> enriched topic (keyed by mention id) -> ``stimmung.pipeline.sink`` ->
Elasticsearch.

Delivery: ``take_events`` acks a batch's events only after the loop body for that batch returned,
and the body returns only after Kafka acknowledged every enriched message and dead letter of the
batch. Faust commits acked offsets (after flushing its producer), so a crash re-processes at most
the unacknowledged batch; mention ids make the repeats harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import faust

from stimmung.brandquery import BrandTagger
from stimmung.config import Settings
from stimmung.health import HEALTH, beat_forever
from stimmung.kafka import faust_credentials
from stimmung.metrics import MENTIONS_ENRICHED
from stimmung.models import Enricher, default_enricher
from stimmung.pipeline.crm.consent import consent_value
from stimmung.pipeline.enrich import InMessage, MentionEnrichment, dead_letter_bytes, enriched_bytes
from stimmung.pipeline.faust_fixes import install as install_faust_fixes
from stimmung.pipeline.influence import influence_score, update_author
from stimmung.pipeline.privacy import pseudonymizer_from_settings
from stimmung.pipeline.views import CompactedView

log = logging.getLogger(__name__)

# How long work may wait with no commit before liveness fails. Generous: a batch takes seconds,
# Faust commits every ~3 s, and a broker outage should cost a restart only when it is long.
PROGRESS_STALE_S = 300.0


class ProgressWatch:
    """Decides from (committed offset, end offset) per assigned partition whether the agent is
    making progress: yes when any commit moved since the last look, or when nothing waits."""

    def __init__(self) -> None:
        self.last: dict = {}

    def progressing(self, positions: dict) -> bool:
        moved = any(self.last.get(tp, (None,))[0] != committed for tp, (committed, _) in positions.items())
        waiting = any(end is not None and end > (committed or 0) for committed, end in positions.values())
        self.last = dict(positions)
        return moved or not waiting


class RepeatFilter(logging.Filter):
    """One line per kind of client error instead of a storm: aiokafka logs an ERROR for every
    failed connection attempt and fetch (2,514 lines in a 26 s broker outage). The first record
    of a (logger, message template) passes; repeats within ``window_s`` are counted and dropped;
    the first one after the window passes with the count appended."""

    def __init__(self, window_s: float = 60.0, clock=None):
        super().__init__()
        import time

        self.window_s, self.clock = window_s, clock or time.monotonic
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = (record.name, str(record.msg)), self.clock()
        first, dropped = self.seen.get(key, (None, 0))
        if first is not None and now - first < self.window_s:
            self.seen[key] = (first, dropped + 1)
            return False
        self.seen[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped} like it in the last {self.window_s:.0f} s not logged)"
        return True


def quiet_client_error_storms() -> None:
    """Attach ``RepeatFilter`` to every aiokafka logger (filters are per logger, not inherited)."""
    import aiokafka  # noqa: F401 - creates its module loggers

    repeat = RepeatFilter()
    names = [n for n in logging.root.manager.loggerDict if n == "aiokafka" or n.startswith("aiokafka.")]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(repeat)


def _raw_positions(app: faust.App, topic: str) -> dict:
    """(committed, end) offsets of the raw partitions this worker holds, from Faust's consumer."""
    try:
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
        committed = consumer._committed_offset  # type: ignore[attr-defined]  # aiokafka consumer's, not in ConsumerT
        return {tp: (committed.get(tp), consumer.highwater(tp)) for tp in assigned}
    except Exception:
        return {}


async def views_caught_up(*views: CompactedView, log_after_s: float = 10.0) -> None:
    waited = 0.0
    while not all(v.caught_up.is_set() for v in views):
        if waited == log_after_s:
            log.warning("enrich waits for its views to catch up",
                        extra={"topics": [v.topic for v in views if not v.caught_up.is_set()]})
        await asyncio.sleep(0.5)
        waited += 0.5


def build_app(settings: Settings, enricher: Enricher | None = None) -> faust.App:
    kafka = settings.kafka
    topics = kafka.topics
    pipe = settings.pipeline
    install_faust_fixes()  # see pipeline/faust_fixes.py: no acks for skipped messages, no delivery while seeking
    quiet_client_error_storms()
    app = faust.App(
        pipe.app_id,
        broker=[f"kafka://{host}" for host in kafka.bootstrap_list],
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=topics.partitions,
        topic_replication_factor=topics.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        datadir=str(pipe.data_dir),
        broker_client_id=kafka.client_id,
        broker_credentials=faust_credentials(kafka),
        broker_session_timeout=pipe.session_timeout_s,
        broker_rebalance_timeout=pipe.rebalance_timeout_s,
    )
    processing = MentionEnrichment(enricher or default_enricher(settings), pseudonymizer_from_settings(settings),
                                   BrandTagger.from_settings(settings))
    # One thread: the models are not re-entrant and torch uses its own intra-op threads anyway.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enrich")

    # Consent and influence: compacted topics every worker reads whole (pipeline/views.py).
    consents = CompactedView(kafka, topics.consent).start()
    authors = CompactedView(kafka, topics.influence).start()
    influence_topic = app.topic(topics.influence, key_type=bytes, value_type=bytes)
    crm = settings.crm

    def link_and_weigh(mention) -> bytes | None:
        """Consent-gated CRM link and the influence score; returns the author's new state."""
        if mention.author is None:
            return None
        key = mention.author.pseudonym.encode()
        # No consent record, or one without the linking purpose: the author stays a pseudonym.
        mention.author.contact_id = consent_value(consents.get(key), crm.linking_purpose)
        if mention.author.contact_id and mention._held_url:
            mention.url = mention._held_url  # consented: staff may open the post itself
            mention.author.linked_url = True
        e = mention.engagement
        state = update_author(json.loads(authors.get(key) or b"null"), mention.author.follower_count,
                              e.likes + 2 * e.shares + e.replies, crm.influence)
        value = json.dumps(state).encode()
        authors.put_local(key, value)
        mention.author.influence = influence_score(mention.platform, state["followers"], state["engagement"], crm.influence)
        return value

    raw_topic = app.topic(topics.raw, value_type=bytes, key_type=bytes, allow_empty=True)
    enriched_topic = app.topic(topics.enriched, value_type=bytes, key_type=bytes)
    deadletter_topic = app.topic(topics.deadletter, value_type=bytes, key_type=bytes)

    @app.agent(raw_topic, name="enrich")
    async def enrich(stream):
        loop = asyncio.get_running_loop()
        # Not one mention before both views hold what their topics held at start: an empty
        # influence state would overwrite the author's accumulated one, a missing consent would
        # leave a consented author unlinked (issue #20).
        await views_caught_up(consents, authors)
        async for events in stream.take_events(pipe.enrich_batch_size, within=pipe.enrich_batch_wait_s):
            messages = [
                InMessage(topic=e.message.topic, partition=e.message.partition, offset=e.message.offset,
                          key=e.message.key, value=e.message.value)
                for e in events
            ]
            enriched, letters = await loop.run_in_executor(executor, processing.process, messages)
            sends = []
            for mention in enriched:
                state = link_and_weigh(mention)
                if state is not None:
                    sends.append(await influence_topic.send(key=mention.author.pseudonym.encode(), value=state, force=True))
            for mention in enriched:
                sends.append(await enriched_topic.send(
                    key=mention.mention_id.encode(), value=enriched_bytes(mention), force=True))
            for letter in letters:
                sends.append(await deadletter_topic.send(
                    key=(letter.key or "").encode() or None, value=dead_letter_bytes(letter), force=True))
            # Wait for the broker's acks before this batch's offsets may be committed.
            await asyncio.gather(*sends)
            for mention in enriched:
                MENTIONS_ENRICHED.labels(language=mention.language).inc()
            if letters:
                log.warning("dead-lettered malformed raw mentions", extra={"count": len(letters)})

    @app.task
    async def health() -> None:
        HEALTH.set_ready("worker", True, "models loaded, agent started")
        # Beats from the event loop: stale beats mean the loop is blocked (liveness, stimmung.health).
        await beat_forever("worker", interval_s=5.0, stale_after_s=60.0)

    @app.task
    async def progress() -> None:
        # A live event loop is not a working agent: a wedged rebalance ("wait_empty: Waiting
        # for tasks" forever) kept /healthz at 200 while nothing was enriched. This beat stays
        # fresh only while commits advance or nothing waits for us, so liveness turns bad
        # when work waits and the agent makes no progress.
        watch = ProgressWatch()
        while True:
            if watch.progressing(_raw_positions(app, topics.raw)):
                HEALTH.beat("enrich-progress", PROGRESS_STALE_S)
            await asyncio.sleep(5.0)

    app.stimmung_settings = settings  # type: ignore[attr-defined]  # for the worker command
    return app
