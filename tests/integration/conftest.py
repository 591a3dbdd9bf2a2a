"""Integration fixtures: a real Kafka broker and a real Elasticsearch node, started once per
session through the project's own stack code, on ports and a state folder of their own so they
never touch a developer's running stack."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from stimmung.config import Settings, load_settings
from stimmung.localstack import LocalStack

# Below Linux's ephemeral range (32768-60999): a port inside it can be taken at random as the
# local end of some outgoing connection (seen: Kafka's own controller connection sat on 39300 in
# TIME-WAIT, and Elasticsearch could not bind its transport port).
PORTS = {
    "kafka_port": int(os.environ.get("STIMMUNG_TEST_KAFKA_PORT", 29092)),
    "kafka_controller_port": int(os.environ.get("STIMMUNG_TEST_KAFKA_CONTROLLER_PORT", 29093)),
    "es_http_port": int(os.environ.get("STIMMUNG_TEST_ES_PORT", 29200)),
    "es_transport_port": int(os.environ.get("STIMMUNG_TEST_ES_TRANSPORT_PORT", 29300)),
    "kafka_sasl_port": int(os.environ.get("STIMMUNG_TEST_KAFKA_SASL_PORT", 29094)),
}
STATE_DIR = Path(os.environ.get("STIMMUNG_TEST_STATE_DIR", "/tmp/stimmung-test/stack"))
PSEUDONYM_KEY = "integration-test-key-0123456789"
# No developer's default settings file (~/.config/stimmung/config.yaml, e.g. the demo's) leaks
# into the tests or the roles they start; tests of that file set XDG_CONFIG_HOME themselves.
os.environ["XDG_CONFIG_HOME"] = str(STATE_DIR.parent / "no-default-config")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def stack_settings(state_dir: Path = STATE_DIR, **ports):
    return load_settings().stack.model_copy(update={**PORTS, **ports, "state_dir": state_dir})


@pytest.fixture(scope="session")
def local_stack():
    settings = stack_settings()
    stack = LocalStack(settings, report=lambda line: print(f"[stack] {line}", file=sys.stderr))
    stack.down()  # leftovers of an aborted run
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    stack.up()
    yield stack
    for line in stack.down():
        print(f"[stack] {line}", file=sys.stderr)


@pytest.fixture
def config(local_stack, tmp_path) -> dict:
    """A settings dict of its own per test: own topics, index, consumer groups."""
    run = uuid.uuid4().hex[:8]
    return {
        "log_format": "text",
        "kafka": {
            "bootstrap_servers": f"127.0.0.1:{PORTS['kafka_port']}",
            "topics": {"raw": f"t{run}.raw", "enriched": f"t{run}.enriched", "deadletter": f"t{run}.deadletter",
                       "alerts": f"t{run}.alerts", "privacy": f"t{run}.privacy", "consent": f"t{run}.consent", "influence": f"t{run}.influence",
                       "partitions": 2},
        },
        "elasticsearch": {"url": f"http://127.0.0.1:{PORTS['es_http_port']}", "mentions_index": f"t{run}-mentions",
                          "alerts_index": f"t{run}-alerts", "erasures_index": f"t{run}-erasures",
                          "consents_index": f"t{run}-consents", "consent_audit_index": f"t{run}-consent-audit",
                          "cases_index": f"t{run}-cases",
                          "erasure_refresh_s": 0.5, "circuit_reset_s": 3},
        "pipeline": {"app_id": f"stimmung-test-{run}", "data_dir": str(tmp_path / "faust"),
                     "enrich_batch_wait_s": 0.2, "sink_batch_wait_s": 0.3},
        "stack": {**PORTS, "state_dir": str(STATE_DIR)},
    }


@pytest.fixture
def settings(config, monkeypatch) -> Settings:
    monkeypatch.setenv("STIMMUNG_PRIVACY__PSEUDONYM_KEY", PSEUDONYM_KEY)
    return load_settings(**config)


class Roles:
    """Runs pipeline roles as real subprocesses (`stimmung worker`, `stimmung sink`)."""

    def __init__(self, config: dict, tmp_path: Path):
        self.config_file = tmp_path / "settings.yaml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STIMMUNG_")}
        self.env["STIMMUNG_PRIVACY__PSEUDONYM_KEY"] = PSEUDONYM_KEY

    def start(self, *roles: str, metrics_ports: dict[str, int] | None = None) -> None:
        for role in roles:
            env = dict(self.env)
            if metrics_ports and role in metrics_ports:
                env["STIMMUNG_METRICS__PORT"] = str(metrics_ports[role])
                env["STIMMUNG_METRICS__HOST"] = "127.0.0.1"
            log = open(self._log_path(role), "ab")
            self.procs[role] = subprocess.Popen(  # "cases run": a command with its subcommand
                [sys.executable, "-m", "stimmung.cli", "--config", str(self.config_file), *role.split()],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def stop(self, *roles: str) -> None:
        for role in roles or list(self.procs):
            proc = self.procs.pop(role, None)
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def check_alive(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{role} exited with {proc.returncode}:\n{self.log(role)}")

    def _log_path(self, role: str) -> Path:
        return self.tmp_path / f"{role.replace(' ', '-')}.log"  # "cases run" -> cases-run.log

    def log(self, role: str, tail: int = 6000) -> str:
        path = self._log_path(role)
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""


@pytest.fixture
def roles(config, tmp_path, request):
    r = Roles(config, tmp_path)
    yield r
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    r.stop()
    if failed:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"----- {log.stem} log -----\n{r.log(log.stem, tail=40000)}", file=sys.stderr)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value} (samples only)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.5, check=None, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if check:
            check()
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")


def probe(port: int, path: str) -> tuple[int, dict]:
    """GET /healthz or /readyz on a role's metrics port: (HTTP status, JSON body)."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
