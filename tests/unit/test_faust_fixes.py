"""The at-least-once work-around for faust-streaming (pipeline/faust_fixes.py); the end-to-end
proof is tests/integration/test_alerting.py's SIGKILL restart (40 of 40 counted)."""

import asyncio
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP

from stimmung.pipeline.faust_fixes import install


def fake_consumer(generation: int, flowing: bool):
    app = SimpleNamespace(consumer_generation_id=generation, flow_control=SimpleNamespace(is_active=lambda: flowing))
    return SimpleNamespace(app=app)


def test_a_message_from_another_generation_is_not_acknowledged():
    install()
    install()  # idempotent: wrapping twice would still work, but must not stack
    assert Consumer.ack._stimmung_fix
    assert Consumer.ack.__wrapped__.__name__ == "ack" and not getattr(Consumer.ack.__wrapped__, "_stimmung_fix", False)
    stale = SimpleNamespace(generation_id=3, acked=False)
    assert Consumer.ack(fake_consumer(generation=4, flowing=True), stale) is False
    assert stale.acked is False  # left for the re-fetch after the rebalance


class InFlight:
    """A message the agent was still processing when the rebalance paused the flow."""

    def __init__(self, generation_id: int, offset: int):
        self.generation_id, self.offset, self.acked = generation_id, offset, False
        self.topic, self.tp = "raw", TP("raw", 0)


def test_a_processed_message_is_acknowledged_while_the_flow_is_paused_so_wait_empty_ends():
    """Faust's rebalance pauses the flow, then waits (``wait_empty``) until the in-flight
    messages are acknowledged; refusing their acks while paused wedged the worker for good."""
    from collections import defaultdict

    install()
    message = InFlight(generation_id=4, offset=5)
    consumer = fake_consumer(generation=4, flowing=False)
    consumer.app.topics = SimpleNamespace(acks_enabled_for=lambda topic: True)
    consumer._committed_offset, consumer._acked_index = defaultdict(lambda: None), defaultdict(set)
    consumer._acked, consumer._n_acked, consumer._unacked_messages = defaultdict(list), 0, {message}
    consumer._waiting_for_ack = None
    assert Consumer.ack(consumer, message) is True
    assert message.acked and consumer._unacked_messages == set()  # what wait_empty waits for
    assert consumer._acked[TP("raw", 0)] == [5]


class SeekingConsumer:
    """The parts of faust's Consumer that ``perform_seek`` and the fix touch."""

    def __init__(self, streams, changelogs, committed):
        self.app = SimpleNamespace(consumer_generation_id=7)
        self.active, self.paused = set(streams) | set(changelogs), set()
        self.changelogs, self.committed = set(changelogs), committed
        self._read_offset, self._committed_offset = {}, {}
        self.active_while_seeking = None

    def _get_active_partitions(self):
        return self.active

    def _is_changelog_tp(self, tp):
        return tp in self.changelogs

    def pause_partitions(self, tps):
        self.active -= set(tps)
        self.paused |= set(tps)

    def resume_partitions(self, tps):
        self.active |= set(tps)
        self.paused -= set(tps)

    async def seek_to_committed(self):
        self.active_while_seeking = set(self.active)
        return dict(self.committed)


def test_nothing_is_delivered_from_a_partition_while_it_is_being_seeked():
    install()
    e0, e1, changelog = TP("enriched", 0), TP("enriched", 1), TP("series-changelog", 0)
    consumer = SeekingConsumer(streams={e0, e1}, changelogs={changelog}, committed={e0: 26, e1: 24})
    asyncio.run(Consumer.perform_seek(consumer))
    # the stream partitions were not handed out while their positions moved ...
    assert consumer.active_while_seeking == {changelog}
    # ... and afterwards they read on from their committed offsets
    assert consumer.active == {e0, e1, changelog} and not consumer.paused
    assert consumer._read_offset == {e0: 26, e1: 24}


def test_a_failed_seek_leaves_no_partition_paused():
    class Broken(SeekingConsumer):
        async def seek_to_committed(self):
            raise RuntimeError("coordinator gone")

    install()
    consumer = Broken(streams={TP("enriched", 0)}, changelogs=set(), committed={})
    with pytest.raises(RuntimeError):
        asyncio.run(Consumer.perform_seek(consumer))
    assert consumer.active == {TP("enriched", 0)} and not consumer.paused


def test_a_rebalance_during_the_seek_keeps_its_own_pauses():
    class Rebalanced(SeekingConsumer):
        async def seek_to_committed(self):
            self.app.consumer_generation_id += 1  # a new assignment arrived meanwhile ...
            self.pause_partitions(set(self.active))  # ... and paused everything for its recovery
            return {}

    install()
    consumer = Rebalanced(streams={TP("enriched", 0)}, changelogs=set(), committed={})
    asyncio.run(Consumer.perform_seek(consumer))
    assert consumer.paused == {TP("enriched", 0)} and not consumer.active, "the new generation resumes them, not us"
