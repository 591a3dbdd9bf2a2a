"""Issue #15 item 8 on the real stack: what the demo establishes (pseudonymisation key, brands,
case routes) lands in the default settings file, and later commands find it without flags —
`import`, `worker`, `sink`, `search author:`, `consent grant|show` and `erase` — where before they
failed with "no pseudonymisation key" and a plain worker tagged no brands without a word."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import yaml

from stimmung.config import default_config_path, load_settings
from stimmung.demo_settings import establish, write_settings_file

from .conftest import wait_for


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stimmung.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _start(env: dict[str, str], log, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stimmung.cli", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_later_commands_find_the_demos_key_and_brands_without_flags(config, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIMMUNG_")}
    # the user's own default file before the demo: this test's topics and indices, no key, no brands
    own = {k: v for k, v in config.items() if k in ("kafka", "elasticsearch", "pipeline", "stack", "log_format")}
    default_config_path().parent.mkdir(parents=True)
    default_config_path().write_text(yaml.safe_dump(own))

    before = _cli(env, "search", "author:@kundin_a", "--since", "1d")
    assert before.returncode != 0 and "pseudonym" in before.stderr.lower() and "Traceback" not in before.stderr

    settings = load_settings()
    assert settings.source_file == default_config_path() and not settings.brands
    done = establish(settings, tmp_path / "demo-pseudonym.key", start_inbox=False)
    written = write_settings_file(done.file_values)
    assert written == default_config_path() and oct(written.stat().st_mode & 0o777) == "0o600"
    after = load_settings()
    assert after.privacy.pseudonym_key_file == tmp_path / "demo-pseudonym.key"
    assert {b.name for b in after.brands} >= {"Nordbahn", "Kaufhafen"} and after.crm.routes
    assert after.elasticsearch.mentions_index == config["elasticsearch"]["mentions_index"], "the user's keys stay"
    shown = _cli(env, "config")
    assert shown.returncode == 0 and f"settings file: {written}" in shown.stderr

    logs = tmp_path / "roles.log"
    with open(logs, "ab") as log:
        roles = [_start(env, log, "worker"), _start(env, log, "sink")]
    try:
        now = datetime.now(timezone.utc).isoformat()
        sample = tmp_path / "mentions.jsonl"
        sample.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in [
            {"id": "d-1", "platform": "mastodon", "author": "kundin_a", "created_at": now, "lang": "de",
             "text": "Nordbahn, seit drei Wochen warte ich auf meine Erstattung. Unmöglich!"},
            {"id": "d-2", "platform": "mastodon", "author": "kunde_b", "created_at": now, "lang": "de",
             "text": "Kaufhafen hat heute super schnell geliefert, danke!"},
        ]) + "\n")
        imported = _cli(env, "import", str(sample))
        assert imported.returncode == 0, imported.stderr

        def found():
            for proc in roles:
                assert proc.poll() is None, logs.read_text()[-4000:]
            answer = _cli(env, "search", "author:@kundin_a", "--since", "1d", "--json")
            assert answer.returncode == 0, answer.stderr
            hits = json.loads(answer.stdout)["mentions"]
            return hits or None

        hits = wait_for(found, timeout=240, interval=2, message="the mention, found by its author without flags")
        assert hits[0]["brand_names"] == ["Nordbahn"], "the worker tagged the demo's brands"
        assert "no brands configured" not in logs.read_text()

        granted = _cli(env, "consent", "grant", "--platform", "mastodon", "--handle", "kundin_a", "--contact", "C-77",
                       "--purpose", "service")
        assert granted.returncode == 0, granted.stderr
        shown = _cli(env, "consent", "show", "--platform", "mastodon", "--handle", "kundin_a")
        assert shown.returncode == 0 and json.loads(shown.stdout)["contact_id"] == "C-77", shown.stdout + shown.stderr

        erased = _cli(env, "erase", "--author", "kundin_a", "--platform", "mastodon", "--yes")
        assert erased.returncode == 0, erased.stderr
        assert json.loads(erased.stdout.strip().splitlines()[-1])["deleted"] >= 1
        gone = _cli(env, "search", "author:@kundin_a", "--since", "1d", "--json")
        assert json.loads(gone.stdout)["mentions"] == []
    finally:
        for proc in roles:
            _stop(proc)

    # a worker without brands says so once at start (and still runs)
    bare_log = tmp_path / "bare-worker.log"
    with open(bare_log, "ab") as log:
        bare = _start({**env, "STIMMUNG_BRANDS": "[]"}, log, "worker")
    try:
        deadline = time.monotonic() + 60
        while "no brands configured" not in bare_log.read_text() and time.monotonic() < deadline:
            assert bare.poll() is None, bare_log.read_text()[-3000:]
            time.sleep(0.5)
        text = bare_log.read_text()
        assert text.count("no brands configured: mentions get no brand tags") == 1, text[-3000:]
    finally:
        _stop(bare)
