"""A commit refused because the group is rebalancing (or the broker is away) is held by the group
consumer and committed after its next successful poll, once the partitions are this member's.

Re-delivery cannot be relied on instead: when a rebalance gives the same member its partitions
back, kafka-python keeps its positions, so nothing is read again and the lag stays (the short chaos
soak's CI failure: everything indexed, lag 2,515). Every role that reads a group gets this: the sink
through ``GroupConsumer.hold``, the case manager and privacy worker through ``commit_or_hold``.
The broker is a stand-in (kafka-python's own commit, poll and assignment are replaced); the
behaviour under test is ours."""

from __future__ import annotations

import threading

import pytest
from kafka import KafkaConsumer
from kafka.errors import IllegalGenerationError, KafkaTimeoutError, RebalanceInProgressError, UnknownMemberIdError
from kafka.structs import OffsetAndMetadata, TopicPartition

from stimmung.config import Settings
from stimmung.kafka import GroupConsumer, commit_or_hold
from stimmung.pipeline.enrich import InMessage
from stimmung.pipeline.sink import ElasticsearchSink, Prepared

A, B = TopicPartition("t.enriched", 0), TopicPartition("t.enriched", 1)


def at(offset: int) -> OffsetAndMetadata:
    return OffsetAndMetadata(offset, "", -1)


class Broker:
    """What the stand-in broker does: which partitions the member owns, whether commits are refused,
    and every commit that went through."""

    def __init__(self):
        self.owned: set[TopicPartition] = {A, B}
        self.refuse: Exception | None = None
        self.committed: list[dict] = []
        self.attempts = 0


@pytest.fixture
def member(monkeypatch):
    broker = Broker()

    def commit(self, offsets=None, timeout_ms=None):
        broker.attempts += 1
        if broker.refuse is not None:
            raise broker.refuse
        broker.committed.append(dict(offsets))

    monkeypatch.setattr(KafkaConsumer, "commit", commit)
    monkeypatch.setattr(KafkaConsumer, "poll", lambda self, timeout_ms=0, max_records=None, update_offsets=True: {})
    monkeypatch.setattr(KafkaConsumer, "assignment", lambda self: set(broker.owned))
    monkeypatch.setattr(KafkaConsumer, "paused", lambda self: set())
    consumer = GroupConsumer.__new__(GroupConsumer)  # no broker: only our logic is under test
    consumer._watch_broken = True
    return consumer, broker


@pytest.mark.parametrize("error", [RebalanceInProgressError("rebalancing"), IllegalGenerationError("old generation"),
                                   UnknownMemberIdError("unknown member")], ids=lambda e: type(e).__name__)
def test_the_sink_gives_a_commit_refused_for_a_rebalance_up_once_and_holds_it(member, error):
    consumer, broker = member
    broker.refuse = error
    sink = ElasticsearchSink(Settings())
    batch = [InMessage("t.enriched", 0, 41, b"k", b"{}")]
    done = threading.Event()
    # Retrying the refused commit with the partitions paused never let the group rejoin and wedged
    # the sink for good (issue #20, the broker-outage test's CI flake).
    worker = threading.Thread(target=lambda: (sink._settle(batch, Prepared([], [], {}), None, None, consumer,
                                                          threading.Event()), done.set()), daemon=True)
    worker.start()
    worker.join(10)
    sink.stop()
    assert done.is_set(), "the settle step kept retrying the refused commit"
    assert broker.attempts == 1
    assert consumer.held == {A: at(42)}


def test_held_offsets_are_committed_by_the_first_poll_that_finds_the_partitions_ours(member):
    consumer, broker = member
    consumer.hold({A: at(42), B: at(7)})
    consumer.hold({A: at(30)})  # an older offset never moves a held one back
    broker.refuse = RebalanceInProgressError("still rebalancing")
    consumer.poll(timeout_ms=10)
    assert consumer.held == {A: at(42), B: at(7)} and broker.committed == []
    broker.refuse, broker.owned = None, {A}  # B went to another member: its new owner reads it
    consumer.poll(timeout_ms=10)
    assert broker.committed == [{A: at(42)}]
    assert consumer.held == {B: at(7)}
    consumer.poll(timeout_ms=10)
    assert broker.committed == [{A: at(42)}], "a held offset is committed once"


def test_a_later_successful_commit_overtakes_a_held_offset(member):
    consumer, broker = member
    consumer.hold({A: at(42), B: at(7)})
    sink = ElasticsearchSink(Settings())
    sink._settle([InMessage("t.enriched", 0, 99, b"k", b"{}")], Prepared([], [], {}), None, None, consumer,
                 threading.Event())
    assert broker.committed == [{A: at(100)}]
    assert consumer.held == {B: at(7)}


@pytest.mark.parametrize("error", [RebalanceInProgressError("rebalancing"), KafkaTimeoutError("broker away")],
                         ids=lambda e: type(e).__name__)
def test_the_case_manager_and_privacy_worker_commits_are_held_too(member, error):
    consumer, broker = member
    broker.refuse = error
    assert commit_or_hold(consumer, {A: at(42)}, "case manager") is False
    assert consumer.held == {A: at(42)}
    broker.refuse = None
    consumer.poll(timeout_ms=10)
    assert broker.committed == [{A: at(42)}] and consumer.held == {}
