"""The local stack code against the real processes it manages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from stimmung.localstack import LocalStack

from .conftest import PORTS, STATE_DIR, stack_settings


def test_services_are_up_and_healthy(local_stack):
    statuses = {s.name: s for s in local_stack.status()}
    assert statuses["kafka"].state == "running" and statuses["elasticsearch"].state == "running"
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['es_http_port']}/_cluster/health") as resp:
        assert json.loads(resp.read())["status"] in ("green", "yellow")
    # data, logs and pid files live under the state folder
    assert (STATE_DIR / "kafka" / "data" / "meta.properties").exists()
    assert (STATE_DIR / "elasticsearch" / "data").is_dir()


def test_up_is_idempotent(local_stack):
    before = {s.name: s.pid for s in local_stack.status()}
    again = {s.name: (s.state, s.pid) for s in local_stack.up()}
    assert again == {name: ("running", pid) for name, pid in before.items()}


def test_status_command_reports_json_and_exit_code(local_stack):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIMMUNG_")}
    env.update({f"STIMMUNG_STACK__{k.upper()}": str(v) for k, v in PORTS.items()})
    env["STIMMUNG_STACK__STATE_DIR"] = str(STATE_DIR)
    done = subprocess.run([sys.executable, "-m", "stimmung.cli", "stack", "status", "--json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert {s["name"]: s["state"] for s in json.loads(done.stdout)} == {"kafka": "running", "elasticsearch": "running"}
    env["STIMMUNG_STACK__STATE_DIR"] = str(STATE_DIR.parent / "never-started")
    done = subprocess.run([sys.executable, "-m", "stimmung.cli", "stack", "status"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "stopped" in done.stdout


def test_a_crashed_broker_is_detected_and_restarted(local_stack, tmp_path):
    # A second, Kafka-only stack of its own, so the session stack is not disturbed.
    settings = stack_settings(tmp_path / "stack", kafka_port=PORTS["kafka_port"] + 10,
                              kafka_controller_port=PORTS["kafka_controller_port"] + 10,
                              es_http_port=PORTS["es_http_port"] + 10, es_transport_port=PORTS["es_transport_port"] + 10,
                              kafka_sasl_port=PORTS["kafka_sasl_port"] + 10)
    stack = LocalStack(settings)
    try:
        (started,) = stack.up(only=["kafka"])
        assert started.state == "running"
        os.killpg(started.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and stack.status(only=["kafka"])[0].state != "crashed":
            time.sleep(0.2)
        (crashed,) = stack.status(only=["kafka"])
        assert crashed.state == "crashed" and "is gone" in crashed.detail
        (restarted,) = stack.up(only=["kafka"])
        assert restarted.state == "running" and restarted.pid != started.pid
    finally:
        stack.down(only=["kafka"])
    assert stack.status(only=["kafka"])[0].state == "stopped"
