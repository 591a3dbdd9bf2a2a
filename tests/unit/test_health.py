import json
import socket
import time
import urllib.error
import urllib.request

from stimmung.health import Health
from stimmung.metrics import serve


def get(port: int, path: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            body = resp.read().decode()
            return resp.status, json.loads(body) if path != "/metrics" else body
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_liveness_goes_stale_when_a_loop_stops_beating():
    h = Health()
    h.beat("sink", stale_after_s=0.2)
    assert h.liveness()[0]
    time.sleep(0.3)
    ok, body = h.liveness()
    assert not ok and body["loops"]["sink"]["ok"] is False


def test_readiness_needs_every_check_and_names_the_failing_one():
    h = Health()
    assert not h.readiness()[0], "nothing registered yet: still starting"
    h.set_ready("kafka", True)
    h.set_ready("elasticsearch", False, "unavailable")
    ok, body = h.readiness()
    assert not ok and body["checks"]["elasticsearch"] == {"ok": False, "detail": "unavailable"}
    h.set_ready("elasticsearch", True)
    assert h.readiness()[0]


def test_metrics_port_answers_probes_and_metrics():
    from stimmung.health import HEALTH

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve(port, "127.0.0.1")
    HEALTH.checks.clear()  # the process-wide registry: other tests in this process may have used it
    HEALTH.beats.clear()
    HEALTH.beat("unit", stale_after_s=60)
    HEALTH.set_ready("unit", False, "warming up")
    assert get(port, "/readyz")[0] == 503
    HEALTH.set_ready("unit", True)
    assert get(port, "/readyz") == (200, {"ok": True, "checks": {"unit": {"ok": True}}})
    status, body = get(port, "/healthz")
    assert status == 200 and body["loops"]["unit"]["ok"]
    status, text = get(port, "/metrics")
    assert status == 200 and "stimmung_mentions_indexed_total" in text


def test_progress_watch_fails_only_when_work_waits_and_no_commit_moves():
    from stimmung.pipeline.app import ProgressWatch

    watch = ProgressWatch()
    assert watch.progressing({})  # nothing assigned: nothing waits for us
    assert watch.progressing({"p0": (10, 10)})  # caught up
    assert not watch.progressing({"p0": (10, 50)})  # work arrived, no commit yet: no beat this time
    assert watch.progressing({"p0": (20, 60)})  # commits advance
    assert not watch.progressing({"p0": (20, 80)})  # backlog, no commit since the last look: wedged
    assert watch.progressing({"p0": (21, 80)})  # a commit moved again


def test_repeat_filter_lets_one_line_per_kind_through_and_counts_the_rest():
    import logging

    from stimmung.pipeline.app import RepeatFilter

    now = [0.0]
    repeat = RepeatFilter(window_s=60, clock=lambda: now[0])

    def record(msg, level=logging.ERROR, name="aiokafka.conn"):
        return logging.LogRecord(name, level, __file__, 1, msg, (), None)

    assert repeat.filter(record("Unable connect to %r"))
    assert sum(repeat.filter(record("Unable connect to %r")) for _ in range(2500)) == 0
    assert repeat.filter(record("Fetch error"))  # another kind passes
    assert repeat.filter(record("debug detail", level=logging.DEBUG))
    now[0] = 61
    again = record("Unable connect to %r")
    assert repeat.filter(again) and "2500 like it" in again.msg
