"""A work-around for an at-least-once hole in faust-streaming 0.15.3 (our pinned version).

After a rebalance (a worker restarted, another joined or died), Faust's stream skips the
messages it had fetched for the old consumer generation, or while flow control is paused for
recovery — rightly: the partition is fetched again from the committed offset. But it also
*acknowledges* them (``streams.py``: ``do_ack or value is skipped_value``), which lets the
consumer commit past messages no agent ever saw. (Our alerting restart test, which lost 1-6 of
40 mentions after a restart, first pointed here; the cause proven later is the seek race below.)
Faust's tracker has the family of symptoms (faust-streaming#216, #221, #605).

The fix: the consumer refuses to record an acknowledgement for a message from another
generation. Such a message is simply fetched and processed again (at worst a duplicate, which
our idempotent ids make harmless), never lost. It used to refuse acknowledgements while flow
control was paused as well — but that is exactly when a rebalance's ``wait_empty`` waits for
the acknowledgements of the batch the agent is still finishing: the refused acks never came, and
a worker that saw a second worker join logged "wait_empty: Waiting for tasks" forever and stopped
enriching (issue #20). A message the agent processed is safe to acknowledge whatever the flow
state: its outputs are already acknowledged by Kafka. A message *skipped* while paused is
never acknowledged by the compiled iterator (below), and the seek fix puts every partition back
to its committed offset after the rebalance, so the losses the clause was added for stay fixed.
(Faust's compiled stream iterator, the one used when its Cython extension is installed as
here, inlines the acknowledgement instead of calling ``Consumer.ack`` and never acknowledges a
skipped message; this patch covers the pure-Python iterator and every other caller.)

Second hole, same family: when a rebalance completes, Faust resumes the stream partitions and
*then* seeks them to their committed offsets (``Recovery.on_recovery_completed``), with the flow
already running. Mentions fetched and handed to the agents while the seek was under way were
processed, the seek then put the read offset back under them, and the rest of that partition was
never delivered: after a SIGKILL restart the alerting fan-out handed on one to four mentions of a
partition and then nothing, the consumer's position at the partition's end and Faust's read offset
below what had been processed (seen in a task and state dump of the stuck worker). The fix: the
partitions being seeked are paused for the duration of the seek, so nothing is handed on while
positions move; they resume at their committed offsets.
"""

from __future__ import annotations

import functools


def install() -> None:
    from faust.transport.consumer import Consumer

    if getattr(Consumer.ack, "_stimmung_fix", False):
        return  # installed (both fixes) in this process already
    original = Consumer.ack

    @functools.wraps(original)
    def ack(self, message) -> bool:
        app = self.app
        if message.generation_id != app.consumer_generation_id:
            return False  # not processed in this generation: it will be fetched again
        return original(self, message)

    ack._stimmung_fix = True  # type: ignore[attr-defined]  # marks the patch as applied (idempotence)
    Consumer.ack = ack  # type: ignore[method-assign]  # the fix *is* replacing Faust's method

    original_seek = Consumer.perform_seek

    @functools.wraps(original_seek)
    async def perform_seek(self) -> None:
        moving = {tp for tp in self._get_active_partitions() if not self._is_changelog_tp(tp)}
        generation = self.app.consumer_generation_id
        self.pause_partitions(moving)
        try:
            await original_seek(self)
        finally:
            # A rebalance during the seek paused everything for its own recovery, which resumes
            # what the new assignment holds: resuming here would undo that.
            if self.app.consumer_generation_id == generation:
                self.resume_partitions(moving)

    perform_seek._stimmung_fix = True  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]

