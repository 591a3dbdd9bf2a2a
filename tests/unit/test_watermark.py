"""The alert watermark rule (pipeline/watermark.py): the wall clock closes windows only when the
fan-out is idle and Kafka confirmed it caught up; the catch-up probe itself is tested against the
real broker in tests/integration/test_alerting.py."""

import time

from stimmung.pipeline.watermark import FanOutProgress, pick_watermark

NOW = 1_800_000_000.0


def test_no_window_closes_during_a_rebalance():
    assert pick_watermark(NOW, rebalancing=True, busy=False, caught_up=True, max_t=NOW - 5) == (None, "rebalancing")


def test_the_wall_clock_only_once_caught_up_and_idle():
    assert pick_watermark(NOW, rebalancing=False, busy=False, caught_up=True, max_t=NOW - 500) == (NOW, "caught up")


def test_a_backlog_closes_windows_by_what_was_handed_on():
    assert pick_watermark(NOW, rebalancing=False, busy=False, caught_up=False, max_t=NOW - 500) == (NOW - 500, "backlog")
    assert pick_watermark(NOW, rebalancing=False, busy=True, caught_up=None, max_t=NOW - 2) == (NOW - 2, "mentions flowing")
    # a mention from the future (clock skew) never moves the watermark past the wall clock
    assert pick_watermark(NOW, rebalancing=False, busy=True, caught_up=None, max_t=NOW + 60)[0] == NOW


def test_right_after_a_restart_nothing_seen_is_not_nothing_to_read():
    # The CI failure this rule fixes: after a restart the fan-out had handed on nothing yet; taking
    # that for "caught up" let the wall clock close the current window before its backlog was read.
    assert pick_watermark(NOW, rebalancing=False, busy=False, caught_up=False, max_t=0.0) == (None, "backlog")
    assert pick_watermark(NOW, rebalancing=False, busy=False, caught_up=None, max_t=0.0) == (None, "catch-up unknown")


def test_progress_tracks_the_newest_creation_time_and_activity():
    progress = FanOutProgress(idle_s=0.05)
    assert progress.busy()  # a fresh start counts as activity: the backlog shows up shortly
    time.sleep(0.06)
    assert not progress.busy()
    progress.handed_on("enriched", 1, 7, NOW - 30)
    progress.handed_on("enriched", 1, 8, NOW - 90)  # older mention, later offset
    progress.handed_on("enriched", 0, 3, None)  # malformed: offset handed on, no time
    assert progress.busy() and progress.max_t == NOW - 30
    assert progress.offsets == {("enriched", 1): 8, ("enriched", 0): 3}
    time.sleep(0.06)
    progress.rebalanced()
    assert progress.busy()
