"""The alert watermark rule (pipeline/alerts/watermark.py): the wall clock closes windows only when the
fan-out is idle and Kafka confirmed it caught up; the catch-up probe itself is tested against the
real broker in tests/integration/test_alerting.py."""

import logging
import time

from prometheus_client import REGISTRY

from stimmung.pipeline.alerts.watermark import FanOutProgress, HeldWindows, pick_watermark

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


def test_held_windows_show_as_delay_and_say_why(caplog):
    caplog.set_level(logging.DEBUG, logger="stimmung.pipeline.alerts.watermark")
    held = HeldWindows(window_s=60)  # warns beyond max(900 s, 3 windows)
    now = time.time()
    held.observe(now - 5, "mentions flowing")
    held.observe(now - 3, "caught up")
    # the normal rhythm of a live stream is not news at INFO
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    assert REGISTRY.get_sample_value("stimmung_alert_watermark_delay_seconds") < 60
    partitions = {"t.enriched[0]": {"committed": 3, "handed_on": 1, "end": 9}}
    held.observe(None, "backlog", partitions)
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.getMessage() for r in info] == ["alert watermark: backlog"]
    assert info[0].partitions == partitions, "the log says which partition holds the windows"
    held.last = now - 2000  # the watermark stuck for half an hour
    held.observe(None, "backlog", partitions)
    held.observe(None, "backlog", partitions)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].reason == "backlog", "warned once, with the reason"
    assert REGISTRY.get_sample_value("stimmung_alert_watermark_delay_seconds") >= 2000
    held.observe(time.time(), "caught up")
    assert caplog.records[-1].getMessage() == "alert windows close on time again"
    assert REGISTRY.get_sample_value("stimmung_alert_watermark_delay_seconds") < 60
