"""Chaos soak (issue #20): the real stack and the real roles, killed, frozen, rolled and scaled
while a seeded workload flows; then proof that nothing was lost, doubled or left behind.

    python benchmarks/chaos.py --short                 # CI's version: ~2,000 mentions, 3 kills, one ES stop
    python benchmarks/chaos.py --mentions 100000 --seed 7

Runs a local stack of its own (``deploy/local/stack.py``; ports 53092/53093/53200/53300 and state
in /tmp/stimmung-chaos unless ``--kafka-port`` ... / ``STIMMUNG_CHAOS_*`` say otherwise), and the
roles as processes: ``import`` (the workload file, resumed after each kill), two ``worker``s,
``sink``, ``alerting``, ``cases run``. Events fire at seeded random points of progress (the share
of good mentions indexed): SIGKILL of the import, workers, sink, alerting and case manager;
Elasticsearch killed and back after ``--es-outage-s``; the broker killed and restarted;
SIGSTOP of a worker and the sink past their group's session timeout, then SIGCONT; a rolling
restart (SIGTERM each role, wait for it to be ready again); workers scaled 2 -> 1 -> 3 -> 1 -> 2.

Then it proves, and prints as one JSON document (exit 1 when a check fails):
every good mention indexed exactly once (ids counted in Elasticsearch), every bad line
dead-lettered with its reason (dead-letter topic, matched by line number), every role alive and
``/readyz`` 200, every consumer group's lag 0 (Kafka's committed offsets), alerts neither lost
(each event on the alerts topic is in the alerts index) nor doubled (one id per incident event).
A role that exits on its own is restarted (so the soak goes on) and reported as a failure.

Longer than our usual module (~400 lines): it is one script a user runs, kept in one place on
purpose; the workload lives in ``chaos_workload.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos_workload import BAD_KINDS, BRANDS, SPIKE_BRAND, Workload, write_workload

DEFAULT_PORTS = {"kafka_port": 53092, "kafka_controller_port": 53093, "es_http_port": 53200, "es_transport_port": 53300}
# Faust's group (worker, alerting) and kafka-python's (sink, cases) session timeouts: a frozen
# member must stay stopped longer than this to be thrown out of its group.
FAUST_SESSION_S = 20.0
ROLES = {"worker-1": ["worker"], "worker-2": ["worker"], "sink": ["sink"], "alerting": ["alerting"],
         "cases": ["cases", "run"]}


@dataclass
class Options:
    mentions: int = 2000
    seed: int = 1
    bad_share: float = 0.01
    kills: int = 3
    freezes: int = 0
    es_outage_s: float = 60.0
    broker_restart: bool = False
    rolling_restart: bool = False
    scale: bool = False
    import_kills: int = 1
    partitions: int = 4
    converge_timeout_s: float = 900.0
    work_dir: Path = Path("/tmp/stimmung-chaos/run")
    state_dir: Path = Path("/tmp/stimmung-chaos/stack")
    ports: dict = field(default_factory=lambda: dict(DEFAULT_PORTS))
    metrics_base_port: int = 53400
    keep_stack: bool = False
    skip_kinds: list[str] = field(default_factory=list)
    stall_s: float = 120.0

    @classmethod
    def short(cls, **kw) -> "Options":
        return cls(**{"mentions": 2000, "kills": 2, "import_kills": 1, "es_outage_s": 30.0, **kw})


class Fleet:
    """The role processes: start, signal, restart; who exited on their own."""

    def __init__(self, config_file: Path, work_dir: Path, env: dict, base_port: int, log):
        self.config_file, self.work_dir, self.env, self.log = config_file, work_dir, env, log
        self.procs: dict[str, subprocess.Popen] = {}
        self.argv: dict[str, list[str]] = {}
        self.ports: dict[str, int] = {}
        self.next_port = base_port
        self.expected_exit: set[str] = set()
        self.unexpected_exits: list[dict] = []
        self.restarts: dict[str, int] = {}

    def start(self, name: str, argv: list[str] | None = None) -> None:
        argv = argv or self.argv[name]
        self.argv[name] = argv
        if name not in self.ports:
            self.ports[name] = self.next_port
            self.next_port += 1
        env = {**self.env, "STIMMUNG_METRICS__PORT": str(self.ports[name]), "STIMMUNG_METRICS__HOST": "127.0.0.1",
               "STIMMUNG_PIPELINE__DATA_DIR": str(self.work_dir / "faust" / name)}
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "stimmung.cli", "--config", str(self.config_file), *argv],
                                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.expected_exit.discard(name)

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.expected_exit.add(name)
        if proc.poll() is None:
            proc.send_signal(sig)

    def wait_exit(self, name: str, timeout_s: float) -> int | None:
        try:
            return self.procs[name].wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def restart(self, name: str) -> None:
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.start(name)

    def stop(self, name: str, timeout_s: float = 60.0) -> int | None:
        self.signal(name, signal.SIGTERM)
        code = self.wait_exit(name, timeout_s)
        if code is None:
            self.procs[name].kill()
            self.procs[name].wait()
        return code

    def check(self) -> None:
        """Restart any role that exited without being told to, and remember it."""
        for name, proc in list(self.procs.items()):
            if name == "import" or name in self.expected_exit:
                continue
            if proc.poll() is not None:
                tail = (self.work_dir / "logs" / f"{name}.log").read_text(errors="replace")[-1500:]
                self.unexpected_exits.append({"role": name, "code": proc.returncode, "log_tail": tail})
                self.log(f"{name} exited on its own ({proc.returncode}); restarting")
                self.restart(name)

    def readyz(self, name: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/readyz", timeout=3) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return 0

    def shutdown(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def settings_dict(run: str, opts: Options, work_dir: Path) -> dict:
    ports = opts.ports
    t = f"chaos{run}"
    return {
        "log_format": "json",
        "kafka": {"bootstrap_servers": f"127.0.0.1:{ports['kafka_port']}",
                  "topics": {"raw": f"{t}.raw", "enriched": f"{t}.enriched", "deadletter": f"{t}.deadletter",
                             "alerts": f"{t}.alerts", "privacy": f"{t}.privacy", "consent": f"{t}.consent",
                             "influence": f"{t}.influence", "partitions": opts.partitions}},
        "elasticsearch": {"url": f"http://127.0.0.1:{ports['es_http_port']}", "mentions_index": f"{t}-mentions",
                          "alerts_index": f"{t}-alerts", "erasures_index": f"{t}-erasures",
                          "consents_index": f"{t}-consents", "consent_audit_index": f"{t}-consent-audit",
                          "cases_index": f"{t}-cases", "circuit_reset_s": 5},
        "pipeline": {"app_id": f"chaos-{run}", "session_timeout_s": FAUST_SESSION_S},
        "connectors": {"checkpoint_dir": str(work_dir / "checkpoints"), "filter_by_brands": False},
        "brands": [{"name": b, "queries": [b]} for b in BRANDS],
        "alerting": {"window_s": 300, "lateness_s": 30, "tick_s": 2, "sensitivity": "high",
                     "detector": {"warmup_windows": 6, "min_count": 5}},
        # Narrow on purpose: the case manager writes each case with refresh=wait_for, about one
        # matching mention a second here (found by this soak), and would hold up the final checks.
        "crm": {"routes": [{"name": "complaints", "queue": "support", "brands": [SPIKE_BRAND], "sentiments": ["negative"],
                            "query": "Erstattung OR refund"}]},
        "stack": {**ports, "state_dir": str(opts.state_dir)},
    }


class Soak:
    def __init__(self, opts: Options, stack=None):
        from stimmung.config import load_settings
        from stimmung.localstack import LocalStack

        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.work_dir = opts.work_dir / self.run_id
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.events: list[dict] = []
        if stack is not None:  # a stack of the caller's (CI's test session): its ports, not ours
            opts.ports = {key: getattr(stack.settings, key) for key in DEFAULT_PORTS}
        self.config = settings_dict(self.run_id, opts, self.work_dir)
        self.owns_stack = stack is None
        if stack is None:
            stack_settings = load_settings().stack.model_copy(update={**opts.ports, "state_dir": opts.state_dir})
            stack = LocalStack(stack_settings, report=self.log)
        self.stack = stack
        self.config["stack"] = {"state_dir": str(stack.settings.state_dir)}
        for key in DEFAULT_PORTS:
            self.config["stack"][key] = getattr(stack.settings, key)
        self.config_file = self.work_dir / "settings.yaml"
        self.config_file.write_text(yaml.safe_dump(self.config))
        self.settings = load_settings(**{k: v for k, v in self.config.items()})
        env = {k: v for k, v in os.environ.items() if not k.startswith("STIMMUNG_")}
        env["STIMMUNG_PRIVACY__PSEUDONYM_KEY"] = f"chaos-key-{self.run_id}-0123456789abcdef"
        self.fleet = Fleet(self.config_file, self.work_dir, env, opts.metrics_base_port, self.log)
        self.workload: Workload = None  # type: ignore[assignment]  # written in run(), before anything reads it

    def log(self, line: str) -> None:
        print(f"[chaos {time.monotonic() - getattr(self, 'started', time.monotonic()):7.1f}s] {line}", file=sys.stderr, flush=True)

    def event(self, kind: str, target: str, **detail) -> None:
        self.events.append({"t_s": round(time.monotonic() - self.started, 1), "kind": kind, "target": target, **detail})
        self.log(f"{kind} {target} {detail if detail else ''}")

    # --- progress ------------------------------------------------------------------------------
    def indexed(self) -> int | None:
        from elasticsearch import Elasticsearch

        es = Elasticsearch(self.settings.elasticsearch.url, request_timeout=5)
        try:
            return es.count(index=self.settings.elasticsearch.mentions_index, ignore_unavailable=True)["count"]
        except Exception:
            return None
        finally:
            es.close()

    def progress(self) -> float:
        n = self.indexed()
        if n is not None:
            self._last_progress = n / max(1, len(self.workload.good_ids))
        return getattr(self, "_last_progress", 0.0)

    def wait_progress(self, target: float, timeout_s: float = 900.0) -> None:
        """Until ``target`` of the good mentions is indexed; gives up (and says so) when nothing
        moved for ``stall_s`` — the event then fires anyway, the final checks tell what is missing."""
        deadline = time.monotonic() + timeout_s
        last, moved_at = self.progress(), time.monotonic()
        while last < target and time.monotonic() < deadline:
            self.fleet.check()
            self.import_finished()
            time.sleep(1.0)
            now = self.progress()
            if now != last:
                last, moved_at = now, time.monotonic()
            elif time.monotonic() - moved_at > self.opts.stall_s:
                self.event("stalled", "pipeline", at=f"{now:.1%}", waiting_for=f"{target:.1%}")
                return

    def raw_published(self) -> int:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka.bootstrap_list, request_timeout_ms=5000)
        try:
            topic = self.settings.kafka.topics.raw
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            return sum(consumer.end_offsets(parts).values()) if parts else 0
        except Exception:
            return 0
        finally:
            consumer.close()

    # --- the workload's import, killed at random points ----------------------------------------
    def start_import(self) -> None:
        argv = ["import", str(self.workload.path), "--platform", "chaos", "--resume"]
        self.fleet.start("import", argv)

    def run_import(self) -> None:
        self.start_import()
        points = sorted(self.rng.uniform(0.15, 0.8) for _ in range(self.opts.import_kills))
        for point in points:
            while self.fleet.procs["import"].poll() is None and self.raw_published() < point * len(self.workload.good_ids):
                time.sleep(0.05)
            if self.fleet.procs["import"].poll() is not None:
                self.event("note", "import", detail=f"finished before the kill at {point:.0%}")
                break
            self.fleet.signal("import", signal.SIGKILL)
            self.fleet.wait_exit("import", 30)
            self.event("SIGKILL", "import", at=f"{point:.0%} published")
            self.fleet.restarts["import"] = self.fleet.restarts.get("import", 0) + 1
            self.start_import()

    def import_finished(self) -> bool:
        proc = self.fleet.procs["import"]
        if proc.poll() is None:
            return False
        if proc.returncode != 0 and not getattr(proc, "_stimmung_seen", False):
            proc._stimmung_seen = True  # type: ignore[attr-defined]  # reported once per process
            tail = (self.work_dir / "logs" / "import.log").read_text(errors="replace")[-1500:]
            self.fleet.unexpected_exits.append({"role": "import", "code": proc.returncode, "log_tail": tail})
            self.event("failure", "import", code=proc.returncode)
            if self.fleet.restarts.get("import", 0) < 5 + self.opts.import_kills:
                self.fleet.restarts["import"] = self.fleet.restarts.get("import", 0) + 1
                self.start_import()
                return False
        return True

    # --- chaos events --------------------------------------------------------------------------
    def kill_role(self, name: str) -> None:
        self.fleet.signal(name, signal.SIGKILL)
        self.fleet.wait_exit(name, 30)
        self.event("SIGKILL", name)
        time.sleep(self.rng.uniform(1, 5))
        self.fleet.restart(name)

    def freeze_role(self, name: str) -> None:
        hold = (FAUST_SESSION_S if name.startswith("worker") else 10.0) + 10
        self.fleet.signal(name, signal.SIGSTOP)
        self.event("SIGSTOP", name, for_s=hold)
        time.sleep(hold)
        self.fleet.signal(name, signal.SIGCONT)
        self.event("SIGCONT", name)

    def es_outage(self) -> None:
        es = self.stack.services["elasticsearch"]
        pid = es._pid()
        os.killpg(pid, signal.SIGKILL)
        self.event("SIGKILL", "elasticsearch", down_for_s=self.opts.es_outage_s)
        self._sleep_checking(self.opts.es_outage_s)
        self.stack.up(only=["elasticsearch"])
        self.event("back", "elasticsearch")

    def broker_restart(self) -> None:
        kafka = self.stack.services["kafka"]
        os.killpg(kafka._pid(), signal.SIGKILL)
        down = self.rng.uniform(5, 15)
        self.event("SIGKILL", "kafka", down_for_s=round(down, 1))
        self._sleep_checking(down)
        self.stack.up(only=["kafka"])
        self.event("back", "kafka")

    def rolling_restart(self) -> None:
        for name in [n for n in self.fleet.procs if n != "import"]:
            started = time.monotonic()
            code = self.fleet.stop(name, 60)
            self.event("SIGTERM", name, exit_code=code, stop_s=round(time.monotonic() - started, 1))
            if code is None:
                self.fleet.unexpected_exits.append({"role": name, "code": None, "log_tail": "ignored SIGTERM for 60 s"})
            self.fleet.restart(name)
            ready = self._wait_ready(name, 180)
            self.event("ready", name, after_s=round(time.monotonic() - started, 1), ok=ready)

    def scale(self) -> None:
        step = max(0.04, (1 - self.progress()) / 8)
        self.fleet.stop("worker-2")
        self.event("scale", "workers", to=1)
        self.wait_progress(self.progress() + step, 120)
        ROLES.setdefault("worker-3", ["worker"])
        self.fleet.restart("worker-2")
        self.fleet.start("worker-3", ["worker"])
        self.event("scale", "workers", to=3)
        self.wait_progress(self.progress() + step, 180)
        self.fleet.stop("worker-2")
        self.fleet.stop("worker-3")
        self.event("scale", "workers", to=1)
        self.wait_progress(self.progress() + step, 180)
        self.fleet.procs.pop("worker-3")
        self.fleet.restart("worker-2")
        self.event("scale", "workers", to=2)

    def _sleep_checking(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.fleet.check()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _wait_ready(self, name: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.fleet.readyz(name) == 200:
                return True
            self.fleet.check()
            time.sleep(1.0)
        return False

    def plan(self) -> list[tuple[float, str, str]]:
        """(progress at which it fires, action, target), sorted."""
        o, rng = self.opts, self.rng
        victims = ["worker-1", "worker-2", "sink", "alerting", "cases"]
        actions = [("kill", victims[i % len(victims)] if i < len(victims) else rng.choice(victims)) for i in range(o.kills)]
        actions += [("freeze", ["worker-1", "sink"][i % 2]) for i in range(o.freezes)]
        if o.es_outage_s > 0:
            actions.append(("es_outage", "elasticsearch"))
        if o.broker_restart:
            actions.append(("broker_restart", "kafka"))
        if o.rolling_restart:
            actions.append(("rolling_restart", "all"))
        if o.scale:
            actions.append(("scale", "workers"))
        points = sorted(rng.uniform(0.05, 0.7) for _ in actions)
        rng.shuffle(actions)
        return [(p, a, t) for p, (a, t) in zip(points, actions)]

    # --- the run -------------------------------------------------------------------------------
    def run(self) -> dict:
        o = self.opts
        if self.owns_stack:
            self.stack.up()
        from stimmung.kafka import ensure_topics

        ensure_topics(self.settings.kafka, timeout_s=60)
        self.workload = write_workload(self.work_dir / "workload.jsonl", o.mentions, o.seed, o.bad_share,
                                       kinds=[k for k in BAD_KINDS if k not in o.skip_kinds])
        self.log(f"workload: {self.workload.describe()}")
        for name, argv in ROLES.items():
            if name != "worker-3":
                self.fleet.start(name, argv)
        self.run_import()
        for point, action, target in self.plan():
            self.wait_progress(point)
            self.fleet.check()
            if action == "kill":
                self.kill_role(target)
            elif action == "freeze":
                self.freeze_role(target)
            else:
                getattr(self, action)()
        converge_started = time.monotonic()
        summary = self.converge_and_check()
        summary["converge_s"] = round(time.monotonic() - converge_started, 1)
        return summary

    def converge_and_check(self) -> dict:
        from chaos_checks import check_all, converged

        deadline = time.monotonic() + self.opts.converge_timeout_s
        while time.monotonic() < deadline:
            self.fleet.check()
            if self.import_finished() and converged(self):
                break
            time.sleep(3.0)
        for name in [n for n in self.fleet.procs if n != "import"]:
            self._wait_ready(name, 60)
        summary = check_all(self)
        summary["duration_s"] = round(time.monotonic() - self.started, 1)
        return summary

    def close(self) -> None:
        self.fleet.shutdown()
        if self.owns_stack and not self.opts.keep_stack:
            for line in self.stack.down():
                self.log(line)


def parse_args(argv: list[str] | None = None) -> Options:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mentions", type=int, default=None, help="good mentions (default 2,000 with --short, else 20,000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--short", action="store_true", help="CI's version: ~2,000 mentions, three kills, one ES stop")
    p.add_argument("--bad-share", type=float, default=0.01)
    p.add_argument("--kills", type=int, default=None, help="SIGKILLs of roles besides the import's")
    p.add_argument("--es-outage-s", type=float, default=None)
    p.add_argument("--work-dir", type=Path, default=Path(env("STIMMUNG_CHAOS_WORK_DIR", "/tmp/stimmung-chaos/run")))
    p.add_argument("--state-dir", type=Path, default=Path(env("STIMMUNG_CHAOS_STATE_DIR", "/tmp/stimmung-chaos/stack")))
    p.add_argument("--kafka-port", type=int, default=int(env("STIMMUNG_CHAOS_KAFKA_PORT", 53092)))
    p.add_argument("--kafka-controller-port", type=int, default=int(env("STIMMUNG_CHAOS_KAFKA_CONTROLLER_PORT", 53093)))
    p.add_argument("--es-port", type=int, default=int(env("STIMMUNG_CHAOS_ES_PORT", 53200)))
    p.add_argument("--es-transport-port", type=int, default=int(env("STIMMUNG_CHAOS_ES_TRANSPORT_PORT", 53300)))
    p.add_argument("--metrics-base-port", type=int, default=int(env("STIMMUNG_CHAOS_METRICS_PORT", 53400)))
    p.add_argument("--keep-stack", action="store_true", help="leave the stack running afterwards")
    p.add_argument("--skip-kinds", default="", help=f"comma-separated malformed kinds to leave out; known: {','.join(BAD_KINDS)}")
    a = p.parse_args(argv)
    ports = {"kafka_port": a.kafka_port, "kafka_controller_port": a.kafka_controller_port,
             "es_http_port": a.es_port, "es_transport_port": a.es_transport_port}
    common = {"seed": a.seed, "bad_share": a.bad_share, "work_dir": a.work_dir, "state_dir": a.state_dir,
              "ports": ports, "metrics_base_port": a.metrics_base_port, "keep_stack": a.keep_stack,
              "skip_kinds": [k for k in a.skip_kinds.split(",") if k]}
    if a.short:
        opts = Options.short(**common)
    else:
        opts = Options(mentions=20_000, kills=10, import_kills=2, freezes=2, broker_restart=True, rolling_restart=True,
                       scale=True, **common)
    if a.mentions is not None:
        opts.mentions = a.mentions
    if a.kills is not None:
        opts.kills = a.kills
    if a.es_outage_s is not None:
        opts.es_outage_s = a.es_outage_s
    return opts


def main(argv: list[str] | None = None) -> int:
    soak = Soak(parse_args(argv))
    try:
        summary = soak.run()
    finally:
        soak.close()
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
