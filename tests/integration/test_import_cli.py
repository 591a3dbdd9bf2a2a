"""`stimmung import` and `stimmung connect --once` as a script sees them, on the real broker: a
wrong mapping neither publishes nor leaves a checkpoint to resume behind, every-row-rejected and
a failed sweep exit non-zero, a `;`-separated cp1252 export imports with --encoding."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from stimmung.kafka import ensure_topics

from .test_connectors import serve


def _cli(config_file, *args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIMMUNG_")}
    env["STIMMUNG_CONFIG"] = str(config_file)
    return subprocess.run([sys.executable, "-m", "stimmung.cli", *args], capture_output=True, text=True, env=env,
                          timeout=180, cwd=cwd)


def test_a_wrong_mapping_then_the_right_one_and_an_excel_export(settings, config, tmp_path):
    ensure_topics(settings.kafka)
    config_file = tmp_path / "settings.yaml"
    config_file.write_text(yaml.safe_dump({**config, "connectors": {"checkpoint_dir": str(tmp_path / "checkpoints")}}))
    export = tmp_path / "export.csv"
    export.write_bytes("post_id;message;date\n1;Nordbahn: wieder Verspätung;2026-11-20T08:00:00Z\n"
                       "2;Kaufhafen liefert nicht;2026-11-20T09:00:00Z\n".encode("cp1252"))
    maps = ["--map", "native_id=post_id", "--map", "created_at=date"]

    typo = _cli(config_file, "import", str(export), *maps, "--map", "text=mesage", "--encoding", "cp1252")
    assert typo.returncode == 2 and "did you mean 'message'?" in typo.stderr and "delimiter ';'" in typo.stderr

    # a mapping that reads but rejects every row: exit 1, and the next run is not "resumed" past it
    rejected = _cli(config_file, "import", str(export), *maps, "--map", "text=date", "--map", "created_at=message",
                    "--encoding", "cp1252", "--rejects", "rejects.jsonl", cwd=tmp_path)
    assert rejected.returncode == 1 and "every row was rejected (2)" in rejected.stderr
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 2, "--rejects is relative to where one stands"

    without_encoding = _cli(config_file, "import", str(export), *maps, "--map", "text=message")
    assert without_encoding.returncode == 0 and "published 1 mention(s), rejected 1 row(s)" in without_encoding.stdout
    assert "--encoding cp1252" in without_encoding.stdout

    right = _cli(config_file, "import", str(export), *maps, "--map", "text=message", "--encoding", "cp1252")
    assert right.returncode == 0 and "published 2 mention(s), rejected 0 row(s)" in right.stdout, right.stdout + right.stderr
    again = _cli(config_file, "import", str(export), *maps, "--map", "text=message", "--encoding", "cp1252")
    assert again.returncode == 0 and "nothing new" in again.stdout

    empty = tmp_path / "empty.csv"
    empty.write_text("id,text,created_at\n")
    assert _cli(config_file, "import", str(empty)).returncode == 1


def test_connect_once_fails_when_the_source_did(settings, config, tmp_path):
    ensure_topics(settings.kafka)
    server, base = serve(lambda handler: (404, b"not here", {"Content-Type": "text/plain"}))
    config_file = tmp_path / "settings.yaml"
    config_file.write_text(yaml.safe_dump({**config, "connectors": {
        "checkpoint_dir": str(tmp_path / "checkpoints"), "filter_by_brands": False,
        "rss": {"feeds": [f"{base}/feed.xml"]}}}))
    done = _cli(config_file, "connect", "rss", "--once")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "source error" in done.stderr and "feed.xml" in done.stderr
    server.shutdown()
