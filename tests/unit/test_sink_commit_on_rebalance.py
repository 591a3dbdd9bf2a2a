"""The sink's settle step: a commit refused because the group is rebalancing is not retried (the
batch is re-delivered, ids make that harmless). Retrying it with the partitions paused never let
the group rejoin and wedged the sink for good (issue #20, the broker-outage test's CI flake)."""

from __future__ import annotations

import threading

import pytest
from kafka.errors import IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError

from stimmung.config import Settings
from stimmung.pipeline.enrich import InMessage
from stimmung.pipeline.sink import ElasticsearchSink, Prepared


class RefusingConsumer:
    """Pure-logic stand-in: every commit is refused with ``error``; counts the attempts."""

    def __init__(self, error: Exception):
        self.error, self.commits = error, 0

    def commit(self, offsets):
        self.commits += 1
        raise self.error

    def paused(self):
        return set()


@pytest.mark.parametrize("error", [RebalanceInProgressError("rebalancing"), IllegalGenerationError("old generation"),
                                   UnknownMemberIdError("unknown member")], ids=lambda e: type(e).__name__)
def test_a_commit_refused_for_a_rebalance_is_given_up_once_not_retried(error):
    sink = ElasticsearchSink(Settings())
    consumer = RefusingConsumer(error)
    batch = [InMessage("t.enriched", 0, 41, b"k", b"{}")]
    done = threading.Event()
    worker = threading.Thread(target=lambda: (sink._settle(batch, Prepared([], [], {}), None, None, consumer,
                                                          threading.Event()), done.set()), daemon=True)
    worker.start()
    worker.join(10)
    sink.stop()  # a wedged settle would still be looping here
    assert done.is_set(), "the settle step kept retrying the refused commit"
    assert consumer.commits == 1
