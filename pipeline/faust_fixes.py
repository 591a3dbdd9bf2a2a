"""A work-around for an at-least-once hole in faust-streaming 0.15.3 (our pinned version).

After a rebalance (a worker restarted, another joined or died), Faust's stream skips the
messages it had fetched for the old consumer generation, or while flow control is paused for
recovery — rightly: the partition is fetched again from the committed offset. But it also
*acknowledges* them (``streams.py``: ``do_ack or value is skipped_value``), which lets the
consumer commit past messages no agent ever saw. Our alerting restart test lost 1-6 of 40
mentions this way (the first ~3 offsets of each partition after the restart never reached the
agent). Faust's tracker has the family of symptoms (faust-streaming#216, #221, #605).

The fix: the consumer refuses to record an acknowledgement for a message from another
generation or while flow control is paused. Such a message is simply fetched and processed
again (at worst a duplicate, which our idempotent ids make harmless), never lost.
"""

from __future__ import annotations

import functools


def install() -> None:
    from faust.transport.consumer import Consumer

    if getattr(Consumer.ack, "_stimmung_fix", False):
        return
    original = Consumer.ack

    @functools.wraps(original)
    def ack(self, message) -> bool:
        app = self.app
        if message.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
            return False  # not processed in this generation: it will be fetched again
        return original(self, message)

    ack._stimmung_fix = True
    Consumer.ack = ack
