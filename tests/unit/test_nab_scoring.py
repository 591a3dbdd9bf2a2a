"""The NAB replay and scoring behind ``benchmarks/spikes.py --nab`` (issue #18): windows hit, pages
outside the labelled windows per series-week, delays, NAB's standard-profile score, probation and
the leave-one-series-out pick. Small hand-made series with figures worked out by hand."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import spikes_nab  # noqa: E402

STEP = 300
START = datetime(2015, 3, 2, tzinfo=timezone.utc)
ROWS = 1000  # probation: the first 150 rows
WINDOW = (400, 449)  # a labelled window of 50 rows


def stamp(row: int) -> str:
    return (START + timedelta(seconds=STEP * row)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def series_dir(tmp_path: Path) -> Path:
    with (tmp_path / "Twitter_volume_ACME.csv").open("w") as fh:
        fh.write("timestamp,value\n" + "".join(f"{stamp(i)},{10 + i % 3}\n" for i in range(ROWS)))
    (tmp_path / "windows.json").write_text(json.dumps(
        {"realTweets/Twitter_volume_ACME.csv": [[stamp(WINDOW[0]) + ".000000", stamp(WINDOW[1]) + ".000000"]]}))
    return tmp_path


@pytest.fixture
def series(series_dir: Path) -> spikes_nab.Series:
    [loaded] = spikes_nab.load(series_dir)
    return loaded


def sigmoid(pos: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * pos)) - 1.0


def test_load_reads_counts_windows_and_probation(series):
    assert series.name == "ACME" and len(series.counts) == ROWS and series.counts[:3] == [10, 11, 12]
    assert series.windows == [(series.times[WINDOW[0]], series.times[WINDOW[1]])]
    assert series.probation == 150


def test_a_page_at_the_window_start_is_a_perfect_score(series):
    row = spikes_nab.score(series, [WINDOW[0]])
    assert (row["hit"], row["windows"], row["outside"]) == (1, 1, 0)
    assert row["delays_min"] == [5.0]  # the alert exists at the end of its 5-minute window
    assert row["from_label_min"] == [5.0 - (WINDOW[1] - WINDOW[0]) * STEP / 60 / 2]
    assert spikes_nab.summarise([row])["nab_score"] == pytest.approx(100.0)


def test_no_page_scores_the_null_detector_and_probation_pages_are_ignored(series):
    for paged in ([], [20, 149]):
        row = spikes_nab.score(series, paged)
        assert (row["hit"], row["outside"], row["pages"]) == (0, 0, 0)
        assert spikes_nab.summarise([row])["nab_score"] == pytest.approx(0.0)


def test_a_later_detection_earns_less(series):
    early, late = (spikes_nab.summarise([spikes_nab.score(series, [r])])["nab_score"] for r in (405, 440))
    assert early > late > 0
    # NAB's scaled sigmoid: position -(hi - i + 1) / width, normalised by the score at -1
    expected_raw = sigmoid(-(WINDOW[1] - 440 + 1) / 50) / sigmoid(-1.0)
    assert late == pytest.approx(100 * (expected_raw + 1) / 2)


def test_pages_outside_windows_are_counted_per_series_week_and_cost_the_score(series):
    row = spikes_nab.score(series, [WINDOW[0], 600, 900])
    weeks = (ROWS - 1 - 150) * STEP / spikes_nab.WEEK_S
    assert row["outside"] == 2 and row["pages"] == 3
    assert row["outside_per_week"] == pytest.approx(2 / weeks)
    # both false positives are far after the window: -1 x 0.11 each
    assert spikes_nab.summarise([row])["nab_score"] == pytest.approx(100 * (1.0 - 0.22 + 1) / 2)


def test_replay_round_trips_the_state_and_counts_fired_and_escalated(series):
    class Detector:
        def observe(self, state, t, n, name):
            state["seen"] = state.get("seen", 0) + 1
            event = {410: "fired", 420: "escalated", 430: "open", 440: "resolved"}.get(state["seen"] - 1)
            return SimpleNamespace(event=event)

    assert spikes_nab.replay(lambda: (Detector(), {}), series) == [410, 420]


def test_leave_one_out_scores_each_series_with_the_setting_best_on_the_others():
    def rows(hits):
        return [{"series": s, "windows": 1, "hit": h, "outside": 0, "weeks": 1.0, "outside_per_week": 0.0,
                 "pages": h, "delays_min": [5.0] * h, "from_label_min": [0.0] * h, "nab_raw": 0.0, "nab_windows": 1}
                for s, h in zip("ABC", hits)]

    # "a" wins on B and C, so it scores A although "b" would be better on A alone
    held, picks = spikes_nab.leave_one_out({"a": rows([0, 1, 1]), "b": rows([1, 0, 0])})
    assert picks == [("A", "a"), ("B", "a"), ("C", "a")]
    assert [r["hit"] for r in held] == [0, 1, 1]


def test_malformed_series_are_refused(series_dir):
    (series_dir / "windows.json").write_text(json.dumps({"realTweets/Twitter_volume_GONE.csv": []}))
    with pytest.raises(SystemExit, match="missing"):
        spikes_nab.load(series_dir)
    lines = (series_dir / "Twitter_volume_ACME.csv").read_text().splitlines()
    (series_dir / "Twitter_volume_ACME.csv").write_text("\n".join(lines[:10] + lines[11:]) + "\n")
    (series_dir / "windows.json").write_text(json.dumps({"realTweets/Twitter_volume_ACME.csv": []}))
    with pytest.raises(SystemExit, match="irregular"):
        spikes_nab.load(series_dir)
