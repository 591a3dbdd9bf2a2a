"""When may complaint-alert windows close? The alerting worker's watermark.

Windows are in event time. While mentions flow, or while there is a backlog (after a restart, an
outage, a rebalance), the watermark is the newest creation time the fan-out has handed on: the
backlog is counted in full before its windows close. Only when the fan-out has *positively* caught
up with every enriched partition this worker holds does the wall clock close windows (quiet
brands still get theirs closed, empty windows included).

"Caught up" is asked of Kafka, not inferred from what this process happens to have seen: right
after a restart the fan-out has seen nothing yet, and a rule that judged only the partitions it had
seen took "nothing seen" for "nothing to read" — on a slow machine the wall clock then closed the
current window before the backlog was read, and its mentions were dropped as late (the alert never
came). A partition is caught up when the group's commit has reached its end, or the fan-out has
handed on its last message (commits trail by a few seconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from stimmung.config import KafkaSettings
from stimmung.lag import committed_positions, group_reader
from stimmung.metrics import ALERT_WATERMARK_DELAY

log = logging.getLogger(__name__)


@dataclass
class FanOutProgress:
    """What the fan-out has handed on (its counts acknowledged on the counts topic)."""

    idle_s: float
    max_t: float = 0.0  # newest creation time handed on
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # last offset handed on per partition
    active_at: float = field(default_factory=time.monotonic)

    def handed_on(self, topic: str, partition: int, offset: int, created: float | None) -> None:
        if created is not None:
            self.max_t = max(self.max_t, created)
        self.offsets[(topic, partition)] = offset
        self.active_at = time.monotonic()

    def rebalanced(self) -> None:
        """A rebalance ended: give the new assignment's backlog time to show as activity."""
        self.active_at = time.monotonic()

    def busy(self) -> bool:
        return time.monotonic() - self.active_at < self.idle_s


def pick_watermark(now: float, *, rebalancing: bool, busy: bool, caught_up: bool | None,
                   max_t: float) -> tuple[float | None, str]:
    """(watermark or None for "do not close windows now", why). ``caught_up`` is None when it was
    not asked (busy) or could not be asked (Kafka unreachable)."""
    if rebalancing:
        return None, "rebalancing"
    if busy or not caught_up:
        reason = "mentions flowing" if busy else ("backlog" if caught_up is False else "catch-up unknown")
        return (min(now, max_t) if max_t else None), reason
    return now, "caught up"


class HeldWindows:
    """Makes a watermark that trails the wall clock visible: the delay as a gauge (alerts arrive that
    much later than their window ends; a rule pages when it keeps growing) and one log line when
    it crosses a few windows, one when it recovers."""

    def __init__(self, window_s: float):
        self.threshold_s = max(900.0, 3 * window_s)
        self.last: float | None = None
        self.started = time.time()
        self.warned = False
        self.reason: str | None = None

    def observe(self, tick: float | None, reason: str, partitions: dict[str, Any] | None = None) -> None:
        now = time.time()
        if tick is not None:
            self.last = tick if self.last is None else max(self.last, tick)
        delay = now - (self.last if self.last is not None else self.started)
        ALERT_WATERMARK_DELAY.set(max(0.0, delay))
        if reason != self.reason:
            # "mentions flowing" <-> "caught up" is the normal rhythm of a live stream: debug only
            quiet = {reason, self.reason} <= {"mentions flowing", "caught up", None}
            log.log(logging.DEBUG if quiet else logging.INFO, "alert watermark: " + reason,
                    extra={"delay_s": round(delay), "partitions": partitions or {}})
            self.reason = reason
        if delay > self.threshold_s and not self.warned:
            self.warned = True
            log.warning("alert windows are held: alerts come late",
                        extra={"delay_s": round(delay), "reason": reason, "partitions": partitions or {}})
        elif delay <= self.threshold_s and self.warned:
            self.warned = False
            log.info("alert windows close on time again", extra={"delay_s": round(delay)})


class CatchUpProbe:
    """Asks Kafka whether the fan-out has read every assigned enriched partition to its end.

    kafka-python clients are not thread-safe: one long-lived reader used from one thread.
    """

    def __init__(self, settings: KafkaSettings, group: str):
        self.settings, self.group = settings, group
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catch-up")
        self._reader = None
        # What the last answer was made of, per partition: logged when windows are held.
        self.last_detail: dict[str, dict[str, int]] = {}

    def _check(self, partitions: list[tuple[str, int]], handed: dict[tuple[str, int], int]) -> bool:
        if self._reader is None:
            self._reader = group_reader(self.settings, self.group, "catch-up")
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        detail, behind = {}, False
        for tp, (position, end) in committed_positions(self._reader, tps).items():
            last = handed.get((tp.topic, tp.partition), -1)
            detail[f"{tp.topic}[{tp.partition}]"] = {"committed": position, "handed_on": last, "end": end}
            behind = behind or (position < end and last < end - 1)
        self.last_detail = detail
        return not behind

    async def caught_up(self, partitions: list[tuple[str, int]], handed: dict[tuple[str, int], int]) -> bool | None:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._check, partitions, dict(handed))
        except Exception as err:  # noqa: BLE001 - unknown: hold the windows, never guess
            log.warning("alerting could not ask Kafka whether it is caught up; windows stay open",
                        extra={"error": str(err)[:300]})
            self._close_reader()
            return None

    def _close_reader(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close(autocommit=False)
            except Exception:  # noqa: BLE001 - a broken client is replaced anyway
                pass
            self._reader = None

    def close(self) -> None:
        self._executor.submit(self._close_reader)
        self._executor.shutdown(wait=False)
