"""The at-least-once work-around for faust-streaming (pipeline/faust_fixes.py); the end-to-end
proof is tests/integration/test_alerting.py's SIGKILL restart (40 of 40 counted)."""

from types import SimpleNamespace

from faust.transport.consumer import Consumer

from stimmung.pipeline.faust_fixes import install


def fake_consumer(generation: int, flowing: bool):
    app = SimpleNamespace(consumer_generation_id=generation, flow_control=SimpleNamespace(is_active=lambda: flowing))
    return SimpleNamespace(app=app)


def test_a_message_from_another_generation_or_a_paused_flow_is_not_acknowledged():
    install()
    install()  # idempotent: wrapping twice would still work, but must not stack
    assert Consumer.ack._stimmung_fix
    assert Consumer.ack.__wrapped__.__name__ == "ack" and not getattr(Consumer.ack.__wrapped__, "_stimmung_fix", False)
    stale = SimpleNamespace(generation_id=3, acked=False)
    assert Consumer.ack(fake_consumer(generation=4, flowing=True), stale) is False
    assert stale.acked is False  # left for the re-fetch after the rebalance
    current = SimpleNamespace(generation_id=4, acked=False)
    assert Consumer.ack(fake_consumer(generation=4, flowing=False), current) is False
    assert current.acked is False
