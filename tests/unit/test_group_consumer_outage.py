"""A group consumer's poll rides out a broker that goes away (kafka-python 3 can raise a connection
error out of poll while it looks for the coordinator): the role waits, unready, instead of ending."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from stimmung.config import KafkaSettings
from stimmung.health import HEALTH
from stimmung.kafka import GroupConsumer, KafkaWait


@pytest.fixture
def consumer(monkeypatch):
    outcomes: list = []

    def fake_poll(self, timeout_ms=0, max_records=None, update_offsets=True):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(KafkaConsumer, "poll", fake_poll)
    member = GroupConsumer.__new__(GroupConsumer)  # no broker: only poll's own logic is under test
    member._watch_broken = True
    member.outage = KafkaWait(KafkaSettings(), "test consumer", cap_s=0.2)
    return member, outcomes


def test_an_unreachable_broker_during_poll_waits_unready_then_recovers(consumer):
    member, outcomes = consumer
    HEALTH.set_ready("kafka", True, "consumer subscribed")
    outcomes += [KafkaConnectionError("111 ECONNREFUSED"), KafkaTimeoutError("coordinator"), {"tp": ["record"]}]
    assert member.poll(timeout_ms=10) == {}
    assert HEALTH.checks["kafka"][0] is False and "KafkaConnectionError" in HEALTH.checks["kafka"][1]
    assert member.poll(timeout_ms=10) == {}
    assert HEALTH.checks["kafka"][0] is False
    assert member.poll(timeout_ms=10) == {"tp": ["record"]}
    assert HEALTH.checks["kafka"][0] is True and member.outage.reason is None


def test_a_stop_request_during_the_wait_returns_at_once(consumer):
    member, outcomes = consumer
    member.outage = KafkaWait(KafkaSettings(), "test consumer", should_stop=lambda: True, cap_s=30.0)
    outcomes.append(KafkaConnectionError("gone"))
    assert member.poll(timeout_ms=10) == {}


def test_other_errors_and_consumers_without_an_outage_policy_still_raise(consumer):
    member, outcomes = consumer
    outcomes.append(ValueError("a bug, not an outage"))
    with pytest.raises(ValueError):
        member.poll()
    member.outage = None
    outcomes.append(KafkaConnectionError("gone"))
    with pytest.raises(KafkaConnectionError):
        member.poll()
