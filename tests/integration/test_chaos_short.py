"""CI's short soak (issue #20): ``benchmarks/chaos.py --short`` on the session's stack — about
2,000 mentions and malformed lines of every kind, the import and two roles killed with SIGKILL,
Elasticsearch killed and back after 30 s — and the summary's verdict: every good mention indexed
exactly once, every bad line dead-lettered with its reason, every role alive and ready, lag zero,
alerts neither lost nor doubled."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from chaos import Options, Soak  # noqa: E402


def test_short_chaos_soak_loses_and_doubles_nothing(local_stack, tmp_path):
    opts = Options.short(work_dir=tmp_path / "chaos", seed=int(os.environ.get("STIMMUNG_TEST_CHAOS_SEED", 1)),
                         metrics_base_port=int(os.environ.get("STIMMUNG_TEST_CHAOS_METRICS_PORT", 29400)),
                         converge_timeout_s=300)
    soak = Soak(opts, stack=local_stack)
    try:
        summary = soak.run()
    finally:
        soak.close()
    print(json.dumps({k: summary[k] for k in ("indexed", "dead_letters", "lag", "roles", "alerts", "events",
                                              "duration_s", "failures")}, indent=1, default=str), file=sys.stderr)
    assert summary["failures"] == [], summary["failures"]
    assert summary["ok"]
    assert summary["indexed"]["distinct_ids"] == summary["indexed"]["expected"] == 2000
    assert summary["dead_letters"]["dead_lettered_lines"] == summary["workload"]["bad"]
    kills = [e for e in summary["events"] if e["kind"] == "SIGKILL" and e["target"] != "elasticsearch"]
    assert len(kills) == 3 and any(e["target"] == "elasticsearch" for e in summary["events"])
