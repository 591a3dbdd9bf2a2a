"""Spike detector evaluation on a simulated month of complaint counts.

    ./run stimmung ... (inside the environment):  python benchmarks/spikes.py [--days 30] [--seed 7]

Per brand, one count series of complaints per 5-minute window over ``--days`` days: a daily
profile (quiet nights, busy evenings), a weekly one (quieter weekends), overdispersed noise
(negative binomial, variance = mean + mean²/10), brands from 0.3 to 120 complaints per window.
Spikes are injected after the one-day warm-up: 2×, 3×, 5× and 10× the expected volume for 15, 30,
60 and 120 minutes, at random times at least six hours apart.

Prints, for our detector (``pipeline/spikes.py``, preset ``medium``) and, in the same run, for
a baseline modelled on ElastAlert's spike rule (current 15 minutes ≥ 3× the previous 15
minutes, at least 5 events, re-alert after 30 minutes): recall per spike size and duration,
false alerts per brand per week, and the detection delay in windows after the spike started.
Targets: recall ≥ 0.9 for spikes ≥ 3× lasting ≥ 15 min, ≤ 1 false alert per brand per week,
detection within one window.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from stimmung.pipeline.alerts.spikes import DetectorConfig, SpikeDetector

WINDOW_S = 300
PER_DAY = 86400 // WINDOW_S
START = 1762732800  # Monday 2025-11-10 00:00 UTC
VOLUMES = [0.3, 0.5, 1, 1.5, 2, 3, 5, 8, 15, 30, 60, 120]  # mean complaints per window
SIZES = [2, 3, 5, 10]
DURATIONS_MIN = [15, 30, 60, 120]
DISPERSION_K = 10.0
WARMUP_DAYS = 7  # the detector's default warm-up: one weekly cycle


@dataclass
class Spike:
    start: int  # window index
    windows: int
    size: float


def profile(i: int) -> float:
    hour = (i % PER_DAY) * WINDOW_S / 3600
    daily = 1.0 + 0.6 * math.sin((hour - 10) / 24 * 2 * math.pi) - 0.25 * math.cos(hour / 24 * 4 * math.pi)
    weekday = (i // PER_DAY) % 7
    return max(0.15, daily) * (0.7 if weekday >= 5 else 1.05)


def simulate(volume: float, days: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Spike]]:
    n = days * PER_DAY
    means = np.array([volume * profile(i) for i in range(n)])
    spikes: list[Spike] = []
    t = WARMUP_DAYS * PER_DAY + int(rng.integers(0, PER_DAY))
    k = 0
    while True:
        dur = DURATIONS_MIN[k % len(DURATIONS_MIN)] * 60 // WINDOW_S
        size = SIZES[(k // len(DURATIONS_MIN)) % len(SIZES)]
        if t + dur >= n - 4:
            break
        spikes.append(Spike(t, dur, size))
        means[t:t + dur] *= size
        t += dur + 6 * 3600 // WINDOW_S + int(rng.integers(0, 12 * 3600 // WINDOW_S))
        k += 1
    p = DISPERSION_K / (DISPERSION_K + means)
    counts = rng.negative_binomial(DISPERSION_K, p)
    return counts, spikes


def run_detector(counts: np.ndarray, config: DetectorConfig) -> list[int]:
    """Window indices at which an incident fired."""
    detector, state, fired = SpikeDetector(config), SpikeDetector.new_state(), []
    for i, x in enumerate(counts):
        verdict = detector.observe(state, START + i * WINDOW_S, int(x), "s")
        if verdict.event == "fired":
            fired.append(i)
    return fired


def run_elastalert_like(counts: np.ndarray, timeframe: int = 3, height: float = 3.0, min_cur: int = 5,
                        realert_windows: int = 6) -> list[int]:
    fired, muted_until = [], -1
    for i in range(2 * timeframe, len(counts)):
        cur, ref = counts[i - timeframe + 1:i + 1].sum(), counts[i - 2 * timeframe + 1:i - timeframe + 1].sum()
        if cur >= min_cur and cur >= height * ref and ref > 0 and i > muted_until:
            fired.append(i)
            muted_until = i + realert_windows
    return fired


def score(fired: list[int], spikes: list[Spike]) -> tuple[dict, int, list[int]]:
    """(detections per (size, duration, volume class), false alerts, delays in windows)."""
    found: dict[tuple, list[bool]] = defaultdict(list)
    delays, matched = [], set()
    for s in spikes:
        hits = [f for f in fired if s.start <= f <= s.start + s.windows]
        found[(s.size, s.windows * WINDOW_S // 60)].append(bool(hits))
        if hits:
            delays.append(hits[0] - s.start)
        matched.update(f for f in fired if s.start <= f <= s.start + s.windows + 3)
    return found, len([f for f in fired if f not in matched]), delays


def evaluate(name: str, detect, series: list[tuple[float, np.ndarray, list[Spike]]], days: int) -> dict:
    started = time.perf_counter()
    found_all: dict[tuple, list[bool]] = defaultdict(list)
    by_volume: dict[float, list[bool]] = defaultdict(list)
    false_alerts, delays = 0, []
    false_by_volume: dict[float, int] = defaultdict(int)
    for volume, counts, spikes in series:
        found, false, d = score(detect(counts), spikes)
        for key, hits in found.items():
            found_all[key] += hits
            if key[0] >= 3:
                by_volume[volume] += hits
        false_alerts += false
        false_by_volume[volume] += false
        delays += d
    weeks = days / 7 * len(series)
    target = [h for (size, _), hits in found_all.items() if size >= 3 for h in hits]
    busy = [h for v, hits in by_volume.items() if v >= 2 for h in hits]
    return {"name": name, "found": found_all, "by_volume": by_volume, "recall_target": sum(target) / len(target),
            "recall_busy": sum(busy) / len(busy),
            "false_per_brand_week": false_alerts / weeks, "false_by_volume": false_by_volume, "weeks_per_brand": days / 7,
            "delay_p50": float(np.median(delays)) if delays else float("nan"),
            "delay_p90": float(np.percentile(delays, 90)) if delays else float("nan"),
            "within_one_window": sum(1 for d in delays if d <= 1) / len(delays) if delays else 0.0,
            "seconds": time.perf_counter() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=37, help="7 of them are the detector's warm-up")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sensitivity", default="medium", choices=["low", "medium", "high"])
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    series = []
    for volume in VOLUMES:
        counts, spikes = simulate(volume, args.days, rng)
        series.append((volume, counts, spikes))
    config = DetectorConfig.preset(args.sensitivity)
    results = [evaluate(f"ours ({args.sensitivity})", lambda c: run_detector(c, config), series, args.days),
               evaluate("ElastAlert-like spike rule", run_elastalert_like, series, args.days)]
    n_spikes = sum(len(s) for _, _, s in series)
    print(f"## spikes.py — spike detector ({time.strftime('%Y-%m-%d')})\n")
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}. Simulated {args.days} days × "
          f"{len(VOLUMES)} brands ({min(VOLUMES)}–{max(VOLUMES)} complaints per 5-min window on average), "
          f"{n_spikes} injected spikes, seed {args.seed}.\n")
    print("| detector | recall, spikes ≥ 3× ≥ 15 min | same, brands ≥ 2 per window | false alerts per brand per week | "
          "delay p50 / p90 (windows) | detected within one window |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['name']} | {r['recall_target']:.3f} | {r['recall_busy']:.3f} | {r['false_per_brand_week']:.2f} | "
              f"{r['delay_p50']:.0f} / {r['delay_p90']:.0f} | {r['within_one_window']:.2f} |")
    for r in results:
        print(f"\nRecall by spike size × duration — {r['name']}:\n")
        print("| size | " + " | ".join(f"{d} min" for d in DURATIONS_MIN) + " |")
        print("| --- | " + " | ".join("---" for _ in DURATIONS_MIN) + " |")
        for size in SIZES:
            cells = []
            for d in DURATIONS_MIN:
                hits = r["found"].get((size, d), [])
                cells.append(f"{sum(hits)}/{len(hits)}" if hits else "–")
            print(f"| {size}× | " + " | ".join(cells) + " |")
        print("\nBy brand volume (spikes ≥ 3×; false alerts over the whole run):\n")
        print("| complaints per window | recall | false alerts |")
        print("| --- | --- | --- |")
        for volume in VOLUMES:
            hits = r["by_volume"][volume]
            print(f"| {volume} | {sum(hits)}/{len(hits)} | {r['false_by_volume'][volume]} |")
    print(f"\n(detector time: {results[0]['seconds']:.1f} s for {args.days * PER_DAY * len(VOLUMES):,} windows)")


if __name__ == "__main__":
    main()
