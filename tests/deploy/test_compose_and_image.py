"""The Compose file and the Dockerfile cannot be run here (no Docker engine): they are checked
structurally against the code — commands are real subcommands, environment names are real
settings, ports and file paths agree with the settings and with each other."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from stimmung.cli import main as cli
from stimmung.config import ConnectorSettings, load_settings

from .conftest import ROOT
from .test_helm_chart import _field_exists

COMPOSE = ROOT / "deploy" / "compose"


def compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def stimmung_services(doc: dict) -> dict[str, dict]:
    return {name: svc for name, svc in doc["services"].items() if name.startswith("stimmung-")}


def test_compose_services_run_real_commands_with_real_settings():
    doc = compose()
    services = stimmung_services(doc)
    assert {"stimmung-setup", "stimmung-worker", "stimmung-sink", "stimmung-privacy-worker", "stimmung-webhook"} <= set(services)
    assert {"kafka", "elasticsearch", "kibana", "prometheus", "alertmanager"} <= set(doc["services"])
    for name, svc in services.items():
        argv = svc.get("entrypoint", ["stimmung"])[1:] + svc.get("command", [])
        assert argv[0] in cli.commands, f"{name}: {argv[0]} is not a stimmung command"
        if argv[0] == "connect":
            assert argv[1] in ConnectorSettings.model_fields, name
        assert svc["read_only"] is True and svc["user"] == "10001", name
        for env, value in svc["environment"].items():
            if env != "STIMMUNG_CONFIG":
                assert _field_exists(env), f"{name}: {env} is not a settings field"
            if env.endswith("_FILE") and value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in svc["secrets"], f"{name}: {value} not given to the service"
        for secret in svc.get("secrets", []):
            assert secret in doc["secrets"], name
        for dep in svc.get("depends_on", {}):
            assert dep in doc["services"], f"{name} depends on unknown {dep}"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts[svc["environment"]["STIMMUNG_CONFIG"]] == "./settings.yaml", name


def test_compose_settings_file_is_valid_and_points_at_the_compose_services(tmp_path):
    doc = compose()
    settings = load_settings(COMPOSE / "settings.yaml")
    kafka = doc["services"]["kafka"]["environment"]
    assert f"PLAINTEXT://{settings.kafka.bootstrap_servers}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert settings.elasticsearch.url == "http://elasticsearch:9200" and settings.kibana.url == "http://kibana:5601"
    metrics_port = int(doc["x-stimmung"]["environment"]["STIMMUNG_METRICS__PORT"])
    assert metrics_port == settings.metrics.port
    assert f"127.0.0.1:{metrics_port}/healthz" in " ".join(doc["x-stimmung"]["healthcheck"]["test"])
    webhook = doc["services"]["stimmung-webhook"]
    assert webhook["ports"] == [f"{settings.connectors.webhook.port}:{settings.connectors.webhook.port}"]


def test_compose_runs_the_inbox_with_its_secrets_probes_and_accounts_file(tmp_path):
    from stimmung.inbox.accounts import load_accounts_file

    doc = compose()
    settings = load_settings(COMPOSE / "settings.yaml")
    inbox = doc["services"]["stimmung-inbox"]
    assert inbox["command"] == ["inbox"] and "crm" in inbox["profiles"]
    assert inbox["ports"] == [f"127.0.0.1:{settings.inbox.port}:{settings.inbox.port}"], "loopback: TLS proxy in front"
    probe = " ".join(inbox["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.inbox.port}/readyz" in probe
    env = inbox["environment"]
    assert env["STIMMUNG_INBOX__SESSION_SECRET_FILE"] == "/run/secrets/inbox_session_key"
    assert env["STIMMUNG_INBOX__ACCOUNTS_FILE"] == "/run/secrets/inbox_accounts"
    assert doc["secrets"]["inbox_accounts"]["file"] == "./secrets/inbox_accounts.yaml"
    # the example accounts file has the shape the inbox reads (hashes are placeholders)
    accounts = load_accounts_file(COMPOSE / "accounts.example.yaml")
    assert {a.username for a in accounts} >= {"lena", "alice"} and any(a.admin for a in accounts)
    # the teams the accounts name exist (routes' queues + inbox.teams)
    teams = {r.queue for r in settings.crm.routes} | set(settings.inbox.teams)
    assert all(set(a.teams) <= teams for a in accounts)


def test_prometheus_scrapes_every_role_and_loads_the_shipped_rules(promtool):
    doc = compose()
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    metrics_port = doc["x-stimmung"]["environment"]["STIMMUNG_METRICS__PORT"]
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    long_running = {n for n, s in stimmung_services(doc).items() if s.get("restart") != "no"}
    assert targets == {f"{n}:{metrics_port}" for n in long_running}
    assert all(job["job_name"].startswith("stimmung-") for job in prom["scrape_configs"]), "the rules match job=~stimmung.*"
    mounts = dict(v.split(":")[:2][::-1] for v in doc["services"]["prometheus"]["volumes"])
    rules_in_container = [m for m in mounts if m.startswith("/etc/prometheus/rules/")]
    assert rules_in_container and (COMPOSE / mounts[rules_in_container[0]]).resolve() == (ROOT / "deploy/prometheus/stimmung-rules.yaml")
    am = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    assert am.split(":")[0] in doc["services"]
    checked = subprocess.run([promtool, "check", "config", "--syntax-only", str(COMPOSE / "prometheus.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_rules_check_and_their_unit_tests_pass(promtool):
    rules = ROOT / "deploy" / "prometheus" / "stimmung-rules.yaml"
    names = re.findall(r"^\s+- alert: (\w+)", rules.read_text(), flags=re.M)
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0 and f"{len(names)} rules found" in checked.stdout, checked.stdout + checked.stderr
    tests = (ROOT / "tests" / "prometheus" / "stimmung-rules.test.yaml").read_text()
    assert len(names) == 8 and all(f"alertname: {name}" in tests for name in names), "every rule has a promtool test"
    tested = subprocess.run([promtool, "test", "rules", "stimmung-rules.test.yaml"], cwd=ROOT / "tests" / "prometheus",
                            capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_dockerfile_is_multi_stage_non_root_and_builds_the_model_offline():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", text, flags=re.M)
    assert len(stages) == 2 and stages[0][1] == "build"
    final = text[text.rindex("\nFROM "):]
    build = text[:text.rindex("\nFROM ")]
    assert "models build-base" in build and "COPY --from=build /opt/stimmung-models" in final
    user = re.search(r"^USER (\S+)", final, flags=re.M).group(1)
    assert user.isdigit() and int(user) != 0
    assert re.search(r'^ENTRYPOINT \["stimmung"\]', final, flags=re.M)
    # `pip install .` needs every folder the package is built from
    # (stimmung/ links the design card's top-level folders in: each link's target is built too)
    links = [p for p in (ROOT / "stimmung").iterdir() if p.is_symlink()]
    assert links, "stimmung/ should link pipeline/, connectors/, models/, schemas/, deploy/local/"
    package_dirs = {"stimmung"} | {str(p.resolve().relative_to(ROOT)) for p in links}
    copied = set(re.findall(r"^COPY (\S+?)/? \S+$", build, flags=re.M))
    assert package_dirs <= {c.rstrip("/") for c in copied}, package_dirs - copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not any(d.rstrip("/") in ignored for d in package_dirs), "a package folder is excluded from the build context"
    assert "9108" in final and "8080" in final


def test_deploy_readme_documents_every_values_section():
    readme = (ROOT / "deploy" / "README.md").read_text()
    values = yaml.safe_load((ROOT / "helm" / "stimmung" / "values.yaml").read_text())
    for section in ("kafka", "elasticsearch", "privacy", "worker", "sink", "connectors", "metrics", "webhook", "networkPolicy",
                    "inbox"):
        assert f"`{section}" in readme, section
    assert all(Path(ROOT, "deploy", p).exists() for p in re.findall(r"\]\((?!http)([^)#]+)\)", readme)), "broken relative links"
    assert values["privacy"]["pseudonymKeySecret"]["name"]


def test_grafana_dashboard_queries_only_metrics_that_exist():
    import json

    from prometheus_client import REGISTRY

    import stimmung.metrics  # noqa: F401 - registers every Stimmung metric

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""], "summary": ["_sum", "_count"]}
    known = {f"{m.name}{suffix}" for m in REGISTRY.collect() for suffix in suffixes.get(m.type, [""])}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "stimmung-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["__inputs"][0]["type"] == "datasource"
    used = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"stimmung_[a-z_]+", target["expr"]))
    unknown = used - known
    assert not unknown, unknown
    assert {"stimmung_consumer_lag_messages", "stimmung_alerts_total", "stimmung_dead_letters_total"} <= used


def test_the_installed_package_carries_every_model_file_the_enricher_loads(tmp_path):
    """The image installs with `pip install .` (not editable): a model file missing from the
    package data would silently switch its head off in production (HeadSet skips absent files)."""
    import shutil
    import sys
    import zipfile

    from stimmung.models.heads import BUILTIN_HEADS

    # A clean copy: setuptools reuses ./build, where files of an earlier build would hide a gap.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("stimmung-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"stimmung/models/heads/{name}.safetensors" for name in BUILTIN_HEADS} | {
        "stimmung/models/heads/sentiment-calibration.json", "stimmung/models/sentiment/sentiment-head.safetensors",
        "stimmung/models/taxonomy.yaml"}
    assert expected <= names, sorted(expected - names)
