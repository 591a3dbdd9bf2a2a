"""Liveness and readiness for Kubernetes probes, served next to ``/metrics`` on the metrics port.

- ``/healthz`` (liveness): every loop the component registered has beaten within its
  ``stale_after_s``. A loop that stops beating is stuck (a blocked event loop, a dead thread):
  Kubernetes should restart the pod. Beats prove the loop runs, not that data flows, so a quiet
  source or an Elasticsearch outage never gets a healthy pod killed.
- ``/readyz`` (readiness): every named check the component set is currently true (e.g.
  "Elasticsearch answers", "Kafka producer connected", "partitions assigned"). Failing names
  are listed in the answer, so ``kubectl describe`` says why.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Health:
    beats: dict[str, tuple[float, float]] = field(default_factory=dict)  # loop -> (last beat, stale after)
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)  # check -> (ok, detail)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def beat(self, loop: str, stale_after_s: float = 120.0) -> None:
        with self.lock:
            self.beats[loop] = (time.monotonic(), stale_after_s)

    def set_ready(self, check: str, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.checks[check] = (ok, detail)

    def liveness(self) -> tuple[bool, dict]:
        now = time.monotonic()
        with self.lock:
            loops = {name: {"seconds_since_beat": round(now - last, 1), "stale_after_s": stale,
                            "ok": now - last <= stale} for name, (last, stale) in self.beats.items()}
        return all(v["ok"] for v in loops.values()), {"loops": loops}

    def readiness(self) -> tuple[bool, dict]:
        with self.lock:
            checks = {name: {"ok": ok, **({"detail": detail} if detail else {})} for name, (ok, detail) in self.checks.items()}
        # Nothing registered yet = still starting: not ready.
        return bool(checks) and all(c["ok"] for c in checks.values()), {"checks": checks}


HEALTH = Health()


async def beat_forever(loop: str, interval_s: float = 5.0, stale_after_s: float = 60.0) -> None:
    """Beats from an asyncio task: proves the event loop is not blocked."""
    import asyncio

    while True:
        HEALTH.beat(loop, stale_after_s)
        await asyncio.sleep(interval_s)
