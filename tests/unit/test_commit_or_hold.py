"""A commit refused because the group is rebalancing (or the broker is away) must not end a role:
the case manager died of exactly that in the chaos soak (issue #20). The consumer here is a stand-in
whose commit raises what kafka-python raises; the behaviour under test is ours."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import CommitFailedError, KafkaTimeoutError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata, TopicPartition

from stimmung.kafka import commit_or_hold

OFFSETS = {TopicPartition("stimmung.enriched", 0): OffsetAndMetadata(42, "", -1)}


class Consumer:
    def __init__(self, error: Exception | None = None):
        self.error = error
        self.committed: list[dict] = []
        self.held: list[dict] = []

    def commit(self, offsets):
        if self.error is not None:
            raise self.error
        self.committed.append(offsets)

    def hold(self, offsets):
        self.held.append(offsets)


def test_a_commit_that_goes_through_is_reported():
    consumer = Consumer()
    assert commit_or_hold(consumer, OFFSETS, "case manager") is True
    assert consumer.committed == [OFFSETS] and consumer.held == []


@pytest.mark.parametrize("error", [RebalanceInProgressError("rebalancing"), CommitFailedError("revoked"),
                                   KafkaTimeoutError("broker away")])
def test_a_refused_commit_is_held_with_one_warning(error, caplog):
    consumer = Consumer(error)
    with caplog.at_level(logging.WARNING, logger="stimmung.kafka"):
        assert commit_or_hold(consumer, OFFSETS, "case manager") is False
    assert consumer.held == [OFFSETS]
    (record,) = [r for r in caplog.records if r.name == "stimmung.kafka"]
    assert "case manager: commit refused; offsets held" in record.getMessage() and type(error).__name__ in record.error


def test_other_errors_still_end_the_role():
    with pytest.raises(ValueError):
        commit_or_hold(Consumer(ValueError("a bug, not an outage")), OFFSETS, "case manager")
