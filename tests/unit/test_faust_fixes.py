"""The at-least-once work-arounds for faust-streaming (pipeline/faust_fixes.py); the end-to-end
proof is tests/integration/test_alerting.py's SIGKILL restart (40 of 40 counted).

The acknowledgement tests drive Faust's real stream iterators over a real channel with real
consumer messages (``ConsumerMessage``, whose final ack goes through ``Consumer.ack`` as a
Kafka-fed one does): the compiled iterator the worker runs here, and the pure-Python one that
runs without the Cython extension (``NO_CYTHON``), which is where the fix does the work.
"""

import asyncio
from types import SimpleNamespace

import faust
import faust.streams
import pytest
from faust.events import Event
from faust.transport.consumer import Consumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from stimmung.pipeline.faust_fixes import install


def stale_then_current(iterate: str) -> tuple[bytes, bool, bool]:
    """Put a message of the previous consumer generation, then one of the current, on a stream;
    take the first value (``iterate``: "c" compiled or "py" pure-Python iterator), let the
    iterator go on to the next, and say whether each message was acknowledged."""

    def message(generation: int, offset: int) -> ConsumerMessage:
        return ConsumerMessage(topic="enriched", partition=0, offset=offset, timestamp=0.0, timestamp_type=0,
                               headers=[], key=b"k", value=f"offset {offset}".encode(), checksum=None,
                               generation_id=generation)

    async def scenario():
        app = faust.App("stimmung-faust-fix-test", broker="kafka://127.0.0.1:1", store="memory://")
        app.consumer_generation_id = 4  # a rebalance happened: generation 3's fetches are stale
        app.flow_control.resume()
        channel = app.channel()
        stream = app.stream(channel)  # before the puts: the stream reads a clone of the channel
        stale, current = message(3, 1), message(4, 2)
        for m in (stale, current):
            await channel.put(Event(app, m.key, m.value, m.headers, m))
        values = stream._c_aiter() if iterate == "c" else stream._py_aiter()
        first = await values.__anext__()
        going_on = asyncio.ensure_future(values.__anext__())  # acks the value handed out, waits for more
        await asyncio.sleep(0.05)
        going_on.cancel()
        return first, stale.acked, current.acked

    return asyncio.run(scenario())


def test_install_is_idempotent():
    install()
    install()  # wrapping twice would still work, but must not stack
    assert Consumer.ack._stimmung_fix
    assert Consumer.ack.__wrapped__.__name__ == "ack" and not getattr(Consumer.ack.__wrapped__, "_stimmung_fix", False)


def test_the_compiled_iterator_the_worker_runs_never_acknowledges_a_stale_message():
    # The path that runs: with the extension installed `async for` takes the compiled iterator,
    # which inlines the acknowledgement (so it never calls Consumer.ack) and skips a stale message
    # without one. Should a Faust upgrade change that, this fails.
    assert faust.streams._CStreamIterator is not None, "the Cython extension is not installed: the pure-Python path runs"
    install()
    assert stale_then_current("c") == (b"offset 2", False, True)


def test_the_pure_python_iterator_acknowledges_a_stale_message_unless_fixed(monkeypatch):
    install()
    assert stale_then_current("py") == (b"offset 2", False, True)
    # the hole the fix closes: Faust's own Consumer.ack records the skipped message as processed
    monkeypatch.setattr(Consumer, "ack", Consumer.ack.__wrapped__)
    assert stale_then_current("py") == (b"offset 2", True, True)


def fake_consumer(generation: int, flowing: bool):
    app = SimpleNamespace(consumer_generation_id=generation, flow_control=SimpleNamespace(is_active=lambda: flowing))
    return SimpleNamespace(app=app)


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
